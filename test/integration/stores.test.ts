/**
 * Runs the store conformance suite unchanged against every real store on the machine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { Executor, Store } from '../../src/core/ports.js';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromPg } from '../../src/executors/pg.js';
import { postgresStore } from '../../src/stores/postgres.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { type StoreHarness, storeConformance } from '../conformance/store.suite.js';
import { PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

storeConformance('sqlite', async (): Promise<StoreHarness> => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-sqlite-'));
  const path = join(dir, 'test.db');
  const app = new Database(path);
  app.pragma('journal_mode = WAL');
  app.exec('CREATE TABLE biz (id TEXT NOT NULL)');
  const stores: Store[] = [];
  return {
    async store(options = {}) {
      const store = sqliteStore({ path, table: uniqueName('outbox'), ...options });
      await store.migrate();
      stores.push(store);
      return store;
    },
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
      await Promise.all(stores.map((s) => s.close()));
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
  const stores: Store[] = [];
  return {
    async store(options = {}) {
      const store = postgresStore({ pool, schema, table: uniqueName('outbox'), ...options });
      await store.migrate();
      stores.push(store);
      return store;
    },
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
      await Promise.all(stores.map((s) => s.close()));
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    },
  };
});
