/**
 * The writers of the MariaDB / SQLite latency rows (and of their PostgreSQL baseline), in a worker
 * thread so that they do not share an event loop with the relay under test: one event per
 * transaction with `outbox.add` at a fixed rate, paced by a shared schedule, through the
 * database's own client (pg clients, mysql2 connections, or SQLite's one better-sqlite3 writer).
 * Returns when each measured event's COMMIT was acknowledged, on `clockMs()`; the relay's
 * in-process handler records the arrivals, and the scenario pairs them (latency.ts pairArrivals).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { fromBetterSqlite3 } from '../src/executors/better-sqlite3.js';
import { fromMysql2 } from '../src/executors/mysql2.js';
import { fromPg } from '../src/executors/pg.js';
import { createOutbox, type Outbox, type OutboxEvent, type Publisher, type Store } from '../src/index.js';
import { mysqlStore } from '../src/stores/mysql.js';
import { postgresStore } from '../src/stores/postgres.js';
import { sqliteStore } from '../src/stores/sqlite.js';
import type { LoadMessage, LoadResult } from './load-worker.js';
import { clockMs } from './timing.js';
import { AGGREGATE_TYPE, EVENT_TYPE, orderPayload } from './workload.js';

export type LoadDatabase = 'postgres' | 'mariadb' | 'sqlite';

export interface DbLoadRequest {
  readonly database: LoadDatabase;
  /** postgres:// or mysql:// URL, or the SQLite file. */
  readonly url: string;
  /** PostgreSQL: the schema of the outbox table. */
  readonly schema?: string;
  readonly rate: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  /** Concurrent writers (1 on SQLite: it has one writer at a time). */
  readonly writers: number;
  readonly keys: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** add() only renders the destination with the route: this publisher never publishes. */
const routingOnly: Publisher = { kind: 'nats', capabilities: { dedupeById: true }, publish: async () => [] };

/** Commits event n in a transaction of its own and returns its id. */
type Commit = (n: number) => Promise<string> | string;

interface Writers {
  readonly commits: Commit[];
  close(): Promise<void>;
}

function event(req: DbLoadRequest, n: number): OutboxEvent {
  const aggregateId = `o-${(n * 7_919) % req.keys}`;
  return {
    type: EVENT_TYPE,
    aggregateType: AGGREGATE_TYPE,
    aggregateId,
    payload: orderPayload(n, aggregateId),
  };
}

async function openWriters(req: DbLoadRequest, outbox: Outbox): Promise<Writers> {
  const count = Array.from({ length: req.writers });
  if (req.database === 'postgres') {
    const clients = await Promise.all(
      count.map(async () => {
        const c = new pg.Client({ connectionString: req.url });
        await c.connect();
        return c;
      }),
    );
    return {
      commits: clients.map((client) => async (n) => {
        await client.query('BEGIN');
        const id = await outbox.add(fromPg(client), event(req, n));
        await client.query('COMMIT');
        return id;
      }),
      close: async () => void (await Promise.all(clients.map((c) => c.end().catch(() => {})))),
    };
  }
  if (req.database === 'mariadb') {
    const conns = await Promise.all(count.map(() => mysql.createConnection({ uri: req.url })));
    return {
      commits: conns.map((conn) => async (n) => {
        await conn.beginTransaction();
        const id = await outbox.add(fromMysql2(conn), event(req, n));
        await conn.commit();
        return id;
      }),
      close: async () => void (await Promise.all(conns.map((c) => c.end().catch(() => {})))),
    };
  }
  const db = new Database(req.url, { timeout: 5_000 });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  const add = db.transaction((n: number) => outbox.add(fromBetterSqlite3(db), event(req, n)));
  return { commits: [(n) => add(n)], close: async () => void db.close() };
}

function storeOf(req: DbLoadRequest): Store {
  if (req.database === 'postgres') return postgresStore({ url: req.url, schema: req.schema });
  if (req.database === 'mariadb') return mysqlStore({ url: req.url, poolSize: 1 });
  return sqliteStore({ path: req.url });
}

async function run(req: DbLoadRequest): Promise<LoadResult> {
  const store = storeOf(req);
  const outbox = createOutbox({
    database: store,
    publishers: { bench: routingOnly },
    routes: [{ destination: 'bench.latency.{type}' }],
  });
  // MariaDB: the store reads max_allowed_packet on its first query, before the clock runs.
  await store.stats();
  const writers = await openWriters(req, outbox);
  try {
    return await measure(req, writers.commits);
  } finally {
    await writers.close();
    await outbox.close();
  }
}

/** Commits event n at startAt + n / rate, spread over the writers (as load-worker.ts does). */
async function measure(req: DbLoadRequest, commits: Commit[]): Promise<LoadResult> {
  const intervalMs = 1_000 / req.rate;
  const startAt = clockMs() + 50;
  const measureFrom = startAt + req.warmupSeconds * 1_000;
  const endAt = startAt + req.seconds * 1_000;
  const measured: [string, number][] = [];
  let committed = 0;
  let next = 0;
  let maxScheduleLagMs = 0;
  let maxScheduleLagAtS = 0;
  const progress = setInterval(() => {
    parentPort?.postMessage({ kind: 'progress', committed, received: 0 } satisfies LoadMessage);
  }, 1_000);
  const writer = async (commit: Commit) => {
    for (;;) {
      const n = next++;
      const due = startAt + n * intervalMs;
      if (due >= endAt) return;
      const wait = due - clockMs();
      if (wait > 0.5) await sleep(wait);
      const lag = clockMs() - due;
      if (lag > maxScheduleLagMs) [maxScheduleLagMs, maxScheduleLagAtS] = [lag, (due - startAt) / 1_000];
      const id = await commit(n);
      committed++;
      if (due >= measureFrom) measured.push([id, clockMs()]);
    }
  };
  await Promise.all(commits.map(writer));
  clearInterval(progress);
  const first = measured[0]?.[1] ?? 0;
  const last = measured.at(-1)?.[1] ?? 0;
  return {
    committed,
    received: 0,
    latencies: [],
    early: 0,
    achievedRate: measured.length / ((last - first) / 1_000),
    maxScheduleLagMs,
    maxScheduleLagAtS,
    missing: 0,
    commits: measured,
  };
}

run(workerData as DbLoadRequest).then(
  (result) => parentPort?.postMessage({ kind: 'done', result } satisfies LoadMessage),
  (error: unknown) =>
    parentPort?.postMessage({
      kind: 'failed',
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    } satisfies LoadMessage),
);
