/**
 * What the cli-*.test.ts files share: the built `outbox` bin run as a user runs it (a child
 * process, flags, env and a config file), and one fresh outbox per database the machine has
 * (SQLite file, PostgreSQL schema, MariaDB database), with a real transaction to add events and
 * an admin connection to break things on purpose.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { OutboxEvent } from '../../src/core/event.js';
import type { Publisher } from '../../src/core/ports.js';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, type Outbox, type OutboxConfig, PermanentError } from '../../src/index.js';
import { silentLogger } from '../../src/relay/logger.js';
import { MARIADB_URL, mariadbSkip, PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const bin = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const run = promisify(execFile);

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `outbox …` in `cwd` with the environment given on top of this one. */
export function outboxCli(
  args: readonly string[],
  options: { cwd: string; env?: Record<string, string>; nodeArgs?: readonly string[] },
) {
  return run(process.execPath, [...(options.nodeArgs ?? []), bin, ...args], {
    cwd: options.cwd,
    env: { ...process.env, OUTBOX_LOG_LEVEL: 'warn', ...options.env },
    maxBuffer: 16 * 1024 * 1024,
  }).then(
    (r): CliResult => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }): CliResult => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );
}

export const BIN = bin;

/** A fresh, migrated outbox on one database, and the means to fill it and break it. */
export interface CliDatabase {
  readonly name: 'sqlite' | 'postgres' | 'mariadb';
  /** The database URL (`--db`). */
  readonly url: string;
  /** A config file naming this outbox (URL and, where there is one, the schema). */
  readonly config: string;
  /** Directory to run the CLI in. */
  readonly dir: string;
  readonly databaseConfig: { url: string; schema?: string; retainPublished?: boolean };
  /** An application-side outbox on the same table (close it). */
  outbox(extra?: Omit<OutboxConfig, 'database'> & { retainPublished?: boolean }): Outbox;
  /** Commits `events` in one real transaction; returns their ids. */
  add(outbox: Outbox, events: readonly OutboxEvent[]): Promise<string[]>;
  /** Admin SQL on its own connection ($1 placeholders on PostgreSQL, ? elsewhere). */
  sql(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** `"schema".` / `` `schema`. `` / '' — the qualifier of this outbox's tables. */
  readonly prefix: string;
  close(): Promise<void>;
}

/** A publisher that refuses everything for good: each event is dead-lettered at its first attempt. */
export function rejectingPublisher(reason = 'rejected by the test receiver (HTTP 422)'): Publisher {
  return {
    kind: 'memory',
    capabilities: { dedupeById: false },
    publish: async (messages) => messages.map(() => ({ ok: false, error: new PermanentError(reason) })),
  };
}

export interface DatabaseCase {
  readonly name: CliDatabase['name'];
  skip(): Promise<string | undefined>;
  make(): Promise<CliDatabase>;
}

/**
 * One case per database. `ownDatabase`: on PostgreSQL, a database of its own instead of a schema
 * in the shared one (what reads pg_stat_activity of the current database sees only this file).
 */
export function cliDatabases(prefix: string, { ownDatabase = false } = {}): DatabaseCase[] {
  return [
    { name: 'sqlite', skip: async () => undefined, make: () => sqlite(prefix) },
    { name: 'postgres', skip: pgSkip, make: () => postgres(prefix, ownDatabase) },
    { name: 'mariadb', skip: mariadbSkip, make: () => mariadb(prefix) },
  ];
}

function writeConfig(dir: string, database: CliDatabase['databaseConfig']): string {
  const path = join(dir, 'outbox.config.json');
  writeFileSync(path, JSON.stringify({ database }));
  return path;
}

function appOutbox(
  database: CliDatabase['databaseConfig'],
  extra: Parameters<CliDatabase['outbox']>[0] = {},
) {
  const { retainPublished, relay, ...rest } = extra;
  return createOutbox({
    database: { ...database, ...(retainPublished ? { retainPublished } : {}) },
    relay: { logger: silentLogger, ...relay },
    ...rest,
  });
}

async function sqlite(prefix: string): Promise<CliDatabase> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-sqlite-`));
  const url = `sqlite:${join(dir, 'app.db')}`;
  const databaseConfig = { url };
  const app = new Database(join(dir, 'app.db'));
  app.pragma('busy_timeout = 5000');
  const outbox = appOutbox(databaseConfig);
  await outbox.migrate();
  await outbox.close();
  return {
    name: 'sqlite',
    url,
    dir,
    databaseConfig,
    config: writeConfig(dir, databaseConfig),
    prefix: '',
    outbox: (extra) => appOutbox(databaseConfig, extra),
    async add(outbox, events) {
      return app.transaction(() => outbox.add(fromBetterSqlite3(app), events))();
    },
    async sql(text, params = []) {
      const statement = app.prepare(text);
      if (statement.reader) return statement.all(...params) as Record<string, unknown>[];
      statement.run(...params);
      return [];
    },
    async close() {
      app.close();
    },
  };
}

async function postgres(prefix: string, ownDatabase: boolean): Promise<CliDatabase> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-pg-`));
  const schema = uniqueName(prefix.replace(/-/g, '_'));
  let url = PG_URL;
  let dropDatabase = async () => {};
  if (ownDatabase) {
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${schema}"`);
    await admin.end();
    const u = new URL(PG_URL);
    u.pathname = `/${schema}`;
    url = u.toString();
    dropDatabase = async () => {
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(`DROP DATABASE "${schema}" WITH (FORCE)`);
      await client.end();
    };
  }
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  await pool.query(`CREATE SCHEMA "${schema}"`);
  const databaseConfig = { url, schema };
  const outbox = appOutbox(databaseConfig);
  await outbox.migrate();
  await outbox.close();
  return {
    name: 'postgres',
    url,
    dir,
    databaseConfig,
    config: writeConfig(dir, databaseConfig),
    prefix: `"${schema}".`,
    outbox: (extra) => appOutbox(databaseConfig, extra),
    async add(outbox, events) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const ids = await outbox.add(fromPg(client), events);
        await client.query('COMMIT');
        return ids;
      } finally {
        client.release();
      }
    },
    async sql(text, params = []) {
      return (await pool.query(text, params)).rows;
    },
    async close() {
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
      await dropDatabase();
    },
  };
}

