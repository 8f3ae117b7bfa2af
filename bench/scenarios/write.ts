/**
 * Write overhead: business transactions per second with 8 concurrent clients, each transaction
 * BEGIN, one business INSERT, [the event], COMMIT. Variants: the business INSERT alone; with
 * `outbox.add` and the defaults (per-key advisory lock in the INSERT, no NOTIFY: the relay
 * polls); with `outbox.add` and `notify: true`; with `outbox.add` whose statement the bench
 * rewrites to drop the lock (what the lock costs); and the reference's INSERT with and without
 * its NOTIFY trigger. A connection LISTENs on both channels throughout, as a relay
 * would (no relay runs: only the writers' cost is measured).
 */
import pg from 'pg';
import type { AsyncExecutor } from '../../src/core/ports.js';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, type Outbox, type Publisher } from '../../src/index.js';
import { channelName, postgresStore } from '../../src/stores/postgres.js';
import type { BenchEnv } from '../env.js';
import {
  REFERENCE_SILENT_TABLE,
  REFERENCE_TABLE,
  referenceChannel,
  referenceInsertSql,
} from '../reference-relay.js';
import { progress, type ResultRow } from '../report.js';
import { businessInsertSql, businessRow, OURS_TABLE, quiesce, resetTables } from '../tables.js';
import { AGGREGATE_TYPE, EVENT_TYPE, orderPayload } from '../workload.js';

export interface WriteSettings {
  readonly seconds: number;
  readonly clients: number;
  /** The time of each variant is split into this many rounds; the best round counts. */
  readonly rounds: number;
}

const LABELS = {
  business: 'business INSERT only',
  ours: 'ours: + add(), defaults (per-key lock, no NOTIFY)',
  'ours-notify': 'ours: + add(), notify: true',
  'ours-unlocked': 'ours: + add() without its per-key lock (bench-side), no NOTIFY',
  reference: 'reference: + INSERT, NOTIFY trigger',
  'reference-silent': 'reference: + INSERT, no trigger',
} as const;
type Variant = keyof typeof LABELS;
type Transaction = (client: pg.Client, n: number) => Promise<void>;

/** Issue 3: business tx/s with add() at least this share of business-only. */
const SHARE_BAR = 0.65;
const WARMUP_MS = 1_000;
const KEYS = 1_000;

const routingOnly: Publisher = { kind: 'nats', capabilities: { dedupeById: true }, publish: async () => [] };

function oursFor(env: BenchEnv, notify: boolean | undefined): Outbox {
  return createOutbox({
    database: postgresStore({ url: env.pgUrl, schema: env.schema, notify }),
    publishers: { bench: routingOnly },
    routes: [{ destination: `${env.subjectPrefix}.write.{type}` }],
  });
}

function event(n: number) {
  const aggregateId = `o-${n % KEYS}`;
  return {
    type: EVENT_TYPE,
    aggregateType: AGGREGATE_TYPE,
    aggregateId,
    payload: orderPayload(n, aggregateId),
  };
}

/** The per-key lock call in add()'s statement (src/stores/postgres.ts). */
const KEY_LOCK = /pg_advisory_xact_lock\([^()]*\)/g;

/**
 * add() with its per-key lock taken out: the store has no switch for it, so the bench rewrites
 * the statement on its way to the database (`pg_advisory_xact_lock(…)` → `NULL`); everything
 * else, NOTIFY off included, is add()'s own path. Isolates what the lock costs.
 */
function unlocked(executor: AsyncExecutor): AsyncExecutor {
  return {
    ...executor,
    query(sql, params) {
      const stripped = sql.replace(KEY_LOCK, 'NULL');
      if (stripped === sql)
        throw new Error("bench: no pg_advisory_xact_lock(…) in add()'s statement to take out");
      return executor.query(stripped, params);
    },
  };
}

function referenceInsert(env: BenchEnv, table: string): (client: pg.Client, n: number) => Promise<unknown> {
  const sql = referenceInsertSql(env.schema, table);
  const destination = `${env.subjectPrefix}.write.ref.${EVENT_TYPE}`;
  return (client, n) => {
    const e = event(n);
    return client.query(sql, [
      `${e.aggregateType}:${e.aggregateId}`,
      e.type,
      destination,
      JSON.stringify(e.payload),
    ]);
  };
}

