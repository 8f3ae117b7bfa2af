/**
 * The databases the executor conformance suite runs on, one per harness: a PostgreSQL schema or
 * a SQLite file, each with a business table `biz (id)` and a migrated outbox table, and a
 * connection of the test's own to count rows and, on PostgreSQL, to kill the harness's.
 *
 * On MariaDB, a database per harness, killed with `KILL <connection id>`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { Store } from '../../src/core/ports.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import { postgresStore } from '../../src/stores/postgres.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { MARIADB_URL, mariadbSkip, PG_URL, pgSkip, uniqueName } from './services.js';

export interface DatabaseFixture {
  /** The migrated outbox table (table `outbox`). */
  readonly store: Store;
  /** A second outbox table whose store wakes relays at commit (`notify`), or why there is none. */
  readonly notifyStore: Store | string;
  /** Committed rows of `biz` with this id, read on the test's own connection. */
  countBusinessRows(id: string): Promise<number>;
  close(): Promise<void>;
}

/** Waits until `probe` answers true (a query the victim runs has started), for at most 30 s. */
async function untilRunning(what: string, probe: () => Promise<boolean>): Promise<void> {
  for (let waitedMs = 0; !(await probe()); waitedMs += 20) {
    if (waitedMs > 30_000) throw new Error(`${what} never started its sleep`);
    await sleep(20);
  }
}

/** Runs `run` (a sleep on the victim's connection) and returns its failure once `kill` ran. */
async function killDuring(
  run: () => PromiseLike<unknown>,
  started: () => Promise<void>,
  kill: () => Promise<unknown>,
) {
  const outcome = Promise.resolve(run()).then(
    () => new Error('the connection survived the kill'),
    (error: unknown) => error,
  );
  await started();
  await kill();
  return outcome;
}

export interface PostgresFixture extends DatabaseFixture {
  readonly url: string;
  /** The harness's schema, holding `biz` and `outbox`. */
  readonly schema: string;
  /**
   * Terminates backend `pid` from another connection while `sleep` (a pg_sleep the harness runs
   * on that backend) is in flight, and rejects with the error the harness's handle saw. The
   * query in flight is what makes this deterministic: the error lands on it, not on an idle client.
   */
  kill(pid: number, sleep: () => PromiseLike<unknown>): Promise<never>;
}

/** Keeps a pool's clients from crashing the test process when the suite kills their connection. */
export function ignoreClientErrors(pool: pg.Pool): pg.Pool {
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** A fresh schema with `biz` and the outbox, or the reason PostgreSQL cannot be used. */
export async function postgresFixture(): Promise<PostgresFixture | string> {
  const skip = await pgSkip();
  if (skip) return skip;
  const schema = uniqueName('outbox_exec');
  const admin = ignoreClientErrors(new pg.Pool({ connectionString: PG_URL, max: 4 }));
  await admin.query(`CREATE SCHEMA "${schema}"`);
  await admin.query(`CREATE TABLE "${schema}".biz (id text PRIMARY KEY)`);
  const store = postgresStore({ pool: admin, schema, table: 'outbox' });
  const notifyStore = postgresStore({ pool: admin, schema, table: 'outbox_notify', notify: true });
  await store.migrate();
  await notifyStore.migrate();
  return {
    url: PG_URL,
    schema,
    store,
    notifyStore,
    async countBusinessRows(id) {
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM "${schema}".biz WHERE id = $1`, [
        id,
      ]);
      return rows[0].n;
    },
    async kill(pid, run) {
      const started = () =>
        untilRunning(`backend ${pid}`, async () => {
          const { rows } = await admin.query(
            `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'`,
            [pid],
          );
          return rows.length > 0;
        });
      throw await killDuring(run, started, () => admin.query('SELECT pg_terminate_backend($1)', [pid]));
    },
    async close() {
      await store.close();
      await notifyStore.close();
      await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
      await admin.end();
    },
  };
}

export interface SqliteFixture extends DatabaseFixture {
  /** The database file (WAL mode), holding `biz` and `outbox`. */
  readonly path: string;
}

/** A fresh SQLite file with `biz` and the outbox. */
export async function sqliteFixture(): Promise<SqliteFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-exec-'));
  const path = join(dir, 'app.db');
  const admin = new Database(path);
  admin.pragma('journal_mode = WAL');
  admin.exec('CREATE TABLE biz (id TEXT PRIMARY KEY)');
  const store = sqliteStore({ path, table: 'outbox' });
  await store.migrate();
  const count = admin.prepare('SELECT count(*) AS n FROM biz WHERE id = ?');
  return {
    path,
    store,
    notifyStore: 'SQLite has no commit-time notification: relays poll',
    countBusinessRows: async (id) => (count.get(id) as { n: number }).n,
    async close() {
      await store.close();
      admin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface MysqlFixture extends DatabaseFixture {
  /** A URL of the harness's database, holding `biz` and `outbox`. */
  readonly url: string;
  /** The harness's database. */
  readonly database: string;
  /**
   * Kills connection `id` (`CONNECTION_ID()`) from another connection while `sleep` (a SLEEP()
   * the harness runs on it) is in flight, and rejects with the error the harness's handle saw.
   */
  kill(id: number, sleep: () => PromiseLike<unknown>): Promise<never>;
}

/** A fresh MariaDB database with `biz` and the outbox, or the reason MariaDB cannot be used. */
export async function mysqlFixture(): Promise<MysqlFixture | string> {
  const skip = await mariadbSkip();
  if (skip) return skip;
  const database = uniqueName('outbox_exec');
  const url = new URL(MARIADB_URL);
  url.pathname = `/${database}`;
  const admin = mysql.createPool({ uri: MARIADB_URL, connectionLimit: 4 });
  await admin.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  await admin.query(`CREATE TABLE \`${database}\`.biz (id VARCHAR(64) PRIMARY KEY)`);
  const store = mysqlStore({ pool: admin, schema: database, table: 'outbox' });
  await store.migrate();
  return {
    url: url.href,
    database,
    store,
    notifyStore: 'MySQL has no commit-time notification: relays poll',
    async countBusinessRows(id) {
      const [rows] = await admin.query(`SELECT count(*) AS n FROM \`${database}\`.biz WHERE id = ?`, [id]);
      return Number((rows as { n: number }[])[0]!.n);
    },
    async kill(id, run) {
      const started = () =>
        untilRunning(`connection ${id}`, async () => {
          const [rows] = await admin.query(
            `SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE '%SLEEP(%'`,
            [id],
          );
          return (rows as unknown[]).length > 0;
        });
      throw await killDuring(run, started, () => admin.query(`KILL CONNECTION ${Number(id)}`));
    },
    async close() {
      await store.close();
      await admin.query(`DROP DATABASE \`${database}\``);
      await admin.end();
    },
  };
}
