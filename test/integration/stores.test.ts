/**
 * Runs the store conformance suite unchanged against every real store on the machine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { Executor, Store } from '../../src/core/ports.js';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { fromPg } from '../../src/executors/pg.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import { postgresStore } from '../../src/stores/postgres.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { type StoreHarness, storeConformance } from '../conformance/store.suite.js';
import { inMysqlTransaction } from '../helpers/mysql-transaction.js';
import { MARIADB_URL, mariadbSkip, PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

type StoreOptions = NonNullable<Parameters<StoreHarness['store']>[0]>;

/** A harness's `store()`: migrated stores on fresh tables, made by `make`, closed together by `closeAll()`. */
function freshStores(make: (table: string, options: StoreOptions) => Store) {
  const stores: Store[] = [];
  const store: StoreHarness['store'] = async (options = {}) => {
    const made = make(uniqueName('outbox'), options);
    await made.migrate();
    stores.push(made);
    return made;
  };
  return { store, closeAll: () => Promise.all(stores.map((s) => s.close())) };
}

storeConformance('sqlite', async (): Promise<StoreHarness> => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-sqlite-'));
  const path = join(dir, 'test.db');
  const app = new Database(path);
  app.pragma('journal_mode = WAL');
  app.exec('CREATE TABLE biz (id TEXT NOT NULL)');
  const { store, closeAll } = freshStores((table, options) => sqliteStore({ path, table, ...options }));
  return {
    store,
    async transaction(_store, fn) {
      app.exec('BEGIN');
      try {
        const result = await fn(fromBetterSqlite3(app));
        app.exec('COMMIT');
        return result;
      } catch (error) {
        app.exec('ROLLBACK');
        throw error;
      }
    },
    withoutTransaction: async (_store, fn) => fn(fromBetterSqlite3(app)),
    insertBusinessRow: async (executor: Executor, id: string) => {
      await executor.query('INSERT INTO biz (id) VALUES (?)', [id]);
    },
    countBusinessRows: async (id) =>
      (app.prepare('SELECT count(*) AS n FROM biz WHERE id = ?').get(id) as { n: number }).n,
    async close() {
      await closeAll();
      app.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

storeConformance('postgres', async (): Promise<StoreHarness | string> => {
  const skip = await pgSkip();
  if (skip) return skip;
  const schema = uniqueName('outbox_test');
  const pool = new pg.Pool({ connectionString: PG_URL, max: 6 });
  await pool.query(`CREATE SCHEMA "${schema}"`);
  await pool.query(`CREATE TABLE "${schema}".biz (id text NOT NULL)`);
  const { store, closeAll } = freshStores((table, options) =>
    postgresStore({ pool, schema, table, ...options }),
  );
  return {
    store,
    async transaction(_store, fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(fromPg(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    },
    async withoutTransaction(_store, fn) {
      const client = await pool.connect();
      try {
        return await fn(fromPg(client));
      } finally {
        client.release();
      }
    },
    async insertBusinessRow(executor, id) {
      await executor.query(`INSERT INTO "${schema}".biz (id) VALUES ($1)`, [id]);
    },
    async countBusinessRows(id) {
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".biz WHERE id = $1`, [id]);
      return rows[0].n;
    },
    async close() {
      await closeAll();
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    },
  };
});

storeConformance('mariadb', async (): Promise<StoreHarness | string> => {
  const skip = await mariadbSkip();
  if (skip) return skip;
  const schema = uniqueName('outbox_test');
  const pool = mysql.createPool({ uri: MARIADB_URL, connectionLimit: 8 });
  await pool.query(`CREATE DATABASE \`${schema}\``);
  await pool.query(`CREATE TABLE \`${schema}\`.biz (id VARCHAR(64) NOT NULL)`);
  const { store, closeAll } = freshStores((table, options) =>
    mysqlStore({ pool, schema, table, ...options }),
  );
  return {
    store,
    transaction: (_store, fn) => inMysqlTransaction(pool, async (conn) => fn(fromMysql2(conn))),
    // mysql2 does not tell whether a connection is in a transaction; a pool is the handle outside
    // one that add() can tell apart (and refuses).
    withoutTransaction: async (_store, fn) => fn(fromMysql2(pool)),
    async insertBusinessRow(executor, id) {
      await executor.query(`INSERT INTO \`${schema}\`.biz (id) VALUES (?)`, [id]);
    },
    async countBusinessRows(id) {
      const [rows] = await pool.query(`SELECT count(*) AS n FROM \`${schema}\`.biz WHERE id = ?`, [id]);
      return Number((rows as { n: number }[])[0]?.n);
    },
    async close() {
      await closeAll();
      await pool.query(`DROP DATABASE \`${schema}\``);
      await pool.end();
    },
  };
});
