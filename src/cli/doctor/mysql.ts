/**
 * `outbox doctor` on MySQL/MariaDB: indexes against what the migrations create, utf8mb4 on the
 * connection and every text column, transactions old enough to hold back InnoDB's purge, stale
 * leases and clock skew. Reads information_schema only; changes nothing.
 */
import type { DatabaseConfig } from '../../core/config.js';
import { OutboxError } from '../../core/errors.js';
import { type MysqlPoolLike, mysqlStore } from '../../stores/mysql.js';
import {
  checkMysqlSchema,
  DEFAULT_PARTITIONS,
  MYSQL_MIGRATIONS,
  MYSQL_SCHEMA_VERSION,
  type MysqlTables,
} from '../../stores/mysql-migrations.js';
import { formatAge } from '../commands/status.js';
import {
  attempt,
  type Check,
  clockSkewCheck,
  connectionFailed,
  type DoctorOptions,
  type ExpectedIndex,
  indexCheck,
  leaseCheck,
  ok,
  oneLine,
  schemaCheck,
} from './checks.js';

/** The database's clock in epoch ms, as the store computes it (mysql.ts NOW_MS). */
const NOW_MS = "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)";
/** Columns stored as ASCII on purpose (ids and statuses); every other text column is utf8mb4. */
const ASCII_COLUMNS = new Set(['id', 'status']);

