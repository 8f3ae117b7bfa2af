/**
 * Write overhead: business transactions per second with 8 concurrent clients, each transaction
 * BEGIN, one business INSERT, [the event], COMMIT. Variants: the business INSERT alone; with
 * `outbox.add` and NOTIFY on; with `outbox.add` and NOTIFY off (`notify: false`); with the
 * reference's INSERT and its NOTIFY trigger. A connection LISTENs on both channels throughout,
 * as a relay would (no relay runs: only the writers' cost is measured).
 */
import pg from 'pg';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, type Outbox, type Publisher } from '../../src/index.js';
import { channelName, postgresStore } from '../../src/stores/postgres.js';
import type { BenchEnv } from '../env.js';
import { referenceChannel, referenceInsertSql } from '../reference-relay.js';
import { progress, type ResultRow } from '../report.js';
import { businessInsertSql, businessRow, OURS_TABLE, quiesce, resetTables } from '../tables.js';
import { AGGREGATE_TYPE, EVENT_TYPE, orderPayload } from '../workload.js';

export interface WriteSettings {
  readonly seconds: number;
  readonly clients: number;
  /** The time of each variant is split into this many rounds; the best round counts. */
  readonly rounds: number;
}

type Variant = 'business' | 'notify' | 'silent' | 'reference';
type Transaction = (client: pg.Client, n: number) => Promise<void>;

const WARMUP_MS = 1_000;
const KEYS = 1_000;

const routingOnly: Publisher = { kind: 'nats', capabilities: { dedupeById: true }, publish: async () => [] };

function oursFor(env: BenchEnv, notify: boolean): Outbox {
  return createOutbox({
    database: postgresStore({ url: env.pgUrl, schema: env.schema, notify }),
    publishers: { bench: routingOnly },
    routes: [{ destination: `${env.subjectPrefix}.write.{type}` }],
  });
}

function transactionOf(env: BenchEnv, variant: Variant): Transaction {
  const business = businessInsertSql(env);
  const event = (n: number) => {
    const aggregateId = `o-${n % KEYS}`;
    return {
      type: EVENT_TYPE,
      aggregateType: AGGREGATE_TYPE,
      aggregateId,
      payload: orderPayload(n, aggregateId),
    };
  };
  const outbox =
    variant === 'notify' || variant === 'silent' ? oursFor(env, variant === 'notify') : undefined;
  const reference = referenceInsertSql(env.schema);
  const destination = `${env.subjectPrefix}.write.ref.${EVENT_TYPE}`;
  return async (client, n) => {
    await client.query('BEGIN');
    await client.query(business, businessRow(n));
    if (outbox) await outbox.add(fromPg(client), event(n));
    if (variant === 'reference') {
      const e = event(n);
      await client.query(reference, [
        `${e.aggregateType}:${e.aggregateId}`,
        e.type,
        destination,
        JSON.stringify(e.payload),
      ]);
    }
    await client.query('COMMIT');
  };
}

async function throughput(env: BenchEnv, variant: Variant, label: string, s: WriteSettings): Promise<number> {
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
  const line = progress(label);
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
  const rates: Record<Variant, number> = { business: 0, notify: 0, silent: 0, reference: 0 };
  const labels: Record<Variant, string> = {
    business: 'business INSERT only',
    notify: 'ours: + add(), NOTIFY on',
    silent: 'ours: + add(), NOTIFY off',
    reference: 'reference: + INSERT, NOTIFY trigger',
  };
  const variants = Object.keys(labels) as Variant[];
  const phase = { ...s, seconds: s.seconds / s.rounds };
  try {
    // Rounds in alternating order; the best round of each variant counts (noise only slows down).
    for (let round = 0; round < s.rounds; round++) {
      for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
        rates[v] = Math.max(rates[v], await throughput(env, v, labels[v], phase));
      }
    }
  } finally {
    await listener.end().catch(() => {});
  }
  const share = (rate: number) => `${Math.round((rate / rates.business) * 100)}% of business-only`;
  const name = `write: business tx/s, ${s.clients} clients`;
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
      scenario: `${name}, + add() with NOTIFY`,
      unit: 'tx/s',
      ours: rates.notify,
      reference: rates.reference,
      better: 'higher',
      note: `ours ${share(rates.notify)}; reference (INSERT + NOTIFY trigger) ${share(rates.reference)}`,
    },
    {
      scenario: `${name}, + add() with notify: false`,
      unit: 'tx/s',
      ours: rates.silent,
      reference: rates.reference,
      better: 'higher',
      note: `ours ${share(rates.silent)} (wake-up by polling only); reference with NOTIFY`,
    },
  ];
}
