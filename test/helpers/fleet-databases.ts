/**
 * The databases the fleet and chaos tests run on, PostgreSQL (pg) and MariaDB (mysql2), behind
 * the few things the harness does that differ between them: open a pool, make a namespace for a
 * test file (a schema; a database on MariaDB), put the outbox store on the pool, create the
 * ledger, commit events with their ledger rows in one transaction, read the ledger back. The
 * relays themselves get only `url`: they build their store with `storeFromUrl`, as users do.
 *
 * Per key, ledger order is commit order on both (see test/helpers/fleet.ts): `add()` takes a
 * transaction-scoped per-key lock (an advisory lock; a lock row `FOR UPDATE` on InnoDB) before
 * the ledger rows take their sequence numbers, so a second transaction on the key gets its ledger
 * seq only after the first one committed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { Dialect, Store } from '../../src/core/ports.js';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { fromPg } from '../../src/executors/pg.js';
import type { Outbox, OutboxEvent } from '../../src/index.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import { postgresStore } from '../../src/stores/postgres.js';
import type { LedgerEntry } from '../../src/testing/index.js';
import { MARIADB_URL, mariadbSkip, PG_URL, pgSkip } from './services.js';

export type Row = Record<string, unknown>;

/** A connection of its own, checked out of the test's pool. */
export interface FleetConnection {
  query(sql: string, params?: unknown[]): Promise<Row[]>;
  /**
   * One transaction: add() first (it takes the per-key locks), then the ledger rows, then, after
   * `holdMs`, COMMIT; rolled back on an error, which is rethrown. Returns the event ids.
   */
  commitEvents(
    o: { outbox: Outbox; ledger: string },
    events: readonly OutboxEvent[],
    holdMs?: number,
  ): Promise<string[]>;
  /** Back to the pool; closed instead when `broken` (after an error its session may be gone). */
  release(broken?: boolean): void;
}

export interface FleetDatabase<Pool = unknown> {
  readonly name: 'PostgreSQL' | 'MariaDB';
  readonly dialect: Exclude<Dialect, 'sqlite'>;
  /** The relays' database URL (the namespace and table are given apart). */
  readonly url: string;
  /** Why its tests skip (the database is unreachable), or undefined. */
  skipReason(): Promise<string | undefined>;
  openPool(max: number): Promise<Pool>;
  closePool(pool: Pool): Promise<void>;
  createSchema(pool: Pool, schema: string): Promise<void>;
  dropSchema(pool: Pool, schema: string): Promise<void>;
  /** `schema`.`table`, quoted the database's way. */
  qualify(schema: string, table: string): string;
  store(pool: Pool, o: { schema: string; table: string; partitions?: number }): Store;
  /** Creates `<table>_ledger` beside the outbox table; returns its qualified name. */
  createLedger(pool: Pool, schema: string, table: string): Promise<string>;
  /** The ledger in per-key commit order. `committedAt` is taken by the ledger row's insert. */
  readLedger(pool: Pool, ledger: string): Promise<LedgerEntry[]>;
  query(pool: Pool, sql: string, params?: unknown[]): Promise<Row[]>;
  connect(pool: Pool): Promise<FleetConnection>;
  /** A transaction the database rolled back to break a deadlock: writers count it and go on. */
  isDeadlock(error: unknown): boolean;
}

const ignoreError = () => undefined;

