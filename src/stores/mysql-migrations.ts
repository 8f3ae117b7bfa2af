/**
 * Numbered migrations of the MySQL/MariaDB store, and the code that applies and checks them.
 * Append only: a released migration is never edited. MySQL commits every DDL statement on its
 * own, so a migration cannot run in one transaction: its statements are each idempotent
 * (`IF NOT EXISTS`, `INSERT IGNORE`), and a migration cut short by a crash completes when run
 * again. Concurrent migrators queue on a named lock (GET_LOCK) instead.
 *
 * SQL kept to what MySQL 8.0 and MariaDB 10.6+ both accept; only MariaDB 10.11 is tested here.
 */
import { createHash } from 'node:crypto';
import { OutboxError } from '../core/errors.js';
import type { MigrationResult } from '../core/ports.js';
import { assertPartitionCount } from './common.js';

/** Runs one statement and returns its rows (a mysql2 connection wrapped by the store). */
export type MysqlRun = (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

/** Partitions of a new outbox table unless `partitions` says otherwise. */
export const DEFAULT_PARTITIONS = 64;

/**
 * Rows of `<table>_locks`: `add()` locks row `key_hash mod KEY_LOCK_SLOTS` of each of its keys.
 * Keys sharing a slot only wait for each other's commits; 65,536 slots make that rare.
 */
export const KEY_LOCK_SLOTS = 65_536;

/** The validated, backquoted names of one outbox's tables. */
export interface MysqlTables {
  /** `schema`.`table` (or just `table`: the connection's database). */
  readonly outbox: string;
  readonly leases: string;
  readonly relays: string;
  readonly locks: string;
  readonly migrations: string;
  /** For messages and the migration lock: `schema.table`, or `table`. */
  readonly label: string;
}

export interface MysqlMigration {
  readonly version: number;
  readonly name: string;
  statements(tables: MysqlTables, settings: { readonly partitions: number }): string[];
}

/** utf8mb4 for every text column; `_bin` so that keys, ids and destinations compare exactly. */
const TABLE_OPTIONS = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin';

/** The numbers 0 … 16^digits − 1 as a derived table (no recursive CTE: MySQL caps its depth at 1000). */
function numbers(digits: number): string {
  const hex = `(${Array.from({ length: 16 }, (_, i) => `SELECT ${i} AS d`).join(' UNION ALL ')})`;
  const from = Array.from({ length: digits }, (_, i) => `${hex} AS d${i}`).join(' CROSS JOIN ');
  const value = Array.from({ length: digits }, (_, i) => `d${i}.d * ${16 ** i}`).join(' + ');
  return `SELECT ${value} AS n FROM ${from}`;
}

export const MYSQL_MIGRATIONS: readonly MysqlMigration[] = [
  {
    version: 1,
    name: 'create outbox, leases, relays, key locks',
    statements: (t, { partitions }) => [
      // seq is AUTO_INCREMENT, handed out by the INSERT after it took its keys' lock rows, so
      // that per key seq order is commit order (mysql.ts says how).
      // The partition is derived from the stored key hash, so add() never needs to know P.
      // held_hash is the key hash of the rows that can hold their key back (retrying, delayed,
      // parked) and NULL for every other row: MySQL has no partial index, but the NULL entries of
      // (held_hash, seq) are appended in seq order, which costs an insert little, and the claim
      // finds a key's blockers in one probe.
      `CREATE TABLE IF NOT EXISTS ${t.outbox} (
        seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
        id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        \`key\` TEXT NOT NULL,
        key_hash INT UNSIGNED NOT NULL,
        type VARCHAR(255) NOT NULL,
        aggregate_type TEXT NULL,
        aggregate_id TEXT NULL,
        destination TEXT NOT NULL,
        payload LONGTEXT NOT NULL,
        headers LONGTEXT NOT NULL,
        status VARCHAR(9) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'pending',
        attempts INT NOT NULL DEFAULT 0,
        last_error TEXT NULL,
        history LONGTEXT NOT NULL,
        created_at BIGINT NOT NULL,
        available_at BIGINT NOT NULL,
        published_at BIGINT NULL,
        parked BOOLEAN NOT NULL DEFAULT FALSE,
        \`partition\` INT AS (key_hash % ${partitions}) STORED,
        held_hash INT UNSIGNED AS (CASE WHEN (status = 'pending' AND (attempts > 0 OR available_at > created_at))
          OR parked THEN key_hash END) STORED,
        PRIMARY KEY (seq),
        UNIQUE KEY id_idx (id),
        KEY pend_idx (status, \`partition\`, seq),
        KEY held_idx (held_hash, seq),
        CHECK (status IN ('pending', 'published', 'dead')),
        CHECK (JSON_VALID(payload))
      ) ${TABLE_OPTIONS}`,
      // expires_at NULL: released or never owned, free for anyone at once.
      `CREATE TABLE IF NOT EXISTS ${t.leases} (
        \`partition\` INT NOT NULL PRIMARY KEY,
        owner VARCHAR(255) NOT NULL,
        epoch BIGINT NOT NULL,
        expires_at BIGINT NULL
      ) ${TABLE_OPTIONS}`,
      `INSERT IGNORE INTO ${t.leases} (\`partition\`, owner, epoch, expires_at)
        SELECT n, '', 0, NULL FROM (${numbers(3)}) AS p WHERE n < ${partitions}`,
      `CREATE TABLE IF NOT EXISTS ${t.relays} (
        owner VARCHAR(255) NOT NULL PRIMARY KEY,
        expires_at BIGINT NOT NULL
      ) ${TABLE_OPTIONS}`,
      `CREATE TABLE IF NOT EXISTS ${t.locks} (slot INT UNSIGNED NOT NULL PRIMARY KEY) ${TABLE_OPTIONS}`,
      `INSERT IGNORE INTO ${t.locks} (slot) ${numbers(4)}`,
    ],
  },
];

/** The newest schema version this code knows. */
export const MYSQL_SCHEMA_VERSION = MYSQL_MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);

