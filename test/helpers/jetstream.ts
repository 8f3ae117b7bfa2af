/**
 * A real JetStream consumer for delivery checks: a private stream per test, read back in stream
 * order by an ordered consumer. What it records is what a downstream service would see.
 */
import { type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Reception } from '../../src/testing/delivery-check.js';
import { NATS_URL, uniqueName } from './services.js';

export interface StreamCollector {
  readonly stream: string;
  /** Subject prefix the stream captures (`<prefix>.>`). */
  readonly prefix: string;
  readonly receptions: Reception[];
  /** Resolves when `distinct` different ids have arrived, or rejects after `timeoutMs`. */
  waitForDistinct(distinct: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * @param duplicateWindowMs JetStream's dedupe window by Nats-Msg-Id; tiny = dedupe off, so
 *   that duplicates the relay sends stay visible to the test.
 */
export async function startStreamCollector(duplicateWindowMs = 120_000): Promise<StreamCollector> {
  const nc: NatsConnection = await connect({ servers: NATS_URL });
  const jsm: JetStreamManager = await jetstreamManager(nc);
  const stream = uniqueName('OUTBOX_TEST').toUpperCase();
  const prefix = stream.toLowerCase();
  await jsm.streams.add({
    name: stream,
    subjects: [`${prefix}.>`],
    duplicate_window: duplicateWindowMs * 1_000_000,
  });
  const consumer = await jetstream(nc).consumers.get(stream);
  const messages = await consumer.consume();
  const receptions: Reception[] = [];
  const ids = new Set<string>();
  let waiter: { n: number; resolve: () => void } | undefined;
  const done = (async () => {
    for await (const m of messages) {
      const id = m.headers?.get('Nats-Msg-Id') ?? '';
      receptions.push({ id, key: m.headers?.get('ce-partitionkey') ?? '', at: Date.now() });
      ids.add(id);
      if (waiter && ids.size >= waiter.n) waiter.resolve();
    }
  })();
  return {
    stream,
    prefix,
    receptions,
    waitForDistinct(n, timeoutMs) {
      if (ids.size >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`only ${ids.size} of ${n} distinct events arrived in ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiter = {
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
      });
    },
    async close() {
      messages.stop();
      await done.catch(() => undefined);
      await jsm.streams.delete(stream).catch(() => undefined);
      await nc.drain();
    },
  };
}
