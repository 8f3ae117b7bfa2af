/**
 * A slow destination holds back only its own events. Two webhook publishers on real PostgreSQL:
 * 'fast' straight to a receiver, 'slow' through a TCP proxy that delays every request by 500 ms.
 * The fast destination's commit → delivery p99 is measured alone, then with the slow one loaded
 * beside it: it must stay far below the slow one's 500 ms (a relay that publishes in batches or
 * rounds across destinations makes every fast event wait for the slow calls). Bounds are generous;
 * the tight figures belong in the benchmark.
 */
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, silentLogger } from '../../src/index.js';
import { httpPublisher } from '../../src/publishers/http.js';
import { postgresStore } from '../../src/stores/postgres.js';
import { PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const skip = await pgSkip();

const PROXY_DELAY_MS = 500;
const FAST_RATE = 100; // events/s over FAST_KEYS keys
const SLOW_RATE = 20; // events/s over SLOW_KEYS keys: 1/s per key, within what 500 ms per publish allows
const FAST_KEYS = 20;
const SLOW_KEYS = 20;
const PHASE_MS = 3_000;

interface Arrival {
  readonly key: string;
  readonly at: number;
}

/** A webhook receiver: first arrival time per event id, and every arrival in order. */
async function startReceiver() {
  const first = new Map<string, Arrival>();
  const all: { id: string; key: string }[] = [];
  const server = createHttpServer((req, res) => {
    const id = String(req.headers['ce-id']);
    const key = String(req.headers['ce-partitionkey']);
    req.resume();
    req.on('end', () => {
      if (!first.has(id)) first.set(id, { key, at: Date.now() });
      all.push({ id, key });
      res.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return { port, first, all, close: () => new Promise((r) => server.close(r)) };
}

/** A TCP proxy to `port` that holds every chunk from the client for `delayMs` before passing it on. */
async function startDelayProxy(port: number, delayMs: number) {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = tcpConnect({ host: '127.0.0.1', port });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.on('data', (chunk) => setTimeout(() => upstream.write(chunk), delayMs));
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

describe.skipIf(skip)(
  'a slow destination does not hold back the others (PostgreSQL, two webhook publishers)',
  () => {
    const schema = uniqueName('outbox_isolation');
    let pool: pg.Pool;

    beforeAll(async () => {
      pool = new pg.Pool({ connectionString: PG_URL, max: 6 });
      await pool.query(`CREATE SCHEMA "${schema}"`);
    });
    afterAll(async () => {
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    });

    it(`the fast destination's p99 stays far below the slow one's ${PROXY_DELAY_MS} ms`, async () => {
      const receiver = await startReceiver();
      const proxy = await startDelayProxy(receiver.port, PROXY_DELAY_MS);
      const outbox = createOutbox({
        database: postgresStore({ pool, schema, table: 'outbox', notify: true }),
        publishers: {
          fast: httpPublisher({ url: `http://127.0.0.1:${receiver.port}/{destination}` }),
          slow: httpPublisher({ url: `http://127.0.0.1:${proxy.port}/{destination}`, timeoutMs: 30_000 }),
        },
        routes: [
          { type: 'fast.*', publisher: 'fast', destination: 'fast' },
          { type: 'slow.*', publisher: 'slow', destination: 'slow' },
        ],
        relay: { logger: silentLogger },
      });
      await outbox.migrate();
      const committed = new Map<string, { key: string; at: number; phase: 'alone' | 'beside' }>();
      const order: { id: string; key: string }[] = [];

      /** One event per transaction, paced at `rate`/s for `ms`. */
      async function write(
        kind: 'fast' | 'slow',
        rate: number,
        keys: number,
        ms: number,
        phase: 'alone' | 'beside',
      ) {
        const client = await pool.connect();
        try {
          const started = Date.now();
          for (let n = 0; ; n++) {
            const due = started + (n * 1000) / rate;
            if (due - started >= ms) return;
            const wait = due - Date.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            const aggregateId = `${kind}${n % keys}`;
            await client.query('BEGIN');
            const id = await outbox.add(fromPg(client), {
              type: `${kind}.happened`,
              aggregateType: 'thing',
              aggregateId,
              payload: { n },
            });
            await client.query('COMMIT');
            committed.set(id, { key: `thing:${aggregateId}`, at: Date.now(), phase });
            order.push({ id, key: `thing:${aggregateId}` });
          }
        } finally {
          client.release();
        }
      }

      const relay = outbox.relay();
      await relay.start();
      try {
        await write('fast', FAST_RATE, FAST_KEYS, PHASE_MS, 'alone');
        await Promise.all([
          write('fast', FAST_RATE, FAST_KEYS, PHASE_MS, 'beside'),
          write('slow', SLOW_RATE, SLOW_KEYS, PHASE_MS, 'beside'),
        ]);
        const until = Date.now() + 30_000;
        while (receiver.first.size < committed.size && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await relay.stop();
        await outbox.close();
        await proxy.close();
        await receiver.close();
      }

      expect(receiver.first.size).toBe(committed.size); // nothing lost
      const latencies = (kind: string, phase: string) =>
        [...committed]
          .filter(([, c]) => c.key.startsWith(`thing:${kind}`) && c.phase === phase)
          .map(([id, c]) => receiver.first.get(id)!.at - c.at);
      const fastAlone = percentile(latencies('fast', 'alone'), 99);
      const fastBeside = percentile(latencies('fast', 'beside'), 99);
      const slowMedian = percentile(latencies('slow', 'beside'), 50);
      console.log(
        `isolation: fast p99 alone ${fastAlone} ms, beside the slow destination ${fastBeside} ms; slow p50 ${slowMedian} ms`,
      );
      expect(slowMedian).toBeGreaterThanOrEqual(PROXY_DELAY_MS); // the proxy really slowed it
      expect(fastBeside).toBeLessThan(Math.max(3 * fastAlone, fastAlone + 150, 250));

      // Per key, first arrivals follow commit order.
      const position = new Map(order.map((o, i) => [o.id, i]));
      const last = new Map<string, number>();
      const seen = new Set<string>();
      let violations = 0;
      for (const { id, key } of receiver.all) {
        if (seen.has(id)) continue;
        seen.add(id);
        const p = position.get(id)!;
        if ((last.get(key) ?? -1) > p) violations++;
        last.set(key, p);
      }
      expect(violations).toBe(0);
    }, 120_000);
  },
);
