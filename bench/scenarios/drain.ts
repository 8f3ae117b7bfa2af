/**
 * Backlog drain on PostgreSQL, one relay: N events pre-inserted (ours with `outbox.add`, the
 * reference with the equivalent INSERT), then the relay is timed from start() until it has
 * deleted the last one. Each side starts from a vacuumed, analysed table after a checkpoint,
 * with an empty stream. Per-key order is checked after each drain (ours must keep it; the
 * reference's count is shown, it does not try). To JetStream, the raw acked-publish ceiling
 * (no database) is timed in the same run, with issue 4's bar for every publisher against its
 * broker's ceiling (the other brokers' rows are in brokers.ts).
 */
import type { BatchReport } from '../../src/index.js';
import type { DeliveryResult } from '../../src/testing/index.js';
import type { BenchEnv } from '../env.js';
import { checkOrder, describeDelivery, streamIds } from '../order.js';
import { REFERENCE_TABLE, ReferenceRelay } from '../reference-relay.js';
import type { ResultRow } from '../report.js';
import {
  countRows,
  ledgerOf,
  OURS_TABLE,
  preloadOurs,
  preloadReference,
  quiesce,
  referenceLedgerOf,
  resetTables,
} from '../tables.js';
import { oursOutbox, oursSubject, referenceSubject, referenceTarget, type TargetKind } from '../targets.js';
import { check, sidesInOrder, timeDrain } from '../timed-drain.js';
import { describeTiming } from '../timing.js';
import { workload } from '../workload.js';
import { CEILING_SHARE_BAR, jetstreamCeiling } from './ceiling.js';

export interface DrainSettings {
  readonly events: number;
  readonly keys: number;
  readonly batchSize: number;
  /** Drains per side; the best counts. */
  readonly repeats: number;
}

/** Issue 3: one relay, per-key order kept, against the reference of the same run. */
const BARS: Record<TargetKind, number> = { inproc: 1.3, nats: 1.2 };

interface Drained {
  readonly ms: number;
  readonly delivery: DeliveryResult;
}

async function drainOurs(env: BenchEnv, kind: TargetKind, s: DrainSettings, phase: string): Promise<Drained> {
  const received: string[] = [];
  const setup = oursOutbox(env, {
    kind,
    phase,
    batchSize: s.batchSize,
    record: (messages) => {
      for (const m of messages) received.push(m.id);
    },
  });
  try {
    await preloadOurs(env, setup, workload(s.keys, s.events), s.events);
    const ledger = await ledgerOf(env);
    await quiesce(env);
    const relay = setup.outbox.relay();
    let errors = 0;
    relay.on('error', () => errors++);
    const ms = await timeDrain(`ours → ${kind}`, s.events, {
      start: () => relay.start(),
      stop: () => relay.stop(),
      onPublished: (listener) => relay.on('batch', (r: BatchReport) => listener(r.published.length)),
    });
    check(errors === 0, `our relay reported ${errors} loop errors`);
    process.stderr.write(`    ours: ${describeTiming(setup.timing)}\n`);
    const ids = kind === 'nats' ? await streamIds(env, `${oursSubject(env, phase)}.>`, s.events) : received;
    return { ms, delivery: checkOrder(ledger, ids) };
  } finally {
    await setup.close();
  }
}

async function drainReference(
  env: BenchEnv,
  kind: TargetKind,
  s: DrainSettings,
  phase: string,
): Promise<Drained> {
  const received: string[] = [];
  const target = await referenceTarget(env, kind, (id) => received.push(id));
  try {
    await preloadReference(env, workload(s.keys, s.events), s.events, referenceSubject(env, phase));
    const ledger = await referenceLedgerOf(env, target.idPrefix);
    await quiesce(env);
    const relay = new ReferenceRelay({
      url: env.pgUrl,
      schema: env.schema,
      batchSize: s.batchSize,
      target: target.target,
    });
    let errors = 0;
    relay.on('loop-error', () => errors++);
    const ms = await timeDrain(`reference → ${kind}`, s.events, {
      start: () => relay.start(),
      stop: () => relay.stop(),
      onPublished: (listener) => relay.on('batch', (b: { published: number }) => listener(b.published)),
    });
    check(errors === 0, `the reference relay reported ${errors} loop errors`);
    process.stderr.write(`    reference: ${describeTiming(relay.timing)}\n`);
    const ids =
      kind === 'nats' ? await streamIds(env, `${referenceSubject(env, phase)}.>`, s.events) : received;
    return { ms, delivery: checkOrder(ledger, ids) };
  } finally {
    await target.close();
  }
}

