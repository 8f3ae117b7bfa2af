/**
 * The run's tables in its own schema: ours (through the store's own migration), the
 * reference's, and a business table for the write-overhead scenario; and the helpers that put
 * them back to the same state before each timed phase.
 */
import type pg from 'pg';
import { fromPg } from '../src/executors/pg.js';
import { type OutboxEvent, uuidv7 } from '../src/index.js';
import { postgresStore } from '../src/stores/postgres.js';
import type { BenchEnv } from './env.js';
import { REFERENCE_TABLE, referenceBatchInsertSql, referenceSchemaSql } from './reference-relay.js';
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
  await env.admin.query(`CREATE TABLE "${env.schema}"."${BUSINESS_TABLE}" (
    id uuid PRIMARY KEY, customer_id text NOT NULL, total numeric(12, 2) NOT NULL,
    details jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
}

/** Empties every table (the lease row stays: a released lease is free for the next relay). */
export async function resetTables(env: BenchEnv): Promise<void> {
  const s = `"${env.schema}"`;
  await env.admin.query(`TRUNCATE ${s}."${OURS_TABLE}", ${s}."${REFERENCE_TABLE}", ${s}."${BUSINESS_TABLE}"`);
}

/**
 * Same starting line for every timed phase: fresh statistics, no dead tuples, and a checkpoint
 * so that one does not land in the middle of a measurement.
 */
export async function quiesce(env: BenchEnv): Promise<void> {
  const s = `"${env.schema}"`;
  for (const t of [OURS_TABLE, REFERENCE_TABLE, BUSINESS_TABLE])
    await env.admin.query(`VACUUM ANALYZE ${s}."${t}"`);
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
