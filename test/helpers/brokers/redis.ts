/**
 * The Redis Streams harness: a fresh stream key per destination, read back by a separate client
 * with a blocking XREAD from the stream's start, each entry's fields decoded into the suite's shape.
 */
import { createClient } from 'redis';
import { redisPublisher } from '../../../src/publishers/redis.js';
import type { Consumer, HarnessFactory, Received } from '../../conformance/publisher.suite.js';
import { serviceSkipReason, uniqueName } from '../services.js';
import { collector } from './collector.js';
import { decodeCloudEvent } from './decode.js';

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

export const redisHarness: HarnessFactory = async () => {
  const skip = await redisSkip();
  if (skip) return skip;
  const admin = await testClient(REDIS_URL);
  const streams: string[] = [];
  return {
    label: 'redis streams',
    capabilities: {
      dedupeById: false,
      unknownDestination:
        'Redis creates a stream on its first XADD, so no destination is unknown to it: routes keep such events out at add()',
      structured: true,
    },
    publisher: (mode) => redisPublisher({ url: REDIS_URL, mode }),
    async destination(name) {
      // Created by the first XADD; a blocking XREAD on a key that does not exist yet simply waits.
      const stream = uniqueName(`outbox-pub-${name}`);
      streams.push(stream);
      return stream;
    },
    unknownDestination: () => Promise.reject(new Error('Redis has no unknown destination')),
    async consume(destination): Promise<Consumer> {
      const reader = await testClient(REDIS_URL);
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
          const reply = await reader.xRead({ key: destination, id: last }, { BLOCK: 100, COUNT: 1000 });
          for (const stream of reply ?? [])
            for (const entry of stream.messages) {
              last = entry.id;
              push(decodeEntry(destination, entry.message));
            }
        }
      })();
      return consumer;
    },
    async close() {
      if (streams.length > 0) await admin.del(streams);
      admin.destroy();
    },
  };
};
