/**
 * Timing a drain: start something that publishes, count what it reports published, stop it when
 * all `total` are through. Shared by every drain scenario (one relay, several, the ceiling).
 */
import { progress } from './report.js';

/** No progress for this long means the relay is stuck: fail the scenario rather than hang. */
export const STALL_MS = 30_000;

export interface Drainable {
  start(): Promise<void>;
  stop(): Promise<void>;
  onPublished(listener: (count: number) => void): void;
  /** A failure that ends the drain early (optional). */
  onFailed?(listener: (error: unknown) => void): void;
}

/** Starts `relay`, waits until `total` events were published and settled; returns the time (ms). */
export async function timeDrain(label: string, total: number, relay: Drainable): Promise<number> {
  const line = progress(label);
  let published = 0;
  let lastProgressAt = performance.now();
  let finish: (() => void) | undefined;
  let fail: ((error: unknown) => void) | undefined;
  relay.onPublished((n) => {
    published += n;
    lastProgressAt = performance.now();
    if (published >= total) finish?.();
  });
  relay.onFailed?.((error) => fail?.(error));
  const startedAt = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      finish = resolve;
      fail = reject;
      timer = setInterval(() => {
        const now = performance.now();
        const rate = published / ((now - startedAt) / 1_000);
        line.update(
          `${published.toLocaleString('en-US')}/${total.toLocaleString('en-US')} (${Math.round(rate)}/s)`,
        );
        if (now - lastProgressAt > STALL_MS) reject(new Error(`${label}: no progress for ${STALL_MS} ms`));
      }, 250);
      relay.start().catch(reject);
    });
  } finally {
    clearInterval(timer);
  }
  const elapsedMs = performance.now() - startedAt;
  await relay.stop();
  line.done(`${total.toLocaleString('en-US')} in ${(elapsedMs / 1_000).toFixed(2)} s`);
  return elapsedMs;
}

/** Ours, then the reference, then the other way round, …: the order alternates between repeats. */
export function sidesInOrder(repeats: number): ('ours' | 'reference')[] {
  const order: ('ours' | 'reference')[] = [];
  for (let r = 0; r < repeats; r++)
    order.push(...(r % 2 === 0 ? (['ours', 'reference'] as const) : (['reference', 'ours'] as const)));
  return order;
}

export function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(`bench check failed: ${message}`);
}