/** How long a migrator waits for another one to finish (seconds). */
const MIGRATION_LOCK_WAIT_S = 120;

/**
 * Applies the missing migrations in order on one connection, under a named lock keyed by the
 * table, so concurrent migrators run one after another and the later ones find nothing to do.
 * `createSchema`: the database to create first when it does not exist (the `schema` option).
 */
export async function migrateMysql(
  run: MysqlRun,
  tables: MysqlTables,
  requestedPartitions: number | undefined,
  createSchema?: string,
): Promise<MigrationResult> {
  const lock = lockName(tables.label);
  const [locked] = await run('SELECT GET_LOCK(?, ?) AS ok', [lock, MIGRATION_LOCK_WAIT_S]);
  if (Number(locked?.ok) !== 1) {
    throw new OutboxError(
      'SCHEMA_OUTDATED',
      `could not take the migration lock of ${tables.label} within ${MIGRATION_LOCK_WAIT_S} s: another migration is still running`,
    );
  }
  try {
    if (createSchema !== undefined) {
      await run(
        `CREATE DATABASE IF NOT EXISTS \`${createSchema}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
      );
    }
    await run(`CREATE TABLE IF NOT EXISTS ${tables.migrations}
      (version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL) ${TABLE_OPTIONS}`);
    const done = await appliedVersions(run, tables);
    const from = Math.max(0, ...done);
    if (from > MYSQL_SCHEMA_VERSION) throw schemaError(tables, from);
    const settings = { partitions: requestedPartitions ?? DEFAULT_PARTITIONS };
    const applied: string[] = [];
    for (const migration of MYSQL_MIGRATIONS) {
      if (done.includes(migration.version)) continue;
      for (const statement of migration.statements(tables, settings)) await run(statement);
      await run(`INSERT INTO ${tables.migrations} (version, name, applied_at) VALUES (?, ?, ?)`, [
        migration.version,
        migration.name,
        Date.now(),
      ]);
      applied.push(`${migration.version} ${migration.name}`);
    }
    const [count] = await run(`SELECT count(*) AS n FROM ${tables.leases}`);
    assertPartitionCount(tables.label, Number(count?.n), requestedPartitions);
    return { from, to: MYSQL_SCHEMA_VERSION, applied };
  } finally {
    await run('SELECT RELEASE_LOCK(?)', [lock]);
  }
}

/** Throws SCHEMA_OUTDATED when a table or a migration is missing, SCHEMA_TOO_NEW when the database is ahead. */
export async function checkMysqlSchema(
  run: MysqlRun,
  tables: MysqlTables,
  schema: string | undefined,
  table: string,
): Promise<void> {
  const [found] = await run(
    `SELECT count(*) AS n FROM information_schema.TABLES
      WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME IN (?, ?)`,
    [schema ?? null, table, `${table}_migrations`],
  );
  const done = Number(found?.n) === 2 ? await appliedVersions(run, tables) : [];
  const current = Math.max(0, ...done);
  if (current > MYSQL_SCHEMA_VERSION || MYSQL_MIGRATIONS.some((m) => !done.includes(m.version))) {
    throw schemaError(tables, current);
  }
}

async function appliedVersions(run: MysqlRun, tables: MysqlTables): Promise<number[]> {
  return (await run(`SELECT version FROM ${tables.migrations}`)).map((r) => Number(r.version));
}

function schemaError(tables: MysqlTables, current: number): OutboxError {
  const tooNew = current > MYSQL_SCHEMA_VERSION;
  const hint = tooNew
    ? `newer than this code knows (${MYSQL_SCHEMA_VERSION}): upgrade outbox`
    : `this code needs ${MYSQL_SCHEMA_VERSION}: run outbox migrate`;
  return new OutboxError(
    tooNew ? 'SCHEMA_TOO_NEW' : 'SCHEMA_OUTDATED',
    `outbox table ${tables.label} is at schema version ${current}, ${hint}`,
    { details: { current, expected: MYSQL_SCHEMA_VERSION } },
  );
}

/** A named lock per outbox table; GET_LOCK names are at most 64 characters. */
function lockName(label: string): string {
  return `outbox:${createHash('sha256').update(label).digest('hex').slice(0, 40)}`;
}
