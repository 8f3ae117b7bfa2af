/**
 * What only the MySQL/MariaDB store and the mysql2 executor do, against the machine's real
 * MariaDB (one database per file): statements over max_allowed_packet refused before any SQL,
 * the utf8mb4 check, identifiers, the URL forms, concurrent migrations, and the executor's
 * handles (a pool refused, the callback API, savepoints, a connection lost before COMMIT). The
 * shared store conformance suite runs against this store too (stores.test.ts).
 */

import mysqlCallback from 'mysql2';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store } from '../../src/core/ports.js';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { createOutbox, type Outbox, type OutboxEvent, storeFromUrl } from '../../src/index.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import { memoryPublisher, runOnce } from '../../src/testing/index.js';
import { countingExecutor } from '../helpers/counting.js';
import { expectCode } from '../helpers/expect-code.js';
import { inMysqlTransaction } from '../helpers/mysql-transaction.js';
import { MARIADB_URL, mariadbSkip, uniqueName } from '../helpers/services.js';

const skip = await mariadbSkip();
const schema = uniqueName('outbox_my');
/** The test database in a URL: `mysql://root@127.0.0.1:3306/<schema>`. */
const urlOf = (scheme: string, database = schema) => {
  const url = new URL(MARIADB_URL);
  url.pathname = `/${database}`;
  return `${scheme}:${url.href.slice(url.protocol.length)}`;
};
let pool: mysql.Pool;
let tables = 0;
const opened: Array<Store | Outbox> = [];

const order = (id: string, payload: unknown = { id }): OutboxEvent => ({
  type: 'order.created',
  aggregateType: 'order',
  aggregateId: id,
  payload,
});

async function newOutbox(options: { migrate?: boolean; maxPayloadBytes?: number } = {}) {
  const table = `t${++tables}`;
  const store = mysqlStore({ pool, schema, table });
  const publisher = memoryPublisher();
  const outbox = createOutbox({
    database: store,
    publishers: { memory: publisher },
    maxPayloadBytes: options.maxPayloadBytes,
  });
  opened.push(outbox, store);
  if (options.migrate ?? true) await store.migrate();
  return { store, outbox, publisher, table };
}

/** A transaction on the test database's pool. */
const inTransaction = <T>(fn: (conn: mysql.PoolConnection) => Promise<T>) => inMysqlTransaction(pool, fn);

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const [rows] = await pool.query(sql, params);
  return Number((rows as { n: number }[])[0]?.n);
}

