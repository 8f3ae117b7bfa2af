/**
 * The Redis Streams harness: a fresh stream key per destination, read back by a separate client
 * with a blocking XREAD from the stream's start, each entry's fields decoded into the suite's shape.
 * Its outage runs on a private redis-server (AOF, fsync always) killed with SIGKILL; its lost
 * acks go through a TCP proxy in front of the machine's Redis.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { redisPublisher } from '../../../src/publishers/redis.js';
import type { Consumer, HarnessFactory, Received } from '../../conformance/publisher.suite.js';
import { missingBinary, REDIS_SERVER, startRedisServer } from '../private-servers.js';
import { serviceSkipReason, uniqueName } from '../services.js';
import { collector } from './collector.js';
import { decodeCloudEvent } from './decode.js';
import { privateServerOutage, proxiedLossyPath } from './rigs.js';

export const REDIS_URL = process.env.OUTBOX_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const redisSkip = () => serviceSkipReason('Redis', REDIS_URL, 6379);

/** A client for tests: connected, its 'error' events swallowed (a failed command still rejects). */
export function testClient(url: string) {
  return createClient({ url })
    .on('error', () => undefined)
    .connect();
}

/** One stream entry as the suite sees it: `data` is the body, every other field a header. */
export function decodeEntry(destination: string, fields: Readonly<Record<string, string>>): Received {
  const { data = '', ...headers } = fields;
  return decodeCloudEvent(destination, headers, data);
}

/**
 * A reader of `stream` on `url` from its first entry. A failed XREAD (the server away) is tried
 * again from the last entry read, so a restart of the server costs the reader nothing.
 */
export async function streamReader(url: string, stream: string): Promise<Consumer> {
  const reader = await testClient(url);
  let stopped = false;
  const { consumer, push } = collector(async () => {
    stopped = true;
    await done;
    reader.destroy();
  });
  const done = (async () => {
    let last = '0-0';
    while (!stopped) {
      // A short block, so that close() is noticed within 100 ms.
      const reply = await reader
        .xRead({ key: stream, id: last }, { BLOCK: 100, COUNT: 1000 })
        .catch(() => sleep(100).then(() => null));
      for (const entries of reply ?? [])
        for (const entry of entries.messages) {
          last = entry.id;
          push(decodeEntry(stream, entry.message));
        }
    }
  })();
  return consumer;
}

export const redisHarness: HarnessFactory = async () => {
  const skip = await redisSkip();
  if (skip) return skip;
  const admin = await testClient(REDIS_URL);
  const streams: string[] = [];
  const destination = async (name: string) => {
    // Created by the first XADD; a blocking XREAD on a key that does not exist yet simply waits.
    const stream = uniqueName(`outbox-pub-${name}`);
    streams.push(stream);
    return stream;
  };
  const noServer = missingBinary(REDIS_SERVER);
  return {
    label: 'redis streams',
    capabilities: {
      dedupeById: false,
      unknownDestination:
        'Redis creates a stream on its first XADD, so no destination is unknown to it: routes keep such events out at add()',
      structured: true,
    },
    publisher: (mode) => redisPublisher({ url: REDIS_URL, mode }),
    destination,
    unknownDestination: () => Promise.reject(new Error('Redis has no unknown destination')),
    consume: (d) => streamReader(REDIS_URL, d),
    ...(noServer
      ? { outageUnsupported: `no private redis-server: ${noServer}` }
      : {
          outage: () =>
            privateServerOutage(
              // SIGKILL: with an fsync per write, what Redis acknowledged is on disk already.
              { name: 'redis', scheme: 'redis', start: startRedisServer, signal: 'SIGKILL' },
              async (url) => {
                const consumer = await streamReader(url, 'orders');
                return {
                  publisher: redisPublisher({ url, timeoutMs: 1000 }),
                  destination: 'orders',
                  consumer,
                  close: () => consumer.close(),
                };
              },
            ),
        }),
    lostAck: async () =>
      proxiedLossyPath({
        url: REDIS_URL,
        defaultPort: 6379,
        destination: await destination('lostack'),
        consume: (d) => streamReader(REDIS_URL, d),
        publisher: (url) => redisPublisher({ url, timeoutMs: 3000 }),
      }),
    async close() {
      if (streams.length > 0) await admin.del(streams);
      admin.destroy();
    },
  };
};
