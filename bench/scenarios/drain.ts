/**
 * Backlog drain on PostgreSQL: N events pre-inserted (ours with `outbox.add`, the reference with
 * the equivalent INSERT), then the relay is timed from start() until it has deleted the last one.
 * Each side starts from a vacuumed, analysed table after a checkpoint, with an empty stream.
 */
import type { BatchReport } from '../../src/index.js';
import type { BenchEnv } from '../env.js';
import { REFERENCE_TABLE, ReferenceRelay } from '../reference-relay.js';
import { progress, type ResultRow } from '../report.js';
import { countRows, OURS_TABLE, preloadOurs, preloadReference, quiesce, resetTables } from '../tables.js';
import { oursOutbox, referenceSubject, referenceTarget, type TargetKind } from '../targets.js';
import { describeTiming } from '../timing.js';
import { workload } from '../workload.js';

export interface DrainSettings {
  readonly events: number;
  readonly keys: number;
  readonly batchSize: number;
  /** Drains per side; the best counts. */
  readonly repeats: number;
}

/** No batch for this long means the relay is stuck: fail the scenario rather than hang. */
const STALL_MS = 30_000;

interface Drainable {
  start(): Promise<void>;
  stop(): Promise<void>;
  onPublished(listener: (count: number) => void): void;
}

/** Starts `relay`, waits until `total` events were published and settled; returns the time. */
export async function timeDrain(label: string, total: number, relay: Drainable): Promise<number> {
  const line = progress(label);
  let published = 0;
  let lastProgressAt = performance.now();
  let finish: (() => void) | undefined;
  relay.onPublished((n) => {
    published += n;
    lastProgressAt = performance.now();
    if (published >= total) finish?.();
  });
  const startedAt = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      finish = resolve;
      timer = setInterval(() => {
        const now = performance.now();
        const rate = published / ((now - startedAt) / 1_000);
        line.update(
          `${published.toLocaleString('en-US')}/${total.toLocaleString('en-US')} (${Math.round(rate)}/s)`,
        );
        if (now - lastProgressAt > STALL_MS) reject(new Error(`${label}: no progress for ${STALL_MS} ms`));
      }, 250);
      relay.start().catch(reject);
    });
  } finally {
    clearInterval(timer);
  }
  const elapsedMs = performance.now() - startedAt;
  await relay.stop();
  line.done(`${total.toLocaleString('en-US')} in ${(elapsedMs / 1_000).toFixed(2)} s`);
  return elapsedMs;
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(`bench check failed: ${message}`);
}

async function drainOurs(env: BenchEnv, kind: TargetKind, s: DrainSettings, phase: string) {
  const setup = oursOutbox(env, { kind, phase, batchSize: s.batchSize });
  try {
    await preloadOurs(env, setup, workload(s.keys, s.events), s.events);
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
    return { ms, timing: setup.timing };
  } finally {
    await setup.close();
  }
}

async function drainReference(env: BenchEnv, kind: TargetKind, s: DrainSettings, phase: string) {
  const target = await referenceTarget(env, kind);
  try {
    await preloadReference(env, workload(s.keys, s.events), s.events, referenceSubject(env, phase));
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
    return { ms, timing: relay.timing };
  } finally {
    await target.close();
  }
}

/** Ours, then the reference, then the other way round, …: the order alternates between repeats. */
export function sidesInOrder(repeats: number): ('ours' | 'reference')[] {
  const order: ('ours' | 'reference')[] = [];
  for (let r = 0; r < repeats; r++)
    order.push(...(r % 2 === 0 ? (['ours', 'reference'] as const) : (['reference', 'ours'] as const)));
  return order;
}

/**
 * One row: ours and the reference draining the same backlog to the same target, `repeats`
 * times each in alternating order; the best time of each side counts (noise only slows down).
 */
export async function drainPostgres(env: BenchEnv, kind: TargetKind, s: DrainSettings): Promise<ResultRow> {
  const phase = `drain${kind}`;
  const best = { ours: Number.POSITIVE_INFINITY, reference: Number.POSITIVE_INFINITY };
  for (const side of sidesInOrder(s.repeats)) {
    await resetTables(env);
    await env.purgeStream();
    const { ms, timing } =
      side === 'ours' ? await drainOurs(env, kind, s, phase) : await drainReference(env, kind, s, phase);
    const table = side === 'ours' ? OURS_TABLE : REFERENCE_TABLE;
    check((await countRows(env, table)) === 0, `${side}: the ${table} table is not empty after the drain`);
    if (kind === 'nats') {
      const inStream = await env.streamMessages();
      check(inStream === s.events, `${side}: the stream holds ${inStream} messages, expected ${s.events}`);
    }
    process.stderr.write(`    ${side}: ${describeTiming(timing)}\n`);
    best[side] = Math.min(best[side], ms);
  }
  const rate = (ms: number) => s.events / (ms / 1_000);
  const target = kind === 'nats' ? 'JetStream' : 'in-process handler';
  return {
    scenario: `drain ${s.events.toLocaleString('en-US')} events (${s.keys} keys), PostgreSQL → ${target}`,
    unit: 'events/s',
    ours: rate(best.ours),
    reference: rate(best.reference),
    better: 'higher',
    bar: { kind: 'ratio-at-least', value: 1 },
  };
}