type Query = (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

function tables(schema: string, table: string): MysqlTables {
  const q = (name: string) => `\`${schema}\`.\`${name}\``;
  return {
    outbox: q(table),
    leases: q(`${table}_leases`),
    relays: q(`${table}_relays`),
    locks: q(`${table}_locks`),
    migrations: q(`${table}_migrations`),
    label: `${schema}.${table}`,
  };
}

/** The keys the migrations' CREATE TABLE statements declare, named `table.KEY` (PRIMARY for a primary key). */
export function mysqlIndexes(schema: string, table: string): ExpectedIndex[] {
  const out: ExpectedIndex[] = [];
  for (const migration of MYSQL_MIGRATIONS) {
    for (const statement of migration.statements(tables(schema, table), { partitions: DEFAULT_PARTITIONS })) {
      const created = /^CREATE TABLE IF NOT EXISTS ((?:`[^`]+`\.)?`([^`]+)`)/.exec(statement.trim());
      if (!created) continue;
      const [, qualified, name] = created as unknown as [string, string, string];
      const add = (key: string, definition: string) =>
        out.push({
          table: name,
          name: `${name}.${key}`,
          create: `ALTER TABLE ${qualified} ADD ${definition}`,
        });
      for (const line of statement.split('\n').map((l) => l.trim().replace(/,$/, ''))) {
        const key = /^(UNIQUE KEY|KEY) (\w+) (\(.*\))$/.exec(line);
        if (key) add(key[2]!, oneLine(line));
        else if (/^PRIMARY KEY \(/.test(line)) add('PRIMARY', line);
        else {
          const column = /^`?(\w+)`? .* PRIMARY KEY$/.exec(line);
          if (column) add('PRIMARY', `PRIMARY KEY (\`${column[1]}\`)`);
        }
      }
    }
  }
  return out;
}

export async function mysqlChecks(database: DatabaseConfig, options: DoctorOptions): Promise<Check[]> {
  const mysql = await import('mysql2/promise').catch((cause: unknown) => {
    throw new OutboxError('DRIVER_MISSING', 'outbox doctor needs the "mysql2" package: npm install mysql2', {
      cause,
    });
  });
  const pool = mysql.createPool({
    uri: database.url.replace(/^mariadb:/i, 'mysql:'),
    connectionLimit: 2,
    connectTimeout: 10_000,
    supportBigNumbers: true,
  });
  const query: Query = async (sql, params = []) => {
    const [rows] = await pool.query(sql, params);
    return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
  };
  try {
    let current: unknown;
    try {
      current = (await query('SELECT DATABASE() AS db'))[0]?.db;
    } catch (error) {
      return [connectionFailed(error)];
    }
    const schema = database.schema ?? String(current ?? '');
    if (schema === '') {
      return [
        {
          id: 'connection',
          status: 'fail',
          summary: 'the URL names no database',
          fix: 'name one: mysql://user@host:3306/app, or give database.schema',
        },
      ];
    }
    const table = database.table ?? 'outbox';
    const names = tables(schema, table);
    const store = mysqlStore({ pool: pool as unknown as MysqlPoolLike, schema, table });
    const { check, tables: exist } = await schemaCheck(
      () => checkMysqlSchema(query, names, schema, table),
      MYSQL_SCHEMA_VERSION,
    );
    const checks = [check];
    if (check.status === 'ok')
      checks.push(...(await attempt('indexes', () => indexes(query, schema, table))));
    checks.push(...(await attempt('charset', () => charset(query, schema, table, exist))));
    if (exist) {
      checks.push(
        ...(await attempt('leases', async () => {
          const [rows, stats] = await Promise.all([leaseRows(query, names), store.stats()]);
          return leaseCheck(rows, stats);
        })),
      );
    }
    checks.push(...(await attempt('long-transactions', () => longTransactions(query, options))));
    checks.push(
      ...(await attempt('clock-skew', () =>
        clockSkewCheck(async () => Number((await query(`SELECT ${NOW_MS} AS ms`))[0]?.ms)),
      )),
    );
    return checks;
  } finally {
    await pool.end();
  }
}

async function indexes(query: Query, schema: string, table: string): Promise<Check> {
  const expected = mysqlIndexes(schema, table);
  const rows = await query(
    `SELECT DISTINCT TABLE_NAME AS t, INDEX_NAME AS i FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?)`,
    [schema, [...new Set(expected.map((e) => e.table))]],
  );
  return indexCheck(expected, new Set(rows.map((r) => `${r.t}.${r.i}`)));
}

async function charset(query: Query, schema: string, table: string, exist: boolean): Promise<Check> {
  const [session] = await query(
    'SELECT @@character_set_client AS client, @@character_set_connection AS connection, @@character_set_results AS results',
  );
  const wrongSession = Object.entries(session ?? {}).filter(([, v]) => v !== null && v !== 'utf8mb4');
  const columns = exist
    ? await query(
        `SELECT COLUMN_NAME AS name, CHARACTER_SET_NAME AS charset, COLUMN_TYPE AS type, IS_NULLABLE AS nullable
          FROM information_schema.COLUMNS
          WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CHARACTER_SET_NAME IS NOT NULL ORDER BY ORDINAL_POSITION`,
        [schema, table],
      )
    : [];
  const wrongColumns = columns.filter((c) => c.charset !== 'utf8mb4' && !ASCII_COLUMNS.has(String(c.name)));
  if (wrongSession.length === 0 && wrongColumns.length === 0) {
    return ok('charset', 'utf8mb4 on the connection and every text column of the outbox table');
  }
  const problems = [
    ...wrongSession.map(([name, value]) => `character_set_${name} = ${String(value)}`),
    ...wrongColumns.map((c) => `column ${String(c.name)} is ${String(c.charset)}`),
  ];
  const fixes = [
    ...(wrongSession.length > 0
      ? ["remove the charset from the URL (mysql2's default is utf8mb4) or set ?charset=utf8mb4"]
      : []),
    ...wrongColumns.map(
      (c) =>
        `ALTER TABLE \`${schema}\`.\`${table}\` MODIFY \`${String(c.name)}\` ${String(c.type)} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin ${c.nullable === 'YES' ? 'NULL' : 'NOT NULL'}`,
    ),
  ];
  return {
    id: 'charset',
    status: 'fail',
    summary: `not utf8mb4: ${problems.join(', ')}: text beyond the Basic Multilingual Plane (emoji) is refused or garbled`,
    fix: fixes.join('; '),
    details: { session, columns: wrongColumns },
  };
}

async function longTransactions(query: Query, options: DoctorOptions): Promise<Check> {
  const rows = await query(
    `SELECT trx_mysql_thread_id AS id, trx_state AS state,
        TIMESTAMPDIFF(MICROSECOND, trx_started, NOW(6)) DIV 1000 AS age_ms
      FROM information_schema.INNODB_TRX
      WHERE trx_mysql_thread_id <> CONNECTION_ID() AND TIMESTAMPDIFF(MICROSECOND, trx_started, NOW(6)) DIV 1000 > ?
      ORDER BY trx_started`,
    [options.longTransactionMs],
  );
  const limit = formatAge(options.longTransactionMs);
  if (rows.length === 0) return ok('long-transactions', `no transaction open longer than ${limit}`);
  const list = rows.map((r) => ({ thread: Number(r.id), state: r.state, ageMs: Number(r.age_ms) }));
  const oldest = list[0]!;
  return {
    id: 'long-transactions',
    status: 'warn',
    summary: `${list.length} transaction(s) open longer than ${limit}, the oldest ${formatAge(oldest.ageMs)} (thread ${oldest.thread}, ${String(oldest.state)}): InnoDB cannot purge the row versions deleted since it began`,
    fix: `end it: KILL ${oldest.thread}; prevent it: SET GLOBAL idle_transaction_timeout = 300 (MariaDB) or end transactions in the application`,
    details: { transactions: list },
  };
}

async function leaseRows(query: Query, t: MysqlTables) {
  const stale = await query(
    `SELECT owner, GROUP_CONCAT(\`partition\` ORDER BY \`partition\`) AS partitions, ${NOW_MS} - MAX(expires_at) AS expired_ms
      FROM ${t.leases} WHERE owner <> '' AND expires_at IS NOT NULL AND expires_at <= ${NOW_MS}
      GROUP BY owner ORDER BY owner`,
  );
  const [counts] = await query(
    `SELECT (SELECT count(*) FROM ${t.relays} WHERE expires_at > ${NOW_MS}) AS live,
        (SELECT count(*) FROM ${t.leases} WHERE expires_at > ${NOW_MS}) AS held,
        (SELECT count(*) FROM ${t.leases}) AS partitions`,
  );
  return {
    stale: stale.map((r) => ({
      owner: String(r.owner),
      partitions: String(r.partitions).split(',').map(Number),
      expiredMs: Number(r.expired_ms),
    })),
    liveRelays: Number(counts?.live ?? 0),
    heldPartitions: Number(counts?.held ?? 0),
    partitions: Number(counts?.partitions ?? 0),
  };
}
