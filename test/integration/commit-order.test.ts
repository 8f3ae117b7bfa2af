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
import { createOutbox } from '../../src/index.js';
import { postgresStore } from '../../src/stores/postgres.js';
import {
  expectPublishedInCommitOrder,
  expectStoredOutOfCommitOrder,
  orderChanged,
  produce,
  TRANSACTIONS,
  WORKERS,
} from '../helpers/commit-order.js';
import { PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const skip = await pgSkip();

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

  /** The workload; `write` adds one event for `key` on the client's open transaction and returns its id. */
  const produceOnPg = (write: (client: pg.PoolClient, key: string) => Promise<string>) =>
    produce({
      label: 'commit-order',
      connections: {
        connect: () => pool.connect(),
        begin: (client) => client.query('BEGIN'),
        commit: (client) => client.query('COMMIT'),
        release: (client) => client.release(),
      },
      // The order COMMITs were sent: PostgreSQL frees the key's lock while committing, before the
      // client sees COMMIT return, so under load two overlapping returns can cross (the second
      // transaction's events still came after the first's, as the lock serialised them).
      commitOrder: 'sent',
      write: async (client, key) => [[key, await write(client, key)]],
    });

  it('add() takes a per-key lock: published order equals commit order for every key', () =>
    expectPublishedInCommitOrder(
      postgresStore({ pool, schema, table: 'with_lock' }),
      TRANSACTIONS,
      (outbox) => produceOnPg((client, key) => outbox.add(fromPg(client), orderChanged(key))),
    ));

  it('control: a plain INSERT without the lock stores same-key events out of commit order', () =>
    expectStoredOutOfCommitOrder(
      'commit-order',
      postgresStore({ pool, schema, table: 'no_lock' }),
      () =>
        produceOnPg(async (client, key) => {
          const { rows } = await client.query(
            `INSERT INTO "${schema}".no_lock (id, key, key_hash, type, destination, payload)
             VALUES (gen_random_uuid(), $1, 0, 'order.changed', 'orders', '{}') RETURNING id`,
            [key],
          );
          return String(rows[0].id);
        }),
      async () => (await pool.query(`SELECT id, key FROM "${schema}".no_lock ORDER BY seq`)).rows,
    ));
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