export const postgresFleet: FleetDatabase<pg.Pool> = {
  name: 'PostgreSQL',
  dialect: 'postgres',
  url: PG_URL,
  skipReason: pgSkip,
  async openPool(max) {
    const pool = new pg.Pool({ connectionString: PG_URL, max });
    // An idle client's error (a database restart, a terminated session) must not end the test process.
    pool.on('error', ignoreError);
    return pool;
  },
  closePool: (pool) => pool.end(),
  async createSchema(pool, schema) {
    await pool.query(`CREATE SCHEMA "${schema}"`);
  },
  async dropSchema(pool, schema) {
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
  },
  qualify: (schema, table) => `"${schema}"."${table}"`,
  store: (pool, o) => postgresStore({ pool, ...o }),
  async createLedger(pool, schema, table) {
    const ledger = `"${schema}"."${table}_ledger"`;
    await pool.query(`CREATE TABLE ${ledger} (seq bigserial PRIMARY KEY, event_id uuid NOT NULL,
    key text NOT NULL, committed_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    return ledger;
  },
  async readLedger(pool, ledger) {
    const { rows } = await pool.query(`SELECT event_id AS id, key, committed_at FROM ${ledger} ORDER BY seq`);
    return rows.map((r) => ({ id: r.id, key: r.key, committedAt: r.committed_at.getTime() }));
  },
  query: async (pool, sql, params) => (await pool.query(sql, params)).rows,
  async connect(pool) {
    const client = await pool.connect();
    // A checked-out client has no pool listener: without ours, a restart or a terminated
    // session would be an uncaught 'error' (the failing query rejects as well).
    if (!client.listeners('error').includes(ignoreError)) client.on('error', ignoreError);
    return {
      query: async (sql, params) => (await client.query(sql, params)).rows,
      async commitEvents(o, events, holdMs = 0) {
        await client.query('BEGIN');
        try {
          const ids = await o.outbox.add(fromPg(client), events);
          const keys = events.map((e) => `${e.aggregateType}:${e.aggregateId}`);
          await client.query(
            `INSERT INTO ${o.ledger} (event_id, key) SELECT * FROM unnest($1::uuid[], $2::text[])`,
            [ids, keys],
          );
          if (holdMs > 0) await sleep(holdMs);
          await client.query('COMMIT');
          return ids;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      },
      release: (broken) => client.release(broken),
    };
  },
  isDeadlock: (error) => (error as { code?: string }).code === '40P01',
};

export const mariadbFleet: FleetDatabase<mysql.Pool> = {
  name: 'MariaDB',
  dialect: 'mysql',
  url: MARIADB_URL,
  skipReason: mariadbSkip,
  openPool: async (max) => mysql.createPool({ uri: MARIADB_URL, connectionLimit: max }),
  closePool: (pool) => pool.end(),
  async createSchema(pool, schema) {
    await pool.query(`CREATE DATABASE \`${schema}\``);
  },
  async dropSchema(pool, schema) {
    await pool.query(`DROP DATABASE \`${schema}\``);
  },
  qualify: (schema, table) => `\`${schema}\`.\`${table}\``,
  store: (pool, o) => mysqlStore({ pool, ...o }),
  async createLedger(pool, schema, table) {
    const ledger = `\`${schema}\`.\`${table}_ledger\``;
    // TIMESTAMP is stored in UTC, and UNIX_TIMESTAMP reads it back without the session's time zone.
    await pool.query(`CREATE TABLE ${ledger} (seq BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
      event_id CHAR(36) NOT NULL, \`key\` VARCHAR(255) NOT NULL,
      committed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB`);
    return ledger;
  },
  async readLedger(pool, ledger) {
    const [rows] = await pool.query<mysql.RowDataPacket[]>(
      `SELECT event_id AS id, \`key\`, UNIX_TIMESTAMP(committed_at) * 1000 AS at FROM ${ledger} ORDER BY seq`,
    );
    return rows.map((r) => ({ id: r.id, key: r.key, committedAt: Math.floor(Number(r.at)) }));
  },
  query: async (pool, sql, params) => mysqlRows(await pool.query(sql, params)),
  async connect(pool) {
    const conn = await pool.getConnection();
    return {
      query: async (sql, params) => mysqlRows(await conn.query(sql, params)),
      async commitEvents(o, events, holdMs = 0) {
        await conn.beginTransaction();
        try {
          const ids = await o.outbox.add(fromMysql2(conn), events);
          const rows = events.map((e, i) => [ids[i], `${e.aggregateType}:${e.aggregateId}`]);
          await conn.query(`INSERT INTO ${o.ledger} (event_id, \`key\`) VALUES ?`, [rows]);
          if (holdMs > 0) await sleep(holdMs);
          await conn.commit();
          return ids;
        } catch (error) {
          await conn.rollback().catch(() => undefined);
          throw error;
        }
      },
      release: (broken) => (broken ? conn.destroy() : conn.release()),
    };
  },
  isDeadlock: (error) => (error as { code?: string }).code === 'ER_LOCK_DEADLOCK',
};

/** Every database the harness runs on, PostgreSQL first. */
export const FLEET_DATABASES: readonly FleetDatabase[] = [postgresFleet, mariadbFleet];

/** `db`, or PostgreSQL for a caller that names none (the harness ran on PostgreSQL only at first). */
export function databaseOr<Pool>(db: FleetDatabase<Pool> | undefined): FleetDatabase<Pool> {
  return db ?? (postgresFleet as FleetDatabase as FleetDatabase<Pool>);
}

function mysqlRows(result: [unknown, unknown]): Row[] {
  return Array.isArray(result[0]) ? (result[0] as Row[]) : [];
}
