/**
 * The run's tables in its own schema: ours (through the store's own migration), the
 * reference's, and a business table for the write-overhead scenario; and the helpers that put
 * them back to the same state before each timed phase.
 */
import type pg from 'pg';
import { fromPg } from '../src/executors/pg.js';
import { type OutboxEvent, uuidv7 } from '../src/index.js';
import { postgresStore } from '../src/stores/postgres.js';
import type { LedgerEntry } from '../src/testing/index.js';
import type { BenchEnv } from './env.js';
import {
  REFERENCE_SILENT_TABLE,
  REFERENCE_TABLE,
  referenceBatchInsertSql,
  referenceSchemaSql,
} from './reference-relay.js';
import type { OursSetup } from './targets.js';
import { EVENT_TYPE, type Workload } from './workload.js';

export const OURS_TABLE = 'outbox';
export const BUSINESS_TABLE = 'orders';
const PRELOAD_CHUNK = 1_000;

export async function createTables(env: BenchEnv): Promise<void> {
  const store = postgresStore({ url: env.pgUrl, schema: env.schema });
  try {
    await store.migrate();
  } finally {
    await store.close();
  }
  await env.admin.query(referenceSchemaSql(env.schema));
  await env.admin.query(referenceSchemaSql(env.schema, REFERENCE_SILENT_TABLE, false));
  await env.admin.query(`CREATE TABLE "${env.schema}"."${BUSINESS_TABLE}" (
    id uuid PRIMARY KEY, customer_id text NOT NULL, total numeric(12, 2) NOT NULL,
    details jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
}

const DATA_TABLES = [OURS_TABLE, REFERENCE_TABLE, REFERENCE_SILENT_TABLE, BUSINESS_TABLE];

/**
 * Empties every data table (the lease rows stay: released leases are free for the next relay),
 * and forgets relays that did not deregister (a killed child), so the next run's fair share
 * counts only its own relays.
 */
export async function resetTables(env: BenchEnv): Promise<void> {
  const s = `"${env.schema}"`;
  await env.admin.query(`TRUNCATE ${DATA_TABLES.map((t) => `${s}."${t}"`).join(', ')}`);
  await env.admin.query(`DELETE FROM ${s}."${OURS_TABLE}_relays"`);
  await env.admin.query(`UPDATE ${s}."${OURS_TABLE}_leases" SET expires_at = '-infinity'`);
}

/**
 * Same starting line for every timed phase: fresh statistics, no dead tuples, and a checkpoint
 * so that one does not land in the middle of a measurement.
 */
export async function quiesce(env: BenchEnv): Promise<void> {
  const s = `"${env.schema}"`;
  for (const t of DATA_TABLES) await env.admin.query(`VACUUM ANALYZE ${s}."${t}"`);
  await env.admin.query('CHECKPOINT');
}

export async function countRows(env: BenchEnv, table: string): Promise<number> {
  const { rows } = await env.admin.query(`SELECT count(*)::int AS n FROM "${env.schema}"."${table}"`);
  return Number(rows[0]?.n ?? 0);
}

/** Writes `count` events with `outbox.add` (arrays of 1,000 per transaction). */
export async function preloadOurs(env: BenchEnv, ours: OursSetup, w: Workload, count: number): Promise<void> {
  await inChunks(env, count, async (client, from, to) => {
    const events: OutboxEvent[] = [];
    for (let i = from; i < to; i++) events.push(w.event(i));
    await ours.outbox.add(fromPg(client), events);
  });
}

/** Writes the same events into the reference's table, one multi-row INSERT per 1,000. */
export async function preloadReference(
  env: BenchEnv,
  w: Workload,
  count: number,
  destination: string,
): Promise<void> {
  const sql = referenceBatchInsertSql(env.schema);
  await inChunks(env, count, async (client, from, to) => {
    const columns: string[][] = [[], [], [], []];
    for (let i = from; i < to; i++) {
      const e = w.event(i);
      columns[0]!.push(`${e.aggregateType}:${e.aggregateId}`);
      columns[1]!.push(e.type);
      columns[2]!.push(`${destination}.${EVENT_TYPE}`);
      columns[3]!.push(JSON.stringify(e.payload));
    }
    await client.query(sql, columns);
  });
}

/** Moves a table's rows aside (to land them later in one statement, with relays running). */
export async function stash(env: BenchEnv, table: string): Promise<void> {
  const s = `"${env.schema}"`;
  await env.admin.query(`DROP TABLE IF EXISTS ${s}."${table}_stash"`);
  await env.admin.query(`CREATE TABLE ${s}."${table}_stash" AS SELECT * FROM ${s}."${table}"`);
  await env.admin.query(`TRUNCATE ${s}."${table}"`);
}

/**
 * Puts the stashed rows back in one INSERT (one commit: the relays see the whole backlog at
 * once), in `order` (our seq: order and ids stay the ledger's; the reference's rows get new ids).
 * With `analyze`, the table is analysed in the same transaction: its statistics change when the
 * rows appear, and no claim can run on plans made for the empty table (see the burst scenario).
 */
export async function landStash(
  env: BenchEnv,
  table: string,
  order: string,
  options: { analyze: boolean },
): Promise<void> {
  const s = `"${env.schema}"`;
  const columns = (await writableColumns(env, table)).map((c) => `"${c}"`).join(', ');
  const client = await env.admin.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO ${s}."${table}" (${columns}) SELECT ${columns} FROM ${s}."${table}_stash" ORDER BY ${order}`,
    );
    if (options.analyze) await client.query(`ANALYZE ${s}."${table}"`);
    await client.query(`DROP TABLE ${s}."${table}_stash"`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** Partitions held (unexpired) per relay owner. */
export async function leaseOwners(env: BenchEnv): Promise<number[]> {
  const { rows } = await env.admin.query(
    `SELECT count(*)::int AS n FROM "${env.schema}"."${OURS_TABLE}_leases"
      WHERE owner <> '' AND expires_at > now() GROUP BY owner ORDER BY 1 DESC`,
  );
  return rows.map((r) => Number(r.n));
}

/** Our pending events in commit order (seq: one writer preloads, so seq order is commit order). */
export async function ledgerOf(env: BenchEnv): Promise<LedgerEntry[]> {
  const { rows } = await env.admin.query(
    `SELECT id::text AS id, key FROM "${env.schema}"."${OURS_TABLE}" ORDER BY seq`,
  );
  return rows.map((r) => ({ id: String(r.id), key: String(r.key), committedAt: 0 }));
}

/** The reference's rows in id order, their ids as its target names them (`${idPrefix}${id}`). */
export async function referenceLedgerOf(env: BenchEnv, idPrefix: string): Promise<LedgerEntry[]> {
  const { rows } = await env.admin.query(
    `SELECT id::text AS id, key FROM "${env.schema}"."${REFERENCE_TABLE}" ORDER BY id`,
  );
  return rows.map((r) => ({ id: `${idPrefix}${String(r.id)}`, key: String(r.key), committedAt: 0 }));
}

/** Columns a plain INSERT must write: not generated, not identity. */
async function writableColumns(env: BenchEnv, table: string): Promise<string[]> {
  const { rows } = await env.admin.query(
    `SELECT column_name FROM information_schema.columns
      WHERE table_schema = $1 AND table_name = $2 AND is_generated = 'NEVER' AND is_identity = 'NO'
      ORDER BY ordinal_position`,
    [env.schema, table],
  );
  return rows.map((r) => String(r.column_name));
}

/**
 * A big backlog, fast: the first `template` events with `outbox.add` (so every column is what
 * add() writes), then copies of them by `INSERT … SELECT … generate_series` with the table's own
 * column layout, in seq order. A copy's id is the template id with its first 8 hex digits
 * replaced by the copy number (unique, still a UUID). `onProgress` gets the rows written so far.
 */
export async function bulkPreloadOurs(
  env: BenchEnv,
  ours: OursSetup,
  w: Workload,
  count: number,
  onProgress: (rows: number) => void = () => {},
): Promise<void> {
  const template = Math.min(count, PRELOAD_CHUNK);
  await preloadOurs(env, ours, w, template);
  const t = `"${env.schema}"."${OURS_TABLE}"`;
  const columns = (await writableColumns(env, OURS_TABLE)).filter((c) => c !== 'id').map((c) => `"${c}"`);
  const select = columns.map((c) => `t.${c}`).join(', ');
  const sql = `INSERT INTO ${t} (id, ${columns.join(', ')})
    SELECT (lpad(to_hex(g), 8, '0') || substr(t.id::text, 9))::uuid, ${select}
    FROM (SELECT * FROM ${t} ORDER BY seq LIMIT $1) t CROSS JOIN generate_series($2::int, $3::int) g
    ORDER BY g, t.seq LIMIT $4`;
  await copies(count, template, onProgress, (from, to, rows) =>
    env.admin.query(sql, [template, from, to, rows]),
  );
}

/** The same for the reference's table (its template written like preloadReference). */
export async function bulkPreloadReference(
  env: BenchEnv,
  w: Workload,
  count: number,
  destination: string,
  onProgress: (rows: number) => void = () => {},
): Promise<void> {
  const template = Math.min(count, PRELOAD_CHUNK);
  await preloadReference(env, w, template, destination);
  const t = `"${env.schema}"."${REFERENCE_TABLE}"`;
  const sql = `INSERT INTO ${t} (key, type, destination, payload)
    SELECT t.key, t.type, t.destination, t.payload
    FROM (SELECT * FROM ${t} ORDER BY id LIMIT $1) t CROSS JOIN generate_series($2::int, $3::int) g
    ORDER BY g, t.id LIMIT $4`;
  await copies(count, template, onProgress, (from, to, rows) =>
    env.admin.query(sql, [template, from, to, rows]),
  );
}

/** Copies 1, 2, … of a `template`-row template until `count` rows, ~100,000 rows per statement. */
async function copies(
  count: number,
  template: number,
  onProgress: (rows: number) => void,
  insert: (fromCopy: number, toCopy: number, rows: number) => Promise<unknown>,
): Promise<void> {
  const perStatement = Math.max(1, Math.floor(100_000 / template));
  let written = template;
  for (let copy = 1; written < count; copy += perStatement) {
    const rows = Math.min(count - written, perStatement * template);
    await insert(copy, copy + perStatement - 1, rows);
    written += rows;
    onProgress(written);
  }
}

async function inChunks(
  env: BenchEnv,
  count: number,
  write: (client: pg.PoolClient, from: number, to: number) => Promise<void>,
): Promise<void> {
  const client = await env.admin.connect();
  try {
    for (let from = 0; from < count; from += PRELOAD_CHUNK) {
      await client.query('BEGIN');
      await write(client, from, Math.min(count, from + PRELOAD_CHUNK));
      await client.query('COMMIT');
    }
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** A business row for the write-overhead scenario. */
export function businessRow(n: number): unknown[] {
  return [uuidv7(), `cust-${n % 5_000}`, ((n * 37) % 50_000) / 100, JSON.stringify({ channel: 'web', n })];
}

export function businessInsertSql(env: BenchEnv): string {
  return `INSERT INTO "${env.schema}"."${BUSINESS_TABLE}" (id, customer_id, total, details) VALUES ($1, $2, $3, $4)`;
}
