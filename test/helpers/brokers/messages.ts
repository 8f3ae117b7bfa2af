/** Messages for publisher tests: each call a new id and key, the rest fixed unless overridden. */
import type { OutboundMessage } from '../../../src/core/ports.js';

let seq = 0;

export function outboundMessage(destination: string, over: Partial<OutboundMessage> = {}): OutboundMessage {
  seq += 1;
  return {
    id: `0190c2d6-7d2a-7c4e-9a1b-${String(seq).padStart(12, '0')}`,
    key: `order:${seq}`,
    type: 'order.created',
    destination,
    aggregateType: 'order',
    aggregateId: String(seq),
    payload: JSON.stringify({ n: seq, text: 'grüße' }),
    headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    createdAt: new Date('2025-01-02T03:04:05.678Z'),
    attempt: 1,
    ...over,
  };
}
