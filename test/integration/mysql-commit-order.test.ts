/**
 * Per-key order is commit order on MariaDB (InnoDB): concurrent producers on shared keys, each
 * transaction holding its event a random moment before COMMIT; a key's events must be published
 * in the order their transactions committed. Commit order is taken as the order in which the
 * transactions sent COMMIT, not the order the COMMITs returned: InnoDB releases a transaction's
 * row locks at its in-memory commit, before the redo log flush and the client's OK, so the next
 * transaction on the key may commit and see its OK first (measured here: one or two same-key
 * pairs per run whose overlapping COMMITs returned crossed, each published in the order COMMIT
 * was sent, which is the order the key's lock serialised them in). The same workload with a plain INSERT (no key lock)
 * shows that the check catches the reordering the lock prevents. Then the mechanism itself: a
 * producer waiting for a key's lock row holds back that key only (no AUTO-INC lock is held while
 * it waits), and takes its seq only once the first transaction has ended.
 */
import { randomUUID } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { createOutbox } from '../../src/index.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import {
  expectPublishedInCommitOrder,
  expectStoredOutOfCommitOrder,
  KEYS,
  orderChanged,
  produce,
  TRANSACTIONS,
  WORKERS,
  type WorkloadOptions,
} from '../helpers/commit-order.js';
import { MARIADB_URL, mariadbSkip, uniqueName } from '../helpers/services.js';

const skip = await mariadbSkip();

describe.skipIf(skip)('per-key order is commit order (MariaDB, concurrent producers)', () => {
  const schema = uniqueName('outbox_commit');
  let pool: mysql.Pool;

  beforeAll(async () => {
    pool = mysql.createPool({ uri: MARIADB_URL, connectionLimit: WORKERS + 4 });
    await pool.query(`CREATE DATABASE \`${schema}\``);
  });
  afterAll(async () => {
    await pool.query(`DROP DATABASE \`${schema}\``);
    await pool.end();
  });

  /** The workload, its commit order the order in which transactions sent COMMIT. */
  const produceOnMysql = (write: WorkloadOptions<mysql.PoolConnection>['write']) =>
    produce({
      label: 'mysql commit-order',
      connections: {
        connect: () => pool.getConnection(),
        begin: (conn) => conn.beginTransaction(),
        commit: (conn) => conn.commit(),
        release: (conn) => conn.release(),
      },
      commitOrder: 'sent',
      write,
    });

  it('add() locks its keys before taking a seq: published order equals commit order for every key', () =>
    expectPublishedInCommitOrder(mysqlStore({ pool, schema, table: 'with_lock' }), TRANSACTIONS, (outbox) =>
      produceOnMysql(async (conn, key) => [[key, await outbox.add(fromMysql2(conn), orderChanged(key))]]),
    ));

  it('the same with batches of several keys per add() (the lock rows taken in slot order)', () => {
    let n = 0;
    return expectPublishedInCommitOrder(
      mysqlStore({ pool, schema, table: 'with_lock_batch' }),
      2 * TRANSACTIONS,
      (outbox) =>
        produceOnMysql(async (conn, key) => {
          // Two keys per batch, in either order between batches: the lock rows are taken in slot order.
          const other = `order:${(Number(key.split(':')[1]) + 1 + (n++ % (KEYS - 1))) % KEYS}`;
          const ids = await outbox.add(fromMysql2(conn), [orderChanged(key), orderChanged(other)]);
          return [
            [key, ids[0]!],
            [other, ids[1]!],
          ];
        }),
    );
  });

  it('control: a plain INSERT without the lock stores same-key events out of commit order', () =>
    expectStoredOutOfCommitOrder(
      'mysql commit-order',
      mysqlStore({ pool, schema, table: 'no_lock' }),
      () =>
        produceOnMysql(async (conn, key) => {
          const id = randomUUID();
          await conn.execute(
            `INSERT INTO \`${schema}\`.no_lock (id, \`key\`, key_hash, type, destination, payload, headers, history,
               created_at, available_at) VALUES (?, ?, 0, 'order.changed', 'orders', '{}', '{}', '[]', 0, 0)`,
            [id, key],
          );
          return [[key, id]];
        }),
      async () => {
        const [rows] = await pool.query(`SELECT id, \`key\` FROM \`${schema}\`.no_lock ORDER BY seq`);
        return rows as { id: string; key: string }[];
      },
    ));

  it('a producer waiting for a key holds back that key only, and takes its seq after the first commits', async () => {
    const store = mysqlStore({ pool, schema, table: 'waiting' });
    await store.migrate();
    const outbox = createOutbox({ database: store });
    const [first, second, other] = await Promise.all([1, 2, 3].map(() => pool.getConnection()));
    try {
      // A stuck wait fails the test in seconds, not after InnoDB's default 50 s.
      for (const conn of [second!, other!]) await conn.query('SET SESSION innodb_lock_wait_timeout = 10');
      await first!.beginTransaction();
      const a1 = await outbox.add(fromMysql2(first!), orderChanged('order:A'));
      await second!.beginTransaction();
      let secondDone = false;
      // A batch: its key B lock is free, its key A lock is not, so nothing of it may be inserted yet.
      const waiting = outbox
        .add(fromMysql2(second!), [orderChanged('order:B'), orderChanged('order:A')])
        .finally(() => {
          secondDone = true;
        });
      await new Promise((r) => setTimeout(r, 300));
      expect(secondDone).toBe(false);
      // Another key meanwhile: neither the key lock nor an AUTO-INC lock of the waiting batch stops it.
      await other!.beginTransaction();
      const c1 = await outbox.add(fromMysql2(other!), orderChanged('order:C'));
      await other!.commit();
      expect(secondDone).toBe(false);
      await first!.commit();
      const [b1, a2] = await waiting;
      await second!.commit();
      const seqs = new Map((await store.list()).map((e) => [e.id, e.seq]));
      expect(seqs.get(a2!)!).toBeGreaterThan(seqs.get(a1)!);
      // Its seqs were taken after the wait: after the event committed meanwhile.
      expect(seqs.get(b1!)!).toBeGreaterThan(seqs.get(c1)!);
    } finally {
      for (const conn of [first, second, other]) conn!.release();
      await store.close();
    }
  });

  it('a rolled-back transaction releases its keys at once', async () => {
    const store = mysqlStore({ pool, schema, table: 'rolled_back' });
    await store.migrate();
    const outbox = createOutbox({ database: store });
    const [first, second] = await Promise.all([1, 2].map(() => pool.getConnection()));
    try {
      await second!.query('SET SESSION innodb_lock_wait_timeout = 10');
      await first!.beginTransaction();
      await outbox.add(fromMysql2(first!), orderChanged('order:R'));
      await second!.beginTransaction();
      const waiting = outbox.add(fromMysql2(second!), orderChanged('order:R'));
      await new Promise((r) => setTimeout(r, 100));
      await first!.rollback();
      const id = await waiting;
      await second!.commit();
      expect((await store.list()).map((e) => e.id)).toEqual([id]);
    } finally {
      for (const conn of [first, second]) conn!.release();
      await store.close();
    }
  });
});