describe.skipIf(skip)('MySQL/MariaDB store', () => {
  beforeAll(async () => {
    pool = mysql.createPool({ uri: MARIADB_URL, connectionLimit: 8 });
    await pool.query(`CREATE DATABASE \`${schema}\``);
    await pool.query(`CREATE TABLE \`${schema}\`.biz (id VARCHAR(64) NOT NULL)`);
  });
  afterAll(async () => {
    for (const o of opened) await o.close();
    await pool.query(`DROP DATABASE IF EXISTS \`${schema}\``);
    await pool.end();
  });

  describe('statements over max_allowed_packet are refused by add(), before any SQL', () => {
    const MiB = 1024 * 1024;

    it('control: a statement over max_allowed_packet costs the connection, and its transaction', async () => {
      const [[row]] = (await pool.query('SELECT @@max_allowed_packet AS bytes')) as unknown as [
        [{ bytes: number }],
      ];
      const conn = await pool.getConnection();
      try {
        await conn.beginTransaction();
        await conn.query(`INSERT INTO \`${schema}\`.biz (id) VALUES ('lost')`);
        await expect(conn.query('SELECT ?', ['x'.repeat(Number(row.bytes) + MiB)])).rejects.toThrow();
        await expect(conn.query('SELECT 1')).rejects.toThrow();
      } finally {
        conn.destroy();
      }
      expect(await count(`SELECT count(*) AS n FROM \`${schema}\`.biz WHERE id = 'lost'`)).toBe(0);
    });

    it('an event over the limit: PAYLOAD_TOO_LARGE, nothing sent, the transaction carries on', async () => {
      const { store, outbox } = await newOutbox({ maxPayloadBytes: 64 * MiB });
      await store.checkSchema(); // reads max_allowed_packet (16 MiB by default on MariaDB)
      const [[row]] = (await pool.query('SELECT @@max_allowed_packet AS bytes')) as unknown as [
        [{ bytes: number }],
      ];
      const big = order('big', { s: 'x'.repeat(Number(row.bytes)) });
      await inTransaction(async (conn) => {
        await conn.execute(`INSERT INTO \`${schema}\`.biz (id) VALUES ('kept')`);
        const counting = countingExecutor(fromMysql2(conn));
        const error = await expectCode(
          () => outbox.add(counting as never, big as never),
          'PAYLOAD_TOO_LARGE',
        );
        expect(error.details).toMatchObject({ maxAllowedPacket: Number(row.bytes) });
        await expectCode(
          () => outbox.add(counting as never, [order('small'), big] as never),
          'PAYLOAD_TOO_LARGE',
        );
        expect(counting.statements).toBe(0);
      });
      expect(await count(`SELECT count(*) AS n FROM \`${schema}\`.biz WHERE id = 'kept'`)).toBe(1);
      expect(await store.claim([...Array(64).keys()], 10)).toEqual([]);
    });

    it('an event that fits goes through whole, on both protocols', async () => {
      const { store, outbox } = await newOutbox({ maxPayloadBytes: 64 * MiB });
      await store.checkSchema();
      const text = 'é'.repeat(3 * MiB); // 6 MiB of UTF-8
      const ids = await inTransaction(async (conn) => [
        await outbox.add(fromMysql2(conn), order('prepared', { text })),
        await outbox.add(fromMysql2(conn, { prepareStatements: false }), order('escaped', { text })),
      ]);
      const claimed = await store.claim([...Array(64).keys()], 10);
      expect(claimed.map((e) => e.id)).toEqual(ids);
      for (const e of claimed) expect(JSON.parse(e.payload).text).toBe(text);
    });

    it('until the store has read the limit it assumes 1 MiB, and says how to read it', async () => {
      const { table } = await newOutbox();
      const fresh = mysqlStore({ pool, schema, table });
      opened.push(fresh);
      const outbox = createOutbox({ database: fresh, maxPayloadBytes: 8 * MiB });
      const event = order('early', { s: 'x'.repeat(2 * MiB) });
      await inTransaction(async (conn) => {
        const error = await expectCode(() => outbox.add(fromMysql2(conn), event), 'PAYLOAD_TOO_LARGE');
        expect(error.message).toContain('checkSchema()');
        expect(error.details).toMatchObject({ maxAllowedPacket: null });
      });
      await fresh.checkSchema();
      await inTransaction((conn) => outbox.add(fromMysql2(conn), event));
      expect((await fresh.stats()).pending).toBe(1);
    });
  });

  describe('utf8mb4 everywhere', () => {
    it('migrate() and checkSchema() refuse a connection that is not utf8mb4, creating nothing', async () => {
      const latin = mysql.createPool({ uri: MARIADB_URL, connectionLimit: 2, charset: 'UTF8_GENERAL_CI' });
      try {
        const store = mysqlStore({ pool: latin, schema, table: 'never_created' });
        const error = await expectCode(store.migrate(), 'UNSUPPORTED_CHARSET');
        expect(error.message).toContain('character_set_client = utf8mb3');
        await expectCode(store.checkSchema(), 'UNSUPPORTED_CHARSET');
        expect(
          await count(
            "SELECT count(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE 'never_created%'",
            [schema],
          ),
        ).toBe(0);
      } finally {
        await latin.end();
      }
    });

    it('every table and text column is utf8mb4 (ids and statuses ascii), compared byte for byte', async () => {
      const { table } = await newOutbox();
      const [tablesRows] = await pool.query(
        'SELECT TABLE_NAME AS name, TABLE_COLLATION AS collation FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ?',
        [schema, `${table}%`],
      );
      const found = tablesRows as { name: string; collation: string }[];
      expect(found.map((t) => t.name).sort()).toEqual(
        ['', '_leases', '_locks', '_migrations', '_relays'].map((s) => `${table}${s}`),
      );
      expect(new Set(found.map((t) => t.collation))).toEqual(new Set(['utf8mb4_bin']));
      const [columns] = await pool.query(
        `SELECT DISTINCT CHARACTER_SET_NAME AS charset FROM information_schema.COLUMNS
          WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ? AND CHARACTER_SET_NAME IS NOT NULL`,
        [schema, `${table}%`],
      );
      expect((columns as { charset: string }[]).map((c) => c.charset).sort()).toEqual(['ascii', 'utf8mb4']);
    });

    it('keys differing only in case or accents are different keys', async () => {
      const { store, outbox } = await newOutbox();
      await inTransaction((conn) => outbox.add(fromMysql2(conn), [order('a'), order('A'), order('á')]));
      await store.heartbeat('me', 60_000);
      const fence = { owner: 'me', leases: await store.acquireLeases('me', 60_000) };
      const [first] = await store.claim([...Array(64).keys()], 10);
      expect(first!.key).toBe('order:a');
      const retry = { id: first!.id, attempts: 1, error: 'boom', history: [], delayMs: 60_000 };
      await store.settle({ published: [], retry: [retry], dead: [] }, fence);
      // order:a waits for its retry; order:A and order:á are other keys and flow.
      expect((await store.claim([...Array(64).keys()], 10)).map((e) => e.key)).toEqual([
        'order:A',
        'order:á',
      ]);
    });
  });

  describe('configuration', () => {
    it('refuses identifiers that are not plain, and bad options, at creation', async () => {
      const error = await expectCode(
        () => mysqlStore({ pool, table: 'outbox; DROP TABLE x' }),
        'INVALID_IDENTIFIER',
      );
      expect(error.details?.option).toBe('table');
      expect(
        (await expectCode(() => mysqlStore({ pool, schema: 'app`db' }), 'INVALID_IDENTIFIER')).details
          ?.option,
      ).toBe('schema');
      await expectCode(() => mysqlStore({ pool, table: 'x'.repeat(52) }), 'INVALID_IDENTIFIER');
      await expectCode(() => mysqlStore({}), 'INVALID_CONFIG');
      await expectCode(() => mysqlStore({ pool, url: MARIADB_URL }), 'INVALID_CONFIG');
      await expectCode(() => mysqlStore({ url: 'postgres://localhost/x' }), 'UNSUPPORTED_URL');
      // The URL's database is written into SQL too (backquoted): a backquote in it is refused.
      await expectCode(() => mysqlStore({ url: 'mysql://localhost/app%60db' }), 'INVALID_IDENTIFIER');
      expect(mysqlStore({ url: 'mysql://localhost/my-app' }).dialect).toBe('mysql');
      await expectCode(() => mysqlStore({ pool, poolSize: 0 }), 'INVALID_CONFIG');
      await expectCode(() => mysqlStore({ pool, partitions: 5000 }), 'INVALID_CONFIG');
      await expectCode(
        () => createOutbox({ database: { url: MARIADB_URL, notify: true } }),
        'INVALID_CONFIG',
      );
      await expectCode(
        () => createOutbox({ database: { url: MARIADB_URL, busyTimeoutMs: 10 } }),
        'INVALID_CONFIG',
      );
      await expectCode(
        () => createOutbox({ database: { url: MARIADB_URL, table: 'a-b' } }),
        'INVALID_IDENTIFIER',
      );
    });

    for (const scheme of ['mysql', 'mariadb']) {
      it(`a ${scheme}:// URL makes a MySQL store with its own pool: migrate, add, relay, close`, async () => {
        const url = urlOf(scheme);
        expect(storeFromUrl(url).dialect).toBe('mysql');
        const memory = memoryPublisher();
        const table = `url_${scheme}`;
        const outbox = createOutbox({ database: { url, table, partitions: 8 }, publishers: { memory } });
        try {
          expect(outbox.store.capabilities.listenNotify).toBe(false);
          expect((await outbox.migrate()).applied).toHaveLength(1);
          expect(await outbox.store.leases()).toHaveLength(8);
          const id = await inTransaction((conn) => outbox.add(fromMysql2(conn), order(scheme)));
          await runOnce(outbox);
          expect(memory.messages.map((m) => m.id)).toEqual([id]);
        } finally {
          await outbox.close();
        }
        // Closed: the store's own pool is gone, so its next call fails instead of hanging.
        await expect(outbox.store.stats()).rejects.toThrow();
      });
    }

    it('a URL without a database and no schema: migrate() says what is missing', async () => {
      const url = new URL(MARIADB_URL);
      url.pathname = '';
      const store = mysqlStore({ url: url.href });
      opened.push(store);
      const error = await expectCode(store.migrate(), 'INVALID_CONFIG');
      expect(error.message).toContain('no database');
    });

    it('the schema option names the database, created by migrate() when missing', async () => {
      const other = uniqueName('outbox_schema');
      const store = mysqlStore({ url: urlOf('mysql'), schema: other, table: 'events' });
      try {
        await store.migrate();
        await store.checkSchema();
        expect(
          await count('SELECT count(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?', [other]),
        ).toBe(5);
      } finally {
        await store.close();
        await pool.query(`DROP DATABASE IF EXISTS \`${other}\``);
      }
    });
  });

  describe('migrations', () => {
    it('concurrent migrators: one applies, the others find nothing to do; checkSchema before and after', async () => {
      const table = `concurrent_${++tables}`;
      const stores = Array.from({ length: 4 }, () => mysqlStore({ pool, schema, table, partitions: 16 }));
      opened.push(...stores);
      await expectCode(stores[0]!.checkSchema(), 'SCHEMA_OUTDATED');
      const results = await Promise.all(stores.map((s) => s.migrate()));
      expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
      await stores[1]!.checkSchema();
      expect(await stores[2]!.leases()).toHaveLength(16);
      await expectCode(stores[3]!.migrate({ partitions: 64 }), 'INVALID_CONFIG');
      await pool.query(`INSERT INTO \`${schema}\`.\`${table}_migrations\` VALUES (99, 'from the future', 0)`);
      await expectCode(stores[0]!.checkSchema(), 'SCHEMA_TOO_NEW');
      await expectCode(stores[0]!.migrate(), 'SCHEMA_TOO_NEW');
    });
  });

  describe('the mysql2 executor', () => {
    it('refuses a pool (NOT_IN_TRANSACTION), sending nothing', async () => {
      const { store, outbox } = await newOutbox();
      const counting = countingExecutor(fromMysql2(pool));
      await expectCode(() => outbox.add(counting as never, order('pool') as never), 'NOT_IN_TRANSACTION');
      expect(counting.statements).toBe(0);
      expect((await store.stats()).pending).toBe(0);
    });

    it('takes a callback-API connection (through its .promise()), and commits or rolls back with it', async () => {
      const { store, outbox } = await newOutbox();
      const conn = mysqlCallback.createConnection({ uri: MARIADB_URL });
      const promised = conn.promise();
      try {
        await promised.beginTransaction();
        const kept = await outbox.add(fromMysql2(conn), order('kept'));
        await promised.commit();
        await promised.beginTransaction();
        await outbox.add(fromMysql2(conn), order('dropped'));
        await promised.rollback();
        expect((await store.list()).map((e) => e.id)).toEqual([kept]);
      } finally {
        await promised.end();
      }
    });

    it('a savepoint rolled back takes its events with it', async () => {
      const { store, outbox } = await newOutbox();
      const kept = await inTransaction(async (conn) => {
        const id = await outbox.add(fromMysql2(conn), order('before'));
        await conn.query('SAVEPOINT s1');
        await outbox.add(fromMysql2(conn), [order('inside'), order('inside2')]);
        await conn.query('ROLLBACK TO SAVEPOINT s1');
        return id;
      });
      expect((await store.list()).map((e) => e.id)).toEqual([kept]);
    });

    it('a connection lost before COMMIT: neither the business row nor the event exists', async () => {
      const { store, outbox } = await newOutbox();
      const conn = await pool.getConnection();
      await conn.beginTransaction();
      await conn.execute(`INSERT INTO \`${schema}\`.biz (id) VALUES ('lost-conn')`);
      await outbox.add(fromMysql2(conn), order('lost-conn'));
      conn.destroy();
      await new Promise((r) => setTimeout(r, 200));
      expect(await count(`SELECT count(*) AS n FROM \`${schema}\`.biz WHERE id = 'lost-conn'`)).toBe(0);
      expect((await store.stats()).pending).toBe(0);
    });
  });
});
