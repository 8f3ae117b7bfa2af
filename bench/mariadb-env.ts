/**
 * The MariaDB side of the benchmark: one database per run (`outbox_bench_<tag>`, utf8mb4_bin)
 * with our tables (the store's own migration), the MariaDB reference relay's table and a business
 * table, created when a MariaDB scenario first needs it and dropped at the end, even on Ctrl-C.
 * Nothing else on the server is touched.
 */
import mysql from 'mysql2/promise';
import { mysqlStore } from '../src/stores/mysql.js';
import { onCleanup } from './env.js';

export const MARIADB_URL = process.env.OUTBOX_BENCH_MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/test';

export const MARIADB_OURS_TABLE = 'outbox';
export const MARIADB_REFERENCE_TABLE = 'ref_outbox';
export const MARIADB_BUSINESS_TABLE = 'orders';

export interface MariadbEnv {
  /** MARIADB_URL naming the run's database. */
  readonly url: string;
  readonly database: string;
  /** A small pool on the run's database for setup, resets and checks (never a relay's). */
  readonly admin: mysql.Pool;
  /** `SELECT VERSION()`. */
  readonly version: string;
  /** Empties every data table and frees the leases (as tables.ts resetTables does on PostgreSQL). */
  reset(): Promise<void>;
  /** Fresh index statistics for every data table. */
  analyze(): Promise<void>;
  count(table: string): Promise<number>;
  /** Drops the database and ends the pool. Idempotent. */
  close(): Promise<void>;
}

const TABLE_OPTIONS = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin';

export async function openMariadb(tag: string): Promise<MariadbEnv> {
  const database = `outbox_bench_${tag}`;
  const server = mysql.createPool({ uri: MARIADB_URL, connectionLimit: 1 });
  const url = new URL(MARIADB_URL);
  url.pathname = `/${database}`;
  let admin: mysql.Pool | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unhook();
    await admin?.end().catch(() => {});
    await server.query(`DROP DATABASE IF EXISTS \`${database}\``).catch((e: unknown) => {
      process.stderr.write(`warning: drop database ${database} failed: ${String(e)}\n`);
    });
    await server.end().catch(() => {});
  };
  const unhook = onCleanup(close);
  try {
    const [[row]] = (await server.query('SELECT VERSION() AS v')) as unknown as [{ v: string }[]];
    await server.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
    admin = mysql.createPool({ uri: url.href, connectionLimit: 3 });
    const store = mysqlStore({ url: url.href, poolSize: 1 });
    try {
      await store.migrate();
    } finally {
      await store.close();
    }
    await admin.query(`CREATE TABLE ${MARIADB_REFERENCE_TABLE} (
      id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \`key\` VARCHAR(255) NOT NULL,
      type VARCHAR(255) NOT NULL, destination VARCHAR(255) NOT NULL, payload LONGTEXT NOT NULL,
      created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ${TABLE_OPTIONS}`);
    await admin.query(`CREATE TABLE ${MARIADB_BUSINESS_TABLE} (
      id CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY, customer_id VARCHAR(64) NOT NULL,
      total DECIMAL(12, 2) NOT NULL, details JSON NOT NULL,
      created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ${TABLE_OPTIONS}`);
    const pool = admin;
    const tables = [MARIADB_OURS_TABLE, MARIADB_REFERENCE_TABLE, MARIADB_BUSINESS_TABLE];
    return {
      url: url.href,
      database,
      admin: pool,
      version: String(row?.v ?? 'unknown').split('-')[0]!,
      async reset() {
        for (const t of tables) await pool.query(`TRUNCATE TABLE ${t}`);
        await pool.query(`DELETE FROM ${MARIADB_OURS_TABLE}_relays`);
        await pool.query(`UPDATE ${MARIADB_OURS_TABLE}_leases SET expires_at = NULL`);
      },
      async analyze() {
        await pool.query(`ANALYZE TABLE ${tables.join(', ')}`);
      },
      async count(table) {
        const [rows] = await pool.query(`SELECT count(*) AS n FROM ${table}`);
        return Number((rows as { n: number }[])[0]?.n ?? 0);
      },
      close,
    };
  } catch (error) {
    await close();
    throw new Error(`the MariaDB scenarios need MariaDB at ${MARIADB_URL}: ${String(error)}`, {
      cause: error,
    });
  }
}

/** Databases of runs that were killed with SIGKILL: reported, never removed (they may be live). */
export async function mariadbLeftovers(env: MariadbEnv): Promise<string[]> {
  const [rows] = await env.admin.query(
    "SELECT schema_name AS name FROM information_schema.schemata WHERE schema_name LIKE 'outbox\\_bench\\_%' AND schema_name <> ?",
    [env.database],
  );
  return (rows as { name: string }[]).map((r) => `MariaDB database ${r.name}`);
}
