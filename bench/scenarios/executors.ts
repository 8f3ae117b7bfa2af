/**
 * What `outbox.add(fromX(tx), event)` costs over the same INSERT issued through the same handle
 * by the library's own raw-SQL call, for every executor (bench/executor-libraries.ts). Each
 * transaction, the library's own, holds one timed call: add() of a fresh event (validation, ids,
 * routing, JSON, the executor: everything add() does), or the statement add() would have sent for
 * an equivalent event, captured beforehand and handed to the library's raw call with the same
 * parameters and, where add() prepares, prepared the same way (so the database does the same
 * work). Calls alternate add, raw, raw, add on one connection after a warm-up; per-call times
 * are compared by their medians (a call's time includes its database round trip). Bar (issue 5):
 * at most 10 % extra per add() for every executor.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Dialect, Statement, Store } from '../../src/core/ports.js';
import { createOutbox, type Outbox, type OutboxEvent, type Publisher } from '../../src/index.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import { postgresStore } from '../../src/stores/postgres.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { type BenchEnv, onCleanup } from '../env.js';
import {
  type AnyLibrary,
  LIBRARIES,
  type Library,
  type LibraryDatabase,
  type LibraryTargets,
} from '../executor-libraries.js';
import type { MariadbEnv } from '../mariadb-env.js';
import { formatNumber, progress, type ResultRow } from '../report.js';
import { AGGREGATE_TYPE, EVENT_TYPE, orderPayload } from '../workload.js';

export interface ExecutorSettings {
  /** Timed calls per executor: this long after the warm-up. */
  readonly seconds: number;
  readonly warmupSeconds: number;
}

/** Issue 5: add() at most this many times the library's raw call of the same statement. */
const OVERHEAD_BAR = 1.1;
const TABLE = 'outbox_exec';
const KEYS = 1_000;
const ORDER = ['add', 'raw', 'raw', 'add'] as const;
type Side = (typeof ORDER)[number];

const DIALECTS: Record<LibraryDatabase, Dialect> = {
  postgres: 'postgres',
  mariadb: 'mysql',
  sqlite: 'sqlite',
};
const NAMES: Record<LibraryDatabase, string> = {
  postgres: 'PostgreSQL',
  mariadb: 'MariaDB',
  sqlite: 'SQLite',
};

/** add() only renders the destination with the route: this publisher never publishes. */
const routingOnly: Publisher = { kind: 'nats', capabilities: { dedupeById: true }, publish: async () => [] };

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

function event(i: number): OutboxEvent {
  const aggregateId = `o-${i % KEYS}`;
  return {
    type: EVENT_TYPE,
    aggregateType: AGGREGATE_TYPE,
    aggregateId,
    payload: orderPayload(i, aggregateId),
  };
}

/** The statement add() sends for `e` (with an id of its own), captured without sending it. */
function statementOf(outbox: Outbox, dialect: Dialect, e: OutboxEvent): Statement {
  let captured: Statement | undefined;
  outbox.add(
    {
      dialect,
      sync: true,
      transactionState: () => 'active',
      query(sql, params) {
        captured = { sql, params };
        return [];
      },
    },
    e,
  );
  return captured!;
}

/** One transaction holding one timed call; its time in microseconds. */
function once(
  library: Library<unknown, unknown>,
  outbox: Outbox,
  side: Side,
  i: number,
): number | Promise<number> {
  const e = event(i);
  // Both sides capture a statement first (untimed), so both come to their call alike.
  const statement = statementOf(outbox, DIALECTS[library.database], e);
  const raw = side === 'raw' ? library.prepare(statement) : undefined;
  let us = 0;
  const call = (tx: unknown) => {
    const startedAt = performance.now();
    const result = side === 'add' ? outbox.add(library.executor(tx), e) : library.raw(tx, raw);
    if (!isThenable(result)) {
      us = (performance.now() - startedAt) * 1_000;
      return undefined;
    }
    return Promise.resolve(result).then(() => {
      us = (performance.now() - startedAt) * 1_000;
    });
  };
  const done = library.transaction(call);
  return isThenable(done) ? Promise.resolve(done).then(() => us) : us;
}

interface Samples {
  add: number[];
  raw: number[];
}