async function mariadb(prefix: string): Promise<CliDatabase> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-mariadb-`));
  const schema = uniqueName(prefix.replace(/-/g, '_'));
  const pool = mysql.createPool({ uri: MARIADB_URL, connectionLimit: 4 });
  await pool.query(`CREATE DATABASE \`${schema}\``);
  const databaseConfig = { url: MARIADB_URL, schema };
  const outbox = appOutbox(databaseConfig);
  await outbox.migrate();
  await outbox.close();
  return {
    name: 'mariadb',
    url: MARIADB_URL,
    dir,
    databaseConfig,
    config: writeConfig(dir, databaseConfig),
    prefix: `\`${schema}\`.`,
    outbox: (extra) => appOutbox(databaseConfig, extra),
    async add(outbox, events) {
      const conn = await pool.getConnection();
      try {
        await conn.beginTransaction();
        const ids = await outbox.add(fromMysql2(conn), events);
        await conn.commit();
        return ids;
      } finally {
        conn.release();
      }
    },
    async sql(text, params = []) {
      const [rows] = await pool.query(text, params);
      return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
    },
    async close() {
      await pool.query(`DROP DATABASE \`${schema}\``);
      await pool.end();
    },
  };
}

/**
 * Writes lease rows as a relay would have left them: `owner` holds `partitions`, expiring
 * `expiresInMs` from the database's now (negative: it stopped heartbeating that long ago).
 */
export async function writeLeases(
  db: CliDatabase,
  owner: string,
  partitions: readonly number[],
  expiresInMs: number,
): Promise<void> {
  const leases = `${db.prefix}${db.name === 'mariadb' ? '`outbox_leases`' : '"outbox_leases"'}`;
  if (db.name === 'postgres') {
    await db.sql(
      `UPDATE ${leases} SET owner = $1, epoch = epoch + 1, expires_at = now() + $2::float8 * interval '1 millisecond'
        WHERE "partition" = ANY($3::int[])`,
      [owner, expiresInMs, partitions],
    );
  } else if (db.name === 'mariadb') {
    await db.sql(
      `UPDATE ${leases} SET owner = ?, epoch = epoch + 1,
        expires_at = (TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000) + ?
        WHERE FIND_IN_SET(\`partition\`, ?)`,
      [owner, expiresInMs, partitions.join(',')],
    );
  } else {
    await db.sql(
      `UPDATE ${leases} SET owner = ?, epoch = epoch + 1, expires_at = ?
        WHERE partition IN (SELECT value FROM json_each(?))`,
      [owner, Date.now() + expiresInMs, JSON.stringify(partitions)],
    );
  }
}
