/**
 * A broker under the brokers scenario (bench/scenarios/brokers.ts): where both our relay and the
 * broker's raw client publish, how to count what arrived, and how to put it back to empty. Each
 * broker's file opens one for a run, with names unique to the run, and removes what it created
 * when closed (also on Ctrl-C).
 */
import type { OutboundMessage, Publisher } from '../../src/index.js';

export interface BrokerBench {
  /** For row labels: 'Redis Streams', 'RabbitMQ', … */
  readonly label: string;
  /** Destinations are `${prefix}.<type>`: our route's template is `${prefix}.{type}`. */
  readonly prefix: string;
  /** How the raw client publishes (for the row's note). */
  readonly rawNote: string;
  /** How delivery is verified (for the row's note). */
  readonly verifyNote: string;
  /** Our publisher, from the URL form as the CLI builds it (it owns and closes its connection). */
  publisher(): Publisher;
  /** The broker's own client, connected, publishing the way our publisher does; closed by the caller. */
  openRaw(window: number): Promise<RawClient>;
  /**
   * What arrived since the last reset, once `expected` did (or a consumer stopped seeing more):
   * the count, and with `withIds` the ids in the order a consumer saw them, where it can.
   */
  delivered(expected: number, withIds: boolean): Promise<Delivered>;
  /** Empties the destination (and the consumer's record) before a phase. */
  reset(): Promise<void>;
  /** Removes what the run created on the broker; idempotent. */
  close(): Promise<void>;
}

/** The broker's own client: acks per message (most brokers) or per batch (Kafka). */
export type RawClient = PerMessageClient | BatchClient;

interface RawClientBase {
  /** Per message: publishes in flight at once (the scenario's window, or less where the broker sets a limit). Per batch: messages per batch. */
  readonly window: number;
  close(): Promise<void>;
}

export interface PerMessageClient extends RawClientBase {
  /** Resolves on the broker's ack; rejects on anything else (a nack, a return, a timeout). */
  publish(m: OutboundMessage): Promise<void>;
}

export interface BatchClient extends RawClientBase {
  /** Resolves when the broker acked every message of the batch. */
  publishBatch(messages: readonly OutboundMessage[]): Promise<void>;
}

export interface Delivered {
  readonly count: number;
  /** Ids in the order a consumer saw them (the per-key order check), when read back. */
  readonly ids?: readonly string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until `count()` reaches `expected` or stops growing for `idleMs` (a consumer still
 * catching up, or messages that will never come); returns the last count.
 */
export async function settledCount(count: () => number, expected: number, idleMs = 2_000): Promise<number> {
  let last = count();
  let changedAt = Date.now();
  while (last < expected && Date.now() - changedAt < idleMs) {
    await sleep(10);
    const now = count();
    if (now !== last) [last, changedAt] = [now, Date.now()];
  }
  return last;
}
