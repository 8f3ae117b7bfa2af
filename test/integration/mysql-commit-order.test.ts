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
import { createOutbox, type OutboxEvent, silentLogger } from '../../src/index.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import { memoryPublisher, seededRandom } from '../../src/testing/index.js';
import { MARIADB_URL, mariadbSkip, uniqueName } from '../helpers/services.js';

const skip = await mariadbSkip();
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

const event = (key: string): OutboxEvent => {
  const [type, id] = key.split(':') as [string, string];
  return { type: 'order.changed', aggregateType: type, aggregateId: id };
};

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

  /**
   * Runs the workload; `write` adds events (one for `key`, maybe more) on the connection's open
   * transaction and returns their [key, id] pairs. Returns each key's ids in the order their
   * transactions sent COMMIT (those that committed).
   */
  async function produce(
    write: (conn: mysql.PoolConnection, key: string) => Promise<readonly (readonly [string, string])[]>,
  ) {
    console.log(`mysql commit-order: seed ${seed} (OUTBOX_TEST_SEED reproduces a run)`);
    const random = seededRandom(seed);
    const committed = new Map<string, [number, string][]>();
    let started = 0;
    let commits = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        const conn = await pool.getConnection();
        try {
          while (started++ < TRANSACTIONS) {
            const key = `order:${Math.floor(random() * KEYS)}`;
            const holdMs = random() * 4;
            await conn.beginTransaction();
            const added = await write(conn, key);
            await new Promise((r) => setTimeout(r, holdMs));
            const order = commits++;
            await conn.commit();
            for (const [k, id] of added) committed.set(k, [...(committed.get(k) ?? []), [order, id]]);
          }
        } finally {
          conn.release();
        }
      }),
    );
    return new Map(
      [...committed].map(([k, ids]) => [k, ids.sort((a, b) => a[0] - b[0]).map(([, id]) => id)]),
    );
  }

  it('add() locks its keys before taking a seq: published order equals commit order for every key', async () => {
    const publisher = memoryPublisher();
    const outbox = createOutbox({
      database: mysqlStore({ pool, schema, table: 'with_lock' }),
      publishers: { memory: publisher },
      relay: { logger: silentLogger },
    });
    await outbox.migrate();
    const committed = await produce(async (conn, key) => [
      [key, await outbox.add(fromMysql2(conn), event(key))],
    ]);
    await outbox.relay().drain();
    expect(publisher.messages).toHaveLength(TRANSACTIONS);
    expect(inversions(committed, publisher.messages)).toBe(0);
    await outbox.close();
  });

  it('the same with batches of several keys per add() (the lock rows taken in slot order)', async () => {
    const publisher = memoryPublisher();
    const outbox = createOutbox({
      database: mysqlStore({ pool, schema, table: 'with_lock_batch' }),
      publishers: { memory: publisher },
      relay: { logger: silentLogger },
    });
    await outbox.migrate();
    let n = 0;
    const committed = await produce(async (conn, key) => {
      // Two keys per batch, in either order between batches: the lock rows are taken in slot order.
      const other = `order:${(Number(key.split(':')[1]) + 1 + (n++ % (KEYS - 1))) % KEYS}`;
      const ids = await outbox.add(fromMysql2(conn), [event(key), event(other)]);
      return [
        [key, ids[0]!],
        [other, ids[1]!],
      ];
    });
    await outbox.relay().drain();
    expect(publisher.messages).toHaveLength(2 * TRANSACTIONS);
    expect(inversions(committed, publisher.messages)).toBe(0);
    await outbox.close();
  });

  it('control: a plain INSERT without the lock stores same-key events out of commit order', async () => {
    const store = mysqlStore({ pool, schema, table: 'no_lock' });
    await store.migrate();
    const committed = await produce(async (conn, key) => {
      const id = randomUUID();
      await conn.execute(
        `INSERT INTO \`${schema}\`.no_lock (id, \`key\`, key_hash, type, destination, payload, headers, history,
           created_at, available_at) VALUES (?, ?, 0, 'order.changed', 'orders', '{}', '{}', '[]', 0, 0)`,
        [id, key],
      );
      return [[key, id]];
    });
    const [rows] = await pool.query(`SELECT id, \`key\` FROM \`${schema}\`.no_lock ORDER BY seq`);
    const found = inversions(committed, rows as { id: string; key: string }[]);
    console.log(
      `mysql commit-order control: ${found} same-key pairs stored out of commit order without the lock`,
    );
    expect(found).toBeGreaterThan(0);
    await store.close();
  });

  it('a producer waiting for a key holds back that key only, and takes its seq after the first commits', async () => {
    const store = mysqlStore({ pool, schema, table: 'waiting' });
    await store.migrate();
    const outbox = createOutbox({ database: store });
    const [first, second, other] = await Promise.all([1, 2, 3].map(() => pool.getConnection()));
    try {
      // A stuck wait fails the test in seconds, not after InnoDB's default 50 s.
      for (const conn of [second!, other!]) await conn.query('SET SESSION innodb_lock_wait_timeout = 10');
      await first!.beginTransaction();
      const a1 = await outbox.add(fromMysql2(first!), event('order:A'));
      await second!.beginTransaction();
      let secondDone = false;
      // A batch: its key B lock is free, its key A lock is not, so nothing of it may be inserted yet.
      const waiting = outbox.add(fromMysql2(second!), [event('order:B'), event('order:A')]).finally(() => {
        secondDone = true;
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(secondDone).toBe(false);
      // Another key meanwhile: neither the key lock nor an AUTO-INC lock of the waiting batch stops it.
      await other!.beginTransaction();
      const c1 = await outbox.add(fromMysql2(other!), event('order:C'));
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
      await outbox.add(fromMysql2(first!), event('order:R'));
      await second!.beginTransaction();
      const waiting = outbox.add(fromMysql2(second!), event('order:R'));
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
