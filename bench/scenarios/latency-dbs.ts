/**
 * Commit → publish latency on MariaDB and SQLite at a moderate steady rate, beside PostgreSQL:
 * our relay runs here, alone on this thread, publishing to an in-process handler that records
 * each arrival; writers in a worker thread (bench/db-load-worker.ts) commit one event per
 * transaction with `outbox.add`. Latency = arrival − the writer's acknowledged COMMIT, on the
 * process-wide monotonic clock; the first second is warm-up. MariaDB has no commit-time
 * notification, nor has SQLite: their relays poll adaptively (1, 2, 4 … ms up to 100 ms after an
 * empty claim), so the reference column is ours on PostgreSQL with the same wake-up (polling, no
 * NOTIFY), the same harness and rate, in the same run. 8 writers on MariaDB and PostgreSQL;
 * SQLite has one writer at a time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { createOutbox, type Outbox, type Store } from '../../src/index.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import type { DbLoadRequest, LoadDatabase } from '../db-load-worker.js';
import { type BenchEnv, onCleanup } from '../env.js';
import type { LoadMessage, LoadResult } from '../load-worker.js';
import type { MariadbEnv } from '../mariadb-env.js';
import { formatNumber, progress, type ResultRow } from '../report.js';
import { quiesce, resetTables } from '../tables.js';
import { inProcessPublisher, oursOutbox } from '../targets.js';
import { clockMs, describeTiming, newTiming, timed } from '../timing.js';
import { ARRIVAL_TIMEOUT_MS, type Arrivals, pairArrivals, percentile, spread } from './latency.js';

export interface DbLatencySettings {
  readonly rate: number;
  readonly seconds: number;
  readonly batchSize: number;
}

const WARMUP_SECONDS = 1;
const KEYS = 1_000;
const WRITERS: Record<LoadDatabase, number> = { postgres: 8, mariadb: 8, sqlite: 1 };
const NAMES: Record<LoadDatabase, string> = { postgres: 'PostgreSQL', mariadb: 'MariaDB', sqlite: 'SQLite' };

interface Measured {
  readonly p50: number;
  readonly p99: number;
  readonly achievedRate: number;
  readonly missing: number;
}

function runWriters(request: DbLoadRequest, label: string): Promise<LoadResult> {
  const line = progress(label);
  const worker = new Worker(new URL('../db-load-worker.js', import.meta.url), { workerData: request });
  return new Promise<LoadResult>((resolve, reject) => {
    worker.on('message', (message: LoadMessage) => {
      if (message.kind === 'progress') line.update(`${message.committed} committed`);
      else if (message.kind === 'failed') reject(new Error(`${label}: ${message.error}`));
      else {
        const r = message.result;
        line.done(
          `${r.committed} committed, ${Math.round(r.achievedRate)}/s achieved, ` +
            `writers at most ${r.maxScheduleLagMs.toFixed(1)} ms behind schedule`,
        );
        resolve(r);
      }
    });
    worker.on('error', reject);
    worker.on('exit', (code) => reject(new Error(`${label}: load worker exited with ${code}`)));
  }).finally(() => void worker.terminate());
}

/** Runs `outbox`'s relay while the writers commit at the rate; latencies at the handler. */
async function measure(
  outbox: Outbox,
  arrivals: Arrivals,
  request: DbLoadRequest,
  s: DbLatencySettings,
): Promise<Measured> {
  const name = NAMES[request.database];
  const relay = outbox.relay({ batchSize: s.batchSize });
  relay.on('error', () => {});
  await relay.start();
  let result: LoadResult;
  try {
    result = await runWriters(request, `${name}, ${request.writers} writer(s) at ${s.rate}/s`);
    result = await pairArrivals(result, arrivals);
  } finally {
    await relay.stop();
  }
  if (result.missing > 0) {
    process.stderr.write(
      `    ${name}: did not keep up: ${result.missing} measured events not published within ${ARRIVAL_TIMEOUT_MS / 1_000} s of the end\n`,
    );
  }
  process.stderr.write(`    ${name}: ${spread(result.latencies)}\n`);
  const sorted = [
    ...result.latencies,
    ...Array.from({ length: result.missing }, () => Number.POSITIVE_INFINITY),
  ].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    achievedRate: result.achievedRate,
    missing: result.missing,
  };
}

