/** One fixed message, order 42 as the relay hands it to a publisher: for the envelope's unit tests. */
import type { OutboundMessage } from '../../src/core/ports.js';

export function orderMessage(over: Partial<OutboundMessage> = {}): OutboundMessage {
  return {
    id: '0190c2d6-7d2a-7c4e-9a1b-2f3c4d5e6f70',
    key: 'order:42',
    type: 'order.created',
    destination: 'orders',
    aggregateType: 'order',
    aggregateId: '42',
    payload: '{"total":10}',
    headers: {},
    createdAt: new Date('2025-01-02T03:04:05.678Z'),
    attempt: 1,
    ...over,
  };
}