function transactionOf(env: BenchEnv, variant: Variant): Transaction {
  const business = businessInsertSql(env);
  let write: ((client: pg.Client, n: number) => Promise<unknown>) | undefined;
  if (variant === 'ours' || variant === 'ours-notify') {
    const outbox = oursFor(env, variant === 'ours-notify' ? true : undefined);
    write = (client, n) => outbox.add(fromPg(client), event(n));
  } else if (variant === 'ours-unlocked') {
    const outbox = oursFor(env, undefined);
    write = (client, n) => outbox.add(unlocked(fromPg(client)), event(n));
  } else if (variant === 'reference') write = referenceInsert(env, REFERENCE_TABLE);
  else if (variant === 'reference-silent') write = referenceInsert(env, REFERENCE_SILENT_TABLE);
  return async (client, n) => {
    await client.query('BEGIN');
    await client.query(business, businessRow(n));
    if (write) await write(client, n);
    await client.query('COMMIT');
  };
}

async function throughput(env: BenchEnv, variant: Variant, s: WriteSettings): Promise<number> {
  await resetTables(env);
  await quiesce(env);
  const transaction = transactionOf(env, variant);
  const clients = await Promise.all(
    Array.from({ length: s.clients }, async () => {
      const c = new pg.Client({ connectionString: env.pgUrl });
      await c.connect();
      return c;
    }),
  );
  const line = progress(LABELS[variant]);
  const startedAt = performance.now();
  const countFrom = startedAt + WARMUP_MS;
  const endAt = countFrom + s.seconds * 1_000;
  let n = 0;
  let counted = 0;
  const ticker = setInterval(() => {
    const elapsed = (performance.now() - countFrom) / 1_000;
    if (elapsed > 0) line.update(`${Math.round(counted / elapsed)} tx/s`);
  }, 500);
  try {
    await Promise.all(
      clients.map(async (client) => {
        for (let now = performance.now(); now < endAt; now = performance.now()) {
          await transaction(client, n++);
          if (performance.now() >= countFrom && performance.now() < endAt) counted++;
        }
      }),
    );
  } finally {
    clearInterval(ticker);
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
  const rate = counted / s.seconds;
  line.done(`${Math.round(rate)} tx/s`);
  return rate;
}

export async function writeScenario(env: BenchEnv, s: WriteSettings): Promise<ResultRow[]> {
  const listener = new pg.Client({ connectionString: env.pgUrl });
  await listener.connect();
  listener.on('notification', () => {});
  await listener.query(`LISTEN "${channelName(env.schema, OURS_TABLE)}"`);
  await listener.query(`LISTEN "${referenceChannel(env.schema)}"`);
  const variants = Object.keys(LABELS) as Variant[];
  const rates = Object.fromEntries(variants.map((v) => [v, 0])) as Record<Variant, number>;
  const phase = { ...s, seconds: s.seconds / s.rounds };
  try {
    // Rounds in alternating order; the best round of each variant counts (noise only slows down).
    for (let round = 0; round < s.rounds; round++) {
      for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
        rates[v] = Math.max(rates[v], await throughput(env, v, phase));
      }
    }
  } finally {
    await listener.end().catch(() => {});
  }
  const share = (v: Variant) => `${(rates[v] / rates.business).toFixed(2)}×`;
  const name = `write: business tx/s, ${s.clients} clients`;
  const baseline = { of: rates.business, ofLabel: 'business-only' };
  const lockCost = 1 - rates.ours / rates['ours-unlocked'];
  return [
    {
      scenario: `${name}, business INSERT only`,
      unit: 'tx/s',
      ours: rates.business,
      reference: rates.business,
      better: 'higher',
      note: 'baseline, same for both',
    },
    {
      scenario: `${name}, + add(), defaults (per-key lock, no NOTIFY)`,
      unit: 'tx/s',
      ours: rates.ours,
      reference: rates.reference,
      better: 'higher',
      bar: { kind: 'share-at-least', value: SHARE_BAR, ...baseline },
      note: `of business-only: ours ${share('ours')}, reference (INSERT + NOTIFY trigger) ${share('reference')}`,
    },
    {
      scenario: `${name}, + add() with notify: true`,
      unit: 'tx/s',
      ours: rates['ours-notify'],
      reference: rates.reference,
      better: 'higher',
      note: `of business-only: ours ${share('ours-notify')}, reference (INSERT + NOTIFY trigger) ${share('reference')}`,
    },
    {
      scenario: `${name}, + add() without the per-key lock (bench-side), no NOTIFY`,
      unit: 'tx/s',
      ours: rates['ours-unlocked'],
      reference: rates['reference-silent'],
      better: 'higher',
      note:
        `ours: add()'s statement with pg_advisory_xact_lock(…) replaced by NULL in the bench, ${share('ours-unlocked')}; ` +
        `reference without its trigger ${share('reference-silent')}; ` +
        `the per-key lock costs ${(lockCost * 100).toFixed(0)}% (defaults row vs this)`,
    },
  ];
}