/**
 * The drain row (and, to JetStream, the ceiling row): ours and the reference draining the same
 * backlog to the same target, `repeats` times each in alternating order (the ceiling after each
 * pair); the best time of each counts (noise only slows down).
 */
export async function drainPostgres(env: BenchEnv, kind: TargetKind, s: DrainSettings): Promise<ResultRow[]> {
  const phase = `drain${kind}`;
  const best = { ours: Number.POSITIVE_INFINITY, reference: Number.POSITIVE_INFINITY };
  let ceilingMs = Number.POSITIVE_INFINITY;
  const deliveries: Record<'ours' | 'reference', DeliveryResult[]> = { ours: [], reference: [] };
  for (const [i, side] of sidesInOrder(s.repeats).entries()) {
    await resetTables(env);
    await env.purgeStream();
    const drained =
      side === 'ours' ? await drainOurs(env, kind, s, phase) : await drainReference(env, kind, s, phase);
    const table = side === 'ours' ? OURS_TABLE : REFERENCE_TABLE;
    check((await countRows(env, table)) === 0, `${side}: the ${table} table is not empty after the drain`);
    if (kind === 'nats') {
      const inStream = await env.streamMessages();
      check(inStream === s.events, `${side}: the stream holds ${inStream} messages, expected ${s.events}`);
    }
    process.stderr.write(`    ${side}: ${describeDelivery(drained.delivery)}\n`);
    deliveries[side].push(drained.delivery);
    best[side] = Math.min(best[side], drained.ms);
    if (kind === 'nats' && i % 2 === 1) {
      await env.purgeStream();
      const ms = await jetstreamCeiling(env, workload(s.keys, s.events), {
        count: s.events,
        window: s.batchSize,
        subject: `${env.subjectPrefix}.${phase}.ceiling`,
      });
      ceilingMs = Math.min(ceilingMs, ms);
    }
  }
  const rate = (ms: number) => s.events / (ms / 1_000);
  const worst = (side: 'ours' | 'reference', field: 'orderViolations' | 'lost') =>
    Math.max(...deliveries[side].map((d) => d[field]));
  const oursViolations = worst('ours', 'orderViolations');
  const oursLost = worst('ours', 'lost');
  const invalid = [
    oursViolations > 0 ? `${oursViolations} order violations` : '',
    oursLost > 0 ? `${oursLost} lost` : '',
  ]
    .filter(Boolean)
    .join(', ');
  const target = kind === 'nats' ? 'JetStream' : 'in-process handler';
  const name = `drain ${s.events.toLocaleString('en-US')} events (${s.keys} keys), 1 relay, PostgreSQL → ${target}`;
  const rows: ResultRow[] = [
    {
      scenario: name,
      unit: 'events/s',
      ours: rate(best.ours),
      reference: rate(best.reference),
      better: 'higher',
      bar: { kind: 'ratio-at-least', value: BARS[kind], invalid: invalid || undefined },
      note:
        `per-key order violations: ours ${oursViolations}, ` +
        `reference ${worst('reference', 'orderViolations')} (it does not keep order)`,
    },
  ];
  if (kind === 'nats') {
    rows.push({
      scenario: `${name}, vs the raw JetStream acked-publish ceiling`,
      unit: 'events/s',
      ours: rate(best.ours),
      reference: rate(ceilingMs),
      better: 'higher',
      bar: { kind: 'ratio-at-least', value: CEILING_SHARE_BAR, invalid: invalid || undefined },
      note:
        `reference column: the NATS client alone publishing the same messages (acks, msg ids, ` +
        `CloudEvents headers, ${s.batchSize} in flight), no database; ` +
        `reference relay at ${(ceilingMs / best.reference).toFixed(2)}× of it`,
    });
  }
  return rows;
}
