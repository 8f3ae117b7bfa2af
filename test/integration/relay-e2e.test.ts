/**
 * The relay end to end on real PostgreSQL and real NATS JetStream. Each event's transaction also
 * writes a ledger row; a real JetStream consumer is the verifier. 20k events over 200 keys while
 * a wrapper fails 10 % of publishes at random → 0 lost, 0 per-key order violations. Deliberately
 * broken relays run through the same checker and must be caught.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Publisher, Store } from '../../src/core/ports.js';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, type Outbox, silentLogger } from '../../src/index.js';
import { natsPublisher } from '../../src/publishers/nats.js';
import { postgresStore } from '../../src/stores/postgres.js';
import { checkDelivery, faultyPublisher, type LedgerEntry } from '../../src/testing/index.js';
import { type StreamCollector, startStreamCollector } from '../helpers/jetstream.js';
import { natsSkip, PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const skip = (await pgSkip()) ?? (await natsSkip());

describe.skipIf(skip)('relay end to end: PostgreSQL → NATS JetStream, verified by a real consumer', () => {
  const schema = uniqueName('outbox_e2e');
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: PG_URL, max: 10 });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  });

  /** A fresh outbox table and ledger, routed to a fresh stream. */
  async function setup(collector: StreamCollector, publisher: (inner: Publisher) => Publisher) {
    const table = uniqueName('outbox');
    const ledger = `"${schema}"."${table}_ledger"`;
    await pool.query(`CREATE TABLE ${ledger} (seq bigserial PRIMARY KEY, event_id uuid NOT NULL, key text NOT NULL,
      committed_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    const store: Store = postgresStore({ pool, schema, table });
    const nats = natsPublisher({ url: process.env.OUTBOX_TEST_NATS_URL ?? 'nats://127.0.0.1:4222' });
    const outbox = createOutbox({
      database: store,
      publishers: { nats: publisher(nats) },
      routes: [{ destination: `${collector.prefix}.{aggregateType}` }],
      relay: { logger: silentLogger },
    });
    await outbox.migrate();
    return { outbox, store, ledger, nats };
  }

  /**
   * Writers: one per key group, so each key's transactions are sequential (commit order across
   * concurrent writers of one key is the many-relays issue). 1–10 events per transaction.
   */
  async function write(
    outbox: Outbox,
    ledger: string,
    total: number,
    keys: number,
    writers = 4,
  ): Promise<void> {
    const perWriter = Math.ceil(total / writers);
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        const client = await pool.connect();
        try {
          let written = 0;
          let n = 0;
          while (written < perWriter) {
            const size = Math.min(1 + ((n * 7 + w) % 10), perWriter - written);
            const events = Array.from({ length: size }, (_, i) => {
              const k = ((written + i) % (keys / writers)) * writers + w;
              return {
                type: 'item.changed',
                aggregateType: 'item',
                aggregateId: `k${k}`,
                payload: { w, n: written + i },
              };
            });
            await client.query('BEGIN');
            const ids = await outbox.add(fromPg(client), events);
            await client.query(
              `INSERT INTO ${ledger} (event_id, key) SELECT * FROM unnest($1::uuid[], $2::text[])`,
              [ids, events.map((e) => `item:${e.aggregateId}`)],
            );
            await client.query('COMMIT');
            written += size;
            n++;
          }
        } finally {
          client.release();
        }
      }),
    );
  }

  async function readLedger(ledger: string): Promise<LedgerEntry[]> {
    const { rows } = await pool.query(`SELECT event_id AS id, key, committed_at FROM ${ledger} ORDER BY seq`);
    return rows.map((r) => ({ id: r.id, key: r.key, committedAt: r.committed_at.getTime() }));
  }

  it('20k events over 200 keys with 10% publish failures: 0 lost, 0 order violations', async () => {
    const collector = await startStreamCollector();
    const { outbox, store, ledger } = await setup(collector, (inner) =>
      faultyPublisher(inner, { failureRate: 0.1, seed: 11 }),
    );
    const relay = outbox.relay({ batchSize: 250, maxAttempts: 1000, backoff: { baseMs: 5, capMs: 50 } });
    let retried = 0;
    relay.on('batch', (r) => {
      retried += r.retried.length;
    });
    try {
      await relay.start();
      await write(outbox, ledger, 20_000, 200);
      await collector.waitForDistinct(20_000, 120_000);
      await relay.stop();
      const dead = new Set((await store.list({ status: 'dead', limit: 100_000 })).map((e) => e.id));
      const result = checkDelivery(await readLedger(ledger), collector.receptions, dead);
      console.log(`e2e: ${JSON.stringify({ ...result, retried })}`);
      expect(result.added).toBe(20_000);
      expect(result.lost).toBe(0);
      expect(result.orderViolations).toBe(0);
      expect(result.dead).toBe(0);
      expect(retried).toBeGreaterThan(1000); // the failures really happened
      expect((await store.stats()).pending).toBe(0);
    } finally {
      await outbox.close();
      await collector.close();
    }
  });

  /** A relay that publishes whole batches at once and retries failures at once: no per-key rounds. */
  async function brokenRelay(
    store: Store,
    publisher: Publisher,
    { dropFailures }: { dropFailures: boolean },
  ) {
    await store.heartbeat('broken', 60_000);
    const lease = { owner: 'broken', leases: await store.acquireLeases('broken', 60_000) };
    const partitions = lease.leases.map((l) => l.partition);
    for (;;) {
      const batch = await store.claim(partitions, 250);
      if (batch.length === 0) return;
      const results = await publisher.publish(batch.map((e) => ({ ...e, attempt: e.attempts + 1 })));
      const ok = batch.filter((_, i) => results[i]!.ok).map((e) => e.id);
      const failed = batch.filter((_, i) => !results[i]!.ok);
      await store.settle(
        {
          published: dropFailures ? batch.map((e) => e.id) : ok,
          retry: dropFailures
            ? []
            : failed.map((e) => ({
                id: e.id,
                attempts: e.attempts + 1,
                error: 'x',
                history: [],
                delayMs: 0,
              })),
          dead: [],
        },
        lease,
      );
    }
  }

  it('the checker catches a relay that reorders keys and one that loses events', async () => {
    for (const dropFailures of [false, true]) {
      const collector = await startStreamCollector();
      let faulty!: Publisher;
      const { outbox, store, ledger } = await setup(collector, (inner) => {
        faulty = faultyPublisher(inner, { failureRate: 0.1, seed: 5 });
        return faulty;
      });
      try {
        await write(outbox, ledger, 4_000, 40);
        await brokenRelay(store, faulty, { dropFailures });
        const entries = await readLedger(ledger);
        const expected = dropFailures ? Math.floor(entries.length * 0.8) : entries.length;
        await collector.waitForDistinct(expected, 60_000);
        await new Promise((r) => setTimeout(r, 300));
        const result = checkDelivery(entries, collector.receptions, new Set());
        if (dropFailures) expect(result.lost).toBeGreaterThan(0);
        else expect(result.orderViolations).toBeGreaterThan(0);
      } finally {
        await outbox.close();
        await collector.close();
      }
    }
  });
});
