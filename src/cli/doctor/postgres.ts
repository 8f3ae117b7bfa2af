/**
 * `outbox doctor` on PostgreSQL: indexes against what the migrations create, autovacuum, dead
 * rows, transactions old enough to hold back their cleanup, stale leases and clock skew. Reads the
 * catalog and the statistics views only; changes nothing.
 */
import type { DatabaseConfig } from '../../core/config.js';
import { OutboxError } from '../../core/errors.js';
import { type PgPoolLike, postgresStore } from '../../stores/postgres.js';
import {
  DEFAULT_PARTITIONS,
  POSTGRES_MIGRATIONS,
  POSTGRES_SCHEMA_VERSION,
} from '../../stores/postgres-migrations.js';
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

/** Dead rows that make the table worth a look, when they also outnumber the live ones. */
export const DEAD_ROWS_WARN = 10_000;

const q = (name: string) => `"${name}"`;

/** The indexes the migrations leave, in order (a later migration may drop and recreate one). */
export function postgresIndexes(schema: string, table: string): ExpectedIndex[] {
  const indexes = new Map<string, ExpectedIndex>();
  for (const migration of POSTGRES_MIGRATIONS) {
    const sql = migration.sql(schema, table, { partitions: DEFAULT_PARTITIONS });
    for (const m of sql.matchAll(/DROP INDEX [^;]*?"([^"]+)";|(CREATE INDEX "([^"]+)" ON ([^;]+));/g)) {
      if (m[1]) indexes.delete(m[1]);
      else {
        // CONCURRENTLY: recreating it on a live table must not block add() and the relay.
        const create = oneLine(m[2]!).replace('CREATE INDEX', 'CREATE INDEX CONCURRENTLY');
        indexes.set(m[3]!, { table, name: m[3]!, create });
      }
    }
  }
  return [...indexes.values()];
}

export async function postgresChecks(database: DatabaseConfig, options: DoctorOptions): Promise<Check[]> {
  const pg = await import('pg').catch((cause: unknown) => {
    throw new OutboxError('DRIVER_MISSING', 'outbox doctor needs the "pg" package: npm install pg', {
      cause,
    });
  });
  const Pool = pg.Pool ?? pg.default.Pool;
  const pool = new Pool({ connectionString: database.url, max: 2, connectionTimeoutMillis: 10_000 });
  pool.on('error', () => {});
  const schema = database.schema ?? 'public';
  const table = database.table ?? 'outbox';
  try {
    try {
      await pool.query('SELECT 1');
    } catch (error) {
      return [connectionFailed(error)];
    }
    const store = postgresStore({ pool: pool as unknown as PgPoolLike, schema, table });
    const query = async (sql: string, params: unknown[] = []) => (await pool.query(sql, params)).rows;
    const { check, tables } = await schemaCheck(() => store.checkSchema(), POSTGRES_SCHEMA_VERSION);
    const checks = [check];
    const t = `${q(schema)}.${q(table)}`;
    if (check.status === 'ok')
      checks.push(...(await attempt('indexes', () => indexes(query, schema, table))));
    if (tables) {
      checks.push(...(await attempt('autovacuum', () => autovacuum(query, t))));
      checks.push(...(await attempt('dead-rows', () => deadRows(query, t))));
      checks.push(
        ...(await attempt('leases', async () => {
          const [rows, stats] = await Promise.all([leaseRows(query, schema, table), store.stats()]);
          return leaseCheck(rows, stats);
        })),
      );
    }
    checks.push(...(await attempt('long-transactions', () => longTransactions(query, options))));
    checks.push(
      ...(await attempt('clock-skew', () =>
        clockSkewCheck(async () =>
          Number((await query('SELECT extract(epoch FROM clock_timestamp()) * 1000 AS ms'))[0]?.ms),
        ),
      )),
    );
    return checks;
  } finally {
    await pool.end();
  }
}