function requestFor(
  database: LoadDatabase,
  url: string,
  s: DbLatencySettings,
  schema?: string,
): DbLoadRequest {
  return {
    database,
    url,
    schema,
    rate: s.rate,
    seconds: s.seconds,
    warmupSeconds: WARMUP_SECONDS,
    writers: WRITERS[database],
    keys: KEYS,
  };
}

async function onPostgres(env: BenchEnv, s: DbLatencySettings): Promise<Measured> {
  await resetTables(env);
  await quiesce(env);
  const arrivals: Arrivals = new Map();
  const setup = oursOutbox(env, {
    kind: 'inproc',
    phase: 'latdb',
    batchSize: s.batchSize,
    record: (messages) => {
      for (const m of messages) arrivals.set(m.id, clockMs());
    },
  });
  try {
    return await measure(setup.outbox, arrivals, requestFor('postgres', env.pgUrl, s, env.schema), s);
  } finally {
    process.stderr.write(`    PostgreSQL: ${describeTiming(setup.timing)}\n`);
    await setup.close();
  }
}

/** Ours on `store`, publishing to an in-process handler that records arrivals. */
async function onStore(store: Store, request: DbLoadRequest, s: DbLatencySettings): Promise<Measured> {
  const arrivals: Arrivals = new Map();
  const timing = newTiming();
  const outbox = createOutbox({
    database: timed(store, { claim: timing.claim, settle: timing.settle }),
    publishers: {
      bench: inProcessPublisher((messages) => {
        for (const m of messages) arrivals.set(m.id, clockMs());
      }),
    },
    routes: [{ destination: 'bench.latency.{type}' }],
  });
  try {
    await outbox.migrate();
    return await measure(outbox, arrivals, request, s);
  } finally {
    process.stderr.write(`    ${NAMES[request.database]}: ${describeTiming(timing)}\n`);
    await outbox.close();
    await store.close();
  }
}

async function onSqlite(s: DbLatencySettings): Promise<Measured> {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-bench-latency-'));
  const remove = async () => rmSync(dir, { recursive: true, force: true });
  const unhook = onCleanup(remove);
  try {
    const path = join(dir, 'app.db');
    return await onStore(sqliteStore({ path }), requestFor('sqlite', path, s), s);
  } finally {
    unhook();
    await remove();
  }
}

/**
 * A p99 row per database in `which`, each against ours on PostgreSQL measured once in the same
 * run (the reference column); p50s in the note.
 */
export async function latencyDbs(
  env: BenchEnv,
  mariadb: MariadbEnv | undefined,
  which: readonly ('mariadb' | 'sqlite')[],
  s: DbLatencySettings,
): Promise<ResultRow[]> {
  const baseline = await onPostgres(env, s);
  const rows: ResultRow[] = [];
  for (const database of which) {
    let measured: Measured;
    if (database === 'mariadb') {
      if (!mariadb) throw new Error('latency-mariadb needs the MariaDB environment');
      await mariadb.reset();
      const store = mysqlStore({ url: mariadb.url });
      measured = await onStore(store, requestFor('mariadb', mariadb.url, s), s);
    } else {
      measured = await onSqlite(s);
    }
    const slow = (m: Measured, name: string) =>
      [
        m.achievedRate < s.rate * 0.95 ? `${name} writers reached only ${Math.round(m.achievedRate)}/s` : '',
        m.missing > 0
          ? `${name}: ${m.missing} events not published within ${ARRIVAL_TIMEOUT_MS / 1_000} s`
          : '',
      ].filter(Boolean);
    const ms = (value: number) => `${formatNumber(value, 'ms')} ms`;
    rows.push({
      scenario: `commit → in-process handler at ${s.rate.toLocaleString('en-US')}/s, ${NAMES[database]} (${WRITERS[database]} writer${WRITERS[database] > 1 ? 's' : ''}), p99 (polling)`,
      unit: 'ms',
      ours: measured.p99,
      reference: baseline.p99,
      better: 'lower',
      note: [
        `reference column: ours on PostgreSQL (${WRITERS.postgres} writers, polling, no NOTIFY), same harness and run`,
        `p50 ${ms(measured.p50)} (PostgreSQL ${ms(baseline.p50)})`,
        ...slow(measured, NAMES[database]),
        ...slow(baseline, 'PostgreSQL'),
      ].join('; '),
    });
  }
  return rows;
}