async function measure(
  library: Library<unknown, unknown>,
  outbox: Outbox,
  s: ExecutorSettings,
): Promise<Samples> {
  const line = progress(`${library.name} on ${NAMES[library.database]}`);
  const warmUntil = performance.now() + s.warmupSeconds * 1_000;
  let i = 0;
  while (performance.now() < warmUntil || i < 100) await once(library, outbox, ORDER[i % 4]!, i++);
  const samples: Samples = { add: [], raw: [] };
  const until = performance.now() + s.seconds * 1_000;
  for (let n = 0; performance.now() < until; n++) {
    const side = ORDER[n % 4]!;
    samples[side].push(await once(library, outbox, side, i++));
    if (n % 200 === 199) line.update(`${n + 1} calls`);
  }
  line.done(`${samples.add.length + samples.raw.length} calls, ${describe(samples)}`);
  return samples;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const mean = (values: readonly number[]) => values.reduce((sum, v) => sum + v, 0) / values.length;
const us = (value: number) => `${formatNumber(value, 'µs')} µs`;

function describe(s: Samples): string {
  return `median add() ${us(median(s.add))}, raw ${us(median(s.raw))}`;
}

interface Outboxes {
  readonly byDatabase: Record<LibraryDatabase, { outbox: Outbox; store: Store; empty(): Promise<void> }>;
  readonly targets: LibraryTargets;
  close(): Promise<void>;
}

/** An outbox table `outbox_exec` on each database, and where each library connects. */
async function openOutboxes(env: BenchEnv, mariadb: MariadbEnv): Promise<Outboxes> {
  const scratch = mkdtempSync(join(tmpdir(), 'outbox-bench-executors-'));
  const remove = async () => rmSync(scratch, { recursive: true, force: true });
  const unhook = onCleanup(remove);
  const sqlitePath = join(scratch, 'app.db');
  const outboxOf = async (store: Store) => {
    const outbox = createOutbox({
      database: store,
      publishers: { bench: routingOnly },
      routes: [{ destination: 'bench.executors.{type}' }],
    });
    await outbox.migrate();
    // MariaDB: the store reads max_allowed_packet on its first query, before the clock runs.
    await store.stats();
    return outbox;
  };
  const pg = postgresStore({ url: env.pgUrl, schema: env.schema, table: TABLE });
  const mysql = mysqlStore({ url: mariadb.url, table: TABLE, poolSize: 1 });
  const sqlite = sqliteStore({ path: sqlitePath, table: TABLE });
  const byDatabase: Outboxes['byDatabase'] = {
    postgres: {
      store: pg,
      outbox: await outboxOf(pg),
      empty: async () => void (await env.admin.query(`TRUNCATE "${env.schema}"."${TABLE}"`)),
    },
    mariadb: {
      store: mysql,
      outbox: await outboxOf(mysql),
      empty: async () => void (await mariadb.admin.query(`TRUNCATE TABLE ${TABLE}`)),
    },
    // A fresh file: each SQLite library is the only one writing to it.
    sqlite: { store: sqlite, outbox: await outboxOf(sqlite), empty: async () => {} },
  };
  return {
    byDatabase,
    targets: { pgUrl: env.pgUrl, mariadbUrl: mariadb.url, sqlitePath, scratch },
    async close() {
      for (const o of Object.values(byDatabase)) {
        await o.outbox.close();
        await o.store.close();
      }
      unhook();
      await remove();
    },
  };
}

async function rowOf(entry: AnyLibrary, outboxes: Outboxes, s: ExecutorSettings): Promise<ResultRow> {
  const target = outboxes.byDatabase[entry.database];
  await target.empty();
  const library = await entry.open(outboxes.targets);
  let samples: Samples;
  try {
    samples = await measure(library, target.outbox, s);
  } finally {
    await library.close();
  }
  const [add, raw] = [median(samples.add), median(samples.raw)];
  return {
    scenario: `add() over the same INSERT through the library, ${entry.name}, ${NAMES[entry.database]}`,
    unit: 'µs',
    ours: add,
    reference: raw,
    better: 'lower',
    bar: { kind: 'ratio-at-most', value: OVERHEAD_BAR },
    note:
      `reference: ${library.rawCall}; medians of ${samples.add.length} calls each, ` +
      `${add - raw >= 0 ? '+' : '−'}${us(Math.abs(add - raw))} per add() (means ${us(mean(samples.add))} / ${us(mean(samples.raw))})`,
  };
}

export async function executorsScenario(
  env: BenchEnv,
  mariadb: MariadbEnv,
  s: ExecutorSettings,
): Promise<ResultRow[]> {
  const outboxes = await openOutboxes(env, mariadb);
  try {
    const rows: ResultRow[] = [];
    for (const entry of LIBRARIES) rows.push(await rowOf(entry, outboxes, s));
    return rows;
  } finally {
    await outboxes.close();
  }
}