type Query = (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

async function indexes(query: Query, schema: string, table: string): Promise<Check> {
  const expected = postgresIndexes(schema, table);
  const rows = await query(
    `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1`,
    [schema],
  );
  const present = new Set(rows.map((r) => String(r.name)));
  const wanted = new Set(expected.map((i) => i.name));
  const invalid = rows
    .filter((r) => r.valid === false && wanted.has(String(r.name)))
    .map((r) => String(r.name));
  // The primary keys: the settle finds events by id, the heartbeat leases by partition.
  const keys = await query(
    `SELECT t.relname AS name FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = $1 AND i.indisprimary`,
    [schema],
  );
  const withKey = new Set(keys.map((r) => String(r.name)));
  const keyColumns: [string, string][] = [
    [table, 'id'],
    [`${table}_leases`, '"partition"'],
    [`${table}_relays`, 'owner'],
  ];
  const primary = keyColumns.map(([name, column]) => ({
    table: name,
    name: `${name}_pkey`,
    create: `ALTER TABLE ${q(schema)}.${q(name)} ADD PRIMARY KEY (${column})`,
  }));
  for (const p of primary) if (withKey.has(p.table)) present.add(p.name);
  return indexCheck([...primary, ...expected], present, invalid);
}

async function autovacuum(query: Query, t: string): Promise<Check> {
  const [row] = await query(
    `SELECT current_setting('autovacuum') AS server, c.reloptions::text AS options
      FROM pg_class c WHERE c.oid = $1::regclass`,
    [t],
  );
  const serverOff = row?.server !== 'on';
  const tableOff = /autovacuum_enabled=(false|off|no|0)\b/i.test(String(row?.options ?? ''));
  if (!serverOff && !tableOff) return ok('autovacuum', 'autovacuum is on for the outbox table');
  return {
    id: 'autovacuum',
    status: 'warn',
    summary: `autovacuum is off ${serverOff ? 'for the whole server' : `for ${t}`}: every published event leaves a dead row that is never cleaned up, and the table and its indexes grow until claims slow down`,
    fix: serverOff
      ? `ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();`
      : `ALTER TABLE ${t} RESET (autovacuum_enabled);`,
    details: { server: row?.server, tableOptions: row?.options ?? null },
  };
}

async function deadRows(query: Query, t: string): Promise<Check> {
  const [row] = await query(
    `SELECT n_live_tup AS live, n_dead_tup AS dead, greatest(last_autovacuum, last_vacuum) AS vacuumed,
        pg_total_relation_size(relid) AS bytes
      FROM pg_stat_user_tables WHERE relid = $1::regclass`,
    [t],
  );
  const live = Number(row?.live ?? 0);
  const dead = Number(row?.dead ?? 0);
  const vacuumed = row?.vacuumed instanceof Date ? row.vacuumed : null;
  const details = { live, dead, lastVacuum: vacuumed?.toISOString() ?? null, bytes: Number(row?.bytes ?? 0) };
  const when = vacuumed ? `${formatAge(Date.now() - vacuumed.getTime())} ago` : 'never';
  if (dead < DEAD_ROWS_WARN || dead <= live) {
    return ok('dead-rows', `${dead} dead rows, ${live} live; last vacuum ${when}`, details);
  }
  return {
    id: 'dead-rows',
    status: 'warn',
    summary: `${dead} dead rows against ${live} live (last vacuum ${when}): the table is bloated and claims read past dead index entries`,
    fix: `VACUUM (ANALYZE) ${t}; then see why autovacuum falls behind: the autovacuum and long-transactions checks, or lower autovacuum_vacuum_scale_factor on this table`,
    details,
  };
}

async function longTransactions(query: Query, options: DoctorOptions): Promise<Check> {
  const rows = await query(
    `SELECT pid, usename AS "user", application_name AS app, state,
        floor(extract(epoch FROM now() - xact_start) * 1000) AS age_ms,
        backend_xmin IS NOT NULL OR backend_xid IS NOT NULL AS holds
      FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND xact_start < now() - $1::float8 * interval '1 millisecond'
      UNION ALL
      SELECT NULL, owner, gid, 'prepared', floor(extract(epoch FROM now() - prepared) * 1000), true
      FROM pg_prepared_xacts
      WHERE database = current_database() AND prepared < now() - $1::float8 * interval '1 millisecond'
      ORDER BY 5 DESC`,
    [options.longTransactionMs],
  );
  const limit = formatAge(options.longTransactionMs);
  if (rows.length === 0) return ok('long-transactions', `no transaction open longer than ${limit}`);
  const list = rows.map((r) => ({
    pid: r.pid === null ? null : Number(r.pid),
    user: r.user,
    application: r.app,
    state: r.state,
    ageMs: Number(r.age_ms),
    holdsBackCleanup: r.holds === true,
  }));
  const oldest = list[0]!;
  const holding = list.some((r) => r.holdsBackCleanup);
  return {
    id: 'long-transactions',
    status: 'warn',
    summary: `${list.length} transaction(s) open longer than ${limit}, the oldest ${formatAge(oldest.ageMs)} (${oldest.pid === null ? `prepared ${oldest.application}` : `pid ${oldest.pid}, ${oldest.state}`})${holding ? ': dead rows newer than its snapshot cannot be vacuumed' : ''}`,
    fix:
      oldest.pid === null
        ? `COMMIT PREPARED or ROLLBACK PREPARED '${oldest.application}'`
        : `end it: SELECT pg_terminate_backend(${oldest.pid}); prevent it: ALTER ROLE … SET idle_in_transaction_session_timeout = '5min'`,
    details: { transactions: list },
  };
}

async function leaseRows(query: Query, schema: string, table: string) {
  const leases = `${q(schema)}.${q(`${table}_leases`)}`;
  const relays = `${q(schema)}.${q(`${table}_relays`)}`;
  const stale = await query(
    `SELECT owner, array_agg("partition" ORDER BY "partition") AS partitions,
        floor(extract(epoch FROM now() - max(expires_at)) * 1000) AS expired_ms
      FROM ${leases} WHERE owner <> '' AND expires_at > '-infinity' AND expires_at <= now()
      GROUP BY owner ORDER BY owner`,
  );
  const [counts] = await query(
    `SELECT (SELECT count(*) FROM ${relays} WHERE expires_at > now()) AS live,
        (SELECT count(*) FILTER (WHERE expires_at > now()) FROM ${leases}) AS held,
        (SELECT count(*) FROM ${leases}) AS partitions`,
  );
  return {
    stale: stale.map((r) => ({
      owner: String(r.owner),
      partitions: (r.partitions as number[]).map(Number),
      expiredMs: Number(r.expired_ms),
    })),
    liveRelays: Number(counts?.live ?? 0),
    heldPartitions: Number(counts?.held ?? 0),
    partitions: Number(counts?.partitions ?? 0),
  };
}
