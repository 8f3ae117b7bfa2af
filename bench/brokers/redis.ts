/**
 * Redis Streams in the brokers scenario: one stream per run (`outbox-bench-<tag>.<type>`),
 * deleted between phases and at the end. The raw client is node-redis issuing the same XADD as
 * src/publishers/redis.ts (CloudEvents attributes and `data` as fields); node-redis pipelines
 * whatever is issued in the same tick. Verified by XLEN, and for our drain by reading the
 * entries back with XRANGE (the per-key order check).
 */
import { createClient } from 'redis';
import { cloudEventAttributes } from '../../src/core/envelope.js';
import { redisPublisher } from '../../src/publishers/redis.js';
import { type BenchEnv, onCleanup } from '../env.js';
import { EVENT_TYPE } from '../workload.js';
import type { BrokerBench, Delivered } from './broker.js';

export const REDIS_URL = process.env.OUTBOX_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

const XRANGE_COUNT = 10_000;

function connected() {
  return createClient({ url: REDIS_URL })
    .on('error', () => {})
    .connect();
}

export async function openRedis(env: BenchEnv): Promise<BrokerBench> {
  const prefix = `outbox-bench-${env.tag}`;
  const stream = `${prefix}.${EVENT_TYPE}`;
  const admin = await connected();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unhook();
    await admin.del(stream).catch((e: unknown) => process.stderr.write(`warning: DEL ${stream}: ${e}\n`));
    admin.destroy();
  };
  const unhook = onCleanup(close);

  const readIds = async (): Promise<string[]> => {
    const ids: string[] = [];
    for (let start = '-'; ; ) {
      const entries = (await admin.xRange(stream, start, '+', { COUNT: XRANGE_COUNT })) ?? [];
      for (const entry of entries) ids.push(String(entry.message['ce-id']));
      if (entries.length < XRANGE_COUNT) return ids;
      start = `(${entries.at(-1)!.id}`;
    }
  };

  return {
    label: 'Redis Streams',
    prefix,
    rawNote: 'node-redis alone: the same XADD (CloudEvents attributes and data as fields), pipelined',
    verifyNote: 'XLEN, and our drain read back with XRANGE',
    publisher: () => redisPublisher({ url: REDIS_URL }),
    async openRaw(window) {
      const client = await connected();
      return {
        window,
        async publish(m) {
          await client.xAdd(m.destination, '*', { ...cloudEventAttributes(m, 'outbox'), data: m.payload });
        },
        async close() {
          await client.close();
        },
      };
    },
    async delivered(_expected, withIds): Promise<Delivered> {
      const count = await admin.xLen(stream);
      return withIds ? { count, ids: await readIds() } : { count };
    },
    async reset() {
      await admin.del(stream);
    },
    close,
  };
}
