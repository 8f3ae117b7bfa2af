import { describe, expect, it } from 'vitest';
import { cloudEventAttributes, isReservedHeader, RESERVED_HEADER_NAMES } from '../../src/core/envelope.js';
import { orderMessage } from '../helpers/order-message.js';

describe('cloudEventAttributes', () => {
  it('maps an event to CloudEvents 1.0 binary-mode headers', () => {
    expect(cloudEventAttributes(orderMessage(), 'orders-service')).toEqual({
      'ce-specversion': '1.0',
      'ce-id': '0190c2d6-7d2a-7c4e-9a1b-2f3c4d5e6f70',
      'ce-type': 'order.created',
      'ce-source': 'orders-service',
      'ce-subject': '42',
      'ce-time': '2025-01-02T03:04:05.678Z',
      'ce-partitionkey': 'order:42',
      'content-type': 'application/json',
    });
  });

  it('uses the key as subject when the event has no aggregate', () => {
    const attributes = cloudEventAttributes(orderMessage({ aggregateType: null, aggregateId: null }), 'x');
    expect(attributes['ce-subject']).toBe('order:42');
  });

  it('appends the event headers after the attributes', () => {
    const attributes = cloudEventAttributes(
      orderMessage({ headers: { 'x-request': 'r1', tenant: 't1' } }),
      'x',
    );
    expect(Object.keys(attributes).slice(-2)).toEqual(['x-request', 'tenant']);
    expect(attributes['x-request']).toBe('r1');
  });

  it('never lets an event header replace an attribute, even one written around add()', () => {
    const attributes = cloudEventAttributes(
      orderMessage({ headers: { 'CE-ID': 'forged', 'Content-Type': 'text/plain' } }),
      'x',
    );
    expect(attributes['ce-id']).toBe('0190c2d6-7d2a-7c4e-9a1b-2f3c4d5e6f70');
    expect(Object.values(attributes)).not.toContain('forged');
    expect(Object.values(attributes)).not.toContain('text/plain');
  });
});

describe('isReservedHeader', () => {
  it.each([
    'ce-id',
    'CE-Type',
    'ce-anything',
    'ce_type',
    'content-type',
    'Content-Type',
    'Nats-Msg-Id',
    'nats-rollup',
    'Nats-Expected-Stream',
    'Idempotency-Key',
    'webhook-signature',
    'Webhook-Anything',
  ])('%s is reserved', (name) => {
    expect(isReservedHeader(name)).toBe(true);
  });

  it.each(['traceparent', 'tracestate', 'x-tenant', 'authorization', 'cex', 'content-length2', 'webhook'])(
    '%s is free',
    (name) => {
      expect(isReservedHeader(name)).toBe(false);
    },
  );

  it('lists exact names in lower case', () => {
    for (const name of RESERVED_HEADER_NAMES) expect(name).toBe(name.toLowerCase());
  });
});
