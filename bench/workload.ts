/**
 * The events every scenario writes: `keys` order aggregates, keys drawn at random (seeded, so
 * ours and the reference get the same sequence), each with a ~300-byte JSON payload.
 */
import type { OutboxEvent } from '../src/index.js';

export const EVENT_TYPE = 'order.created';
export const AGGREGATE_TYPE = 'order';

/** mulberry32: small, fast, seeded. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A ~300-byte order payload (JSON.stringify length 290–310). */
export function orderPayload(n: number, aggregateId: string): Record<string, unknown> {
  return {
    orderId: aggregateId,
    sequence: n,
    customerId: `cust-${(n * 7919) % 100_000}`,
    currency: 'EUR',
    total: Math.round(((n * 37) % 50_000) + 99) / 100,
    items: [
      { sku: `SKU-${(n * 13) % 9_999}`, quantity: 1 + (n % 3), unitPrice: 19.99 },
      { sku: `SKU-${(n * 17) % 9_999}`, quantity: 1 + (n % 5), unitPrice: 4.5 },
    ],
    shipping: { method: 'standard', country: 'DE', postcode: String(10_000 + (n % 89_999)) },
    placedAt: '2026-01-15T10:30:00.000Z',
  };
}

export interface Workload {
  readonly keys: number;
  /** The i-th event of the workload (same for every consumer of the same seed). */
  event(i: number): OutboxEvent;
}

export function workload(keys: number, count: number, seed = 42): Workload {
  const random = seededRandom(seed);
  const aggregateOf = Array.from({ length: count }, () => Math.floor(random() * keys));
  return {
    keys,
    event(i: number): OutboxEvent {
      const aggregateId = `o-${aggregateOf[i % count]!}`;
      return {
        type: EVENT_TYPE,
        aggregateType: AGGREGATE_TYPE,
        aggregateId,
        payload: orderPayload(i, aggregateId),
      };
    },
  };
}
