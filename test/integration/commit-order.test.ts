/**
 * Per-key order is commit order: concurrent producers on shared keys, each transaction holding
 * its event a random moment before COMMIT. A key's events must be published in the order their
 * transactions committed. The same workload with a plain INSERT (no per-key lock) shows that the
 * check does catch the reordering the lock prevents: seq order then differs from commit order.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, silentLogger } from '../../src/index.js';
import { postgresStore } from '../../src/stores/postgres.js';
import { memoryPublisher, seededRandom } from '../../src/testing/index.js';
import { PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const skip = await pgSkip();
const WORKERS = 8;
const TRANSACTIONS = 400;
const KEYS = 6;
const seed = Number(process.env.OUTBOX_TEST_SEED ?? 7);

/** Pairs of same-key events published (or stored) in the opposite order of their commits. */
function inversions(
  committed: ReadonlyMap<string, string[]>,
  observed: readonly { id: string; key: string }[],
) {
  const position = new Map(observed.map((e, i) => [e.id, i]));
  let count = 0;
  for (const ids of committed.values()) {
    for (let i = 1; i < ids.length; i++) if (position.get(ids[i - 1]!)! > position.get(ids[i]!)!) count++;
  }
  return count;
}

describe.skipIf(skip)('per-key order is commit order (PostgreSQL, concurrent producers)', () => {
  const schema = uniqueName('outbox_commit');
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: PG_URL, max: WORKERS + 2 });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  });

  /**
   * Runs the workload; `write` adds one event for `key` on the client's open transaction and
   * returns its id. Returns each key's ids in the order their COMMITs completed.
   */
  async function produce(write: (client: pg.PoolClient, key: string) => Promise<string>) {
    console.log(`commit-order: seed ${seed} (OUTBOX_TEST_SEED reproduces a run)`);
    const random = seededRandom(seed);
    const committed = new Map<string, string[]>();
    let started = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        const client = await pool.connect();
        try {
          while (started++ < TRANSACTIONS) {
            const key = `order:${Math.floor(random() * KEYS)}`;
            const holdMs = random() * 4;
            await client.query('BEGIN');
            const id = await write(client, key);
            await new Promise((r) => setTimeout(r, holdMs));
            await client.query('COMMIT');
            committed.set(key, [...(committed.get(key) ?? []), id]);
          }
        } finally {
          client.release();
        }
      }),
    );
    return committed;
  }

  it('add() takes a per-key lock: published order equals commit order for every key', async () => {
    const publisher = memoryPublisher();
    const outbox = createOutbox({
      database: postgresStore({ pool, schema, table: 'with_lock' }),
      publishers: { memory: publisher },
      relay: { logger: silentLogger },
    });
    await outbox.migrate();
    const committed = await produce(async (client, key) => {
      const [type, id] = key.split(':') as [string, string];
      return outbox.add(fromPg(client), { type: 'order.changed', aggregateType: type, aggregateId: id });
    });
    await outbox.relay().drain();
    expect(publisher.messages).toHaveLength(TRANSACTIONS);
    expect(inversions(committed, publisher.messages)).toBe(0);
    await outbox.close();
  });

  it('control: a plain INSERT without the lock stores same-key events out of commit order', async () => {
    const store = postgresStore({ pool, schema, table: 'no_lock' });
    await store.migrate();
    const committed = await produce(async (client, key) => {
      const { rows } = await client.query(
        `INSERT INTO "${schema}".no_lock (id, key, key_hash, type, destination, payload)
         VALUES (gen_random_uuid(), $1, 0, 'order.changed', 'orders', '{}') RETURNING id`,
        [key],
      );
      return String(rows[0].id);
    });
    const { rows } = await pool.query(`SELECT id, key FROM "${schema}".no_lock ORDER BY seq`);
    const found = inversions(committed, rows);
    console.log(`commit-order control: ${found} same-key pairs stored out of commit order without the lock`);
    expect(found).toBeGreaterThan(0);
    await store.close();
  });
});

describe('per-key order is commit order (SQLite: one writer at a time)', () => {
  it('a second writer cannot take a seq while another write transaction is open', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outbox-commit-'));
    const path = join(dir, 'order.db');
    const outbox = createOutbox({ database: `sqlite:${path}` });
    await outbox.migrate();
    const first = new Database(path);
    const second = new Database(path, { timeout: 50 });
    try {
      const event = { type: 'order.changed', aggregateType: 'order', aggregateId: '1' };
      first.exec('BEGIN');
      const a = outbox.add(fromBetterSqlite3(first), event);
      // SQLite's single writer: the second transaction waits (here, past its busy timeout) and
      // never gets a seq before the first commits, so seq order is commit order.
      expect(() => second.transaction(() => outbox.add(fromBetterSqlite3(second), event))()).toThrow(
        /database is locked/,
      );
      first.exec('COMMIT');
      const b = second.transaction(() => outbox.add(fromBetterSqlite3(second), event))();
      expect((await outbox.store.list()).map((e) => e.id)).toEqual([a, b]);
    } finally {
      first.close();
      second.close();
      await outbox.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
