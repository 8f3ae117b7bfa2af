/**
 * Wraps a publisher and fails a seeded random share of messages before they reach it: proof
 * that retries, backoff and per-key order hold when the broker misbehaves.
 */
import { PublishError } from '../core/errors.js';
import type { OutboundMessage, Publisher, PublishResult } from '../core/ports.js';

export interface FaultyPublisherOptions {
  /** Share of messages failed, 0..1. */
  readonly failureRate: number;
  /** Seed of the deterministic random sequence (default 1). */
  readonly seed?: number;
}

/** A small, fast, seedable PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * @example
 * const publisher = faultyPublisher(natsPublisher({ connection }), { failureRate: 0.1, seed: 7 });
 */
export function faultyPublisher(
  inner: Publisher,
  options: FaultyPublisherOptions,
): Publisher & { failures: number } {
  const random = seededRandom(options.seed ?? 1);
  const wrapper = {
    kind: inner.kind,
    capabilities: inner.capabilities,
    validateDestination: inner.validateDestination?.bind(inner),
    failures: 0,
    close: inner.close?.bind(inner),
    async publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]> {
      const results: PublishResult[] = new Array(messages.length);
      const passed: OutboundMessage[] = [];
      const passedIndexes: number[] = [];
      messages.forEach((m, i) => {
        if (random() < options.failureRate) {
          wrapper.failures++;
          results[i] = { ok: false, error: new PublishError('injected failure (faultyPublisher)') };
        } else {
          passed.push(m);
          passedIndexes.push(i);
        }
      });
      if (passed.length > 0) {
        const inner_results = await inner.publish(passed);
        passedIndexes.forEach((index, j) => {
          results[index] = inner_results[j]!;
        });
      }
      return results;
    },
  };
  return wrapper;
}
