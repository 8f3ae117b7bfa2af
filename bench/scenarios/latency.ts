/**
 * Commit → publish latency at a steady rate to JetStream, NOTIFY on: the relay under test runs
 * here, alone on this thread; the writers and the JetStream consumer run in a worker thread
 * (bench/load-worker.ts). Latency is measured at a real consumer of the stream, from the
 * writer's acknowledged COMMIT to the message's arrival; the first second is warm-up.
 */
import { Worker } from 'node:worker_threads';
import type { BenchEnv } from '../env.js';
import type { LoadMessage, LoadRequest, LoadResult } from '../load-worker.js';
import { ReferenceRelay } from '../reference-relay.js';
import { progress, type ResultRow } from '../report.js';
import { countRows, OURS_TABLE, quiesce, resetTables } from '../tables.js';
import { oursOutbox, oursSubject, referenceSubject, referenceTarget } from '../targets.js';
import { describeTiming } from '../timing.js';
import { sidesInOrder } from './drain.js';

export interface LatencySettings {
  readonly rate: number;
  readonly seconds: number;
  readonly batchSize: number;
  /** Runs per side, alternating order; percentiles are taken over all their samples. */
  readonly repeats: number;
}

const WRITERS = 8;
const WARMUP_SECONDS = 1;
/** The bar of issue 2: p99 at 2,000 events/s to JetStream. */
const P99_BAR_MS = 20;
const P99_BAR_RATE = 2_000;

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

function runLoad(request: LoadRequest, label: string): Promise<LoadResult> {
  const line = progress(label);
  const worker = new Worker(new URL('../load-worker.js', import.meta.url), { workerData: request });
  return new Promise<LoadResult>((resolve, reject) => {
    worker.on('message', (message: LoadMessage) => {
      if (message.kind === 'progress')
        line.update(`${message.committed} committed, ${message.received} received`);
      else if (message.kind === 'failed') reject(new Error(`${label}: ${message.error}`));
      else {
        const r = message.result;
        line.done(
          `${r.committed} committed, ${r.received} received, ${Math.round(r.achievedRate)}/s achieved, ` +
            `writers at most ${r.maxScheduleLagMs.toFixed(1)} ms behind schedule (at ${r.maxScheduleLagAtS.toFixed(1)} s), ` +
            `${r.early} arrived before COMMIT returned`,
        );
        resolve(r);
      }
    });
    worker.on('error', reject);
    worker.on('exit', (code) => reject(new Error(`${label}: load worker exited with ${code}`)));
  }).finally(() => void worker.terminate());
}

interface Run {
  readonly result: LoadResult;
}

/** Runs the relay of `side` while the worker writes and consumes; returns what the worker saw. */
async function measureRun(env: BenchEnv, side: 'ours' | 'reference', s: LatencySettings): Promise<Run> {
  const phase = `lat${s.rate}`;
  await resetTables(env);
  await env.purgeStream();
  await quiesce(env);
  const base = {
    side,
    pgUrl: env.pgUrl,
    schema: env.schema,
    natsServers: env.natsServers,
    stream: env.stream,
    rate: s.rate,
    seconds: s.seconds,
    warmupSeconds: WARMUP_SECONDS,
    writers: WRITERS,
    keys: 1_000,
  };
  const label = `${side} at ${s.rate}/s`;
  let result: LoadResult;
  if (side === 'ours') {
    const setup = oursOutbox(env, { kind: 'nats', phase, batchSize: s.batchSize });
    const relay = setup.outbox.relay();
    relay.on('error', () => {});
    try {
      await relay.start();
      result = await runLoad({ ...base, subject: oursSubject(env, phase), idPrefix: '' }, label);
      await relay.stop();
      process.stderr.write(`    ours: ${describeTiming(setup.timing)}\n`);
    } finally {
      await setup.close();
    }
    if ((await countRows(env, OURS_TABLE)) !== 0) throw new Error('ours: events left in the outbox');
  } else {
    const target = await referenceTarget(env, 'nats');
    const relay = new ReferenceRelay({
      url: env.pgUrl,
      schema: env.schema,
      batchSize: s.batchSize,
      target: target.target,
    });
    try {
      await relay.start();
      result = await runLoad(
        { ...base, subject: referenceSubject(env, phase), idPrefix: target.idPrefix },
        label,
      );
      await relay.stop();
      process.stderr.write(`    reference: ${describeTiming(relay.timing)}\n`);
    } finally {
      await target.close();
    }
  }
  if (result.received !== result.committed) {
    throw new Error(`${label}: ${result.committed} committed but ${result.received} received`);
  }
  process.stderr.write(`    ${side}: ${spread(result.latencies)}\n`);
  return { result };
}

function spread(latencies: readonly number[]): string {
  const sorted = [...latencies].sort((a, b) => a - b);
  const ps = [50, 90, 99, 99.9].map((p) => `p${p} ${percentile(sorted, p).toFixed(1)}`).join(', ');
  return `${ps}, max ${(sorted.at(-1) ?? Number.NaN).toFixed(1)} ms over ${sorted.length} events`;
}

interface Side {
  readonly p50: number;
  readonly p99: number;
  readonly achievedRate: number;
}

/** Percentiles over the samples of every run of one side. */
function pooled(runs: readonly Run[]): Side {
  const sorted = runs.flatMap((r) => r.result.latencies).sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    achievedRate: Math.min(...runs.map((r) => r.result.achievedRate)),
  };
}

/**
 * Two rows (p50, p99) for one rate: `repeats` runs per side in alternating order, percentiles
 * over all their samples together.
 */
export async function latencyScenario(env: BenchEnv, s: LatencySettings): Promise<ResultRow[]> {
  const runs: Record<'ours' | 'reference', Run[]> = { ours: [], reference: [] };
  for (const side of sidesInOrder(s.repeats)) runs[side].push(await measureRun(env, side, s));
  const ours = pooled(runs.ours);
  const reference = pooled(runs.reference);
  const name = `commit → JetStream consumer at ${s.rate.toLocaleString('en-US')}/s`;
  const note = (side: Side) =>
    side.achievedRate < s.rate * 0.95 ? `writers reached only ${Math.round(side.achievedRate)}/s` : '';
  const notes = [note(ours) && `ours: ${note(ours)}`, note(reference) && `reference: ${note(reference)}`];
  const rows: ResultRow[] = [
    { scenario: `${name}, p50`, unit: 'ms', ours: ours.p50, reference: reference.p50, better: 'lower' },
    {
      scenario: `${name}, p99`,
      unit: 'ms',
      ours: ours.p99,
      reference: reference.p99,
      better: 'lower',
      note: notes.filter(Boolean).join('; ') || undefined,
    },
  ];
  if (s.rate === P99_BAR_RATE) {
    const invalid = note(ours) ? `ours ran at ${Math.round(ours.achievedRate)}/s` : undefined;
    rows[1] = { ...rows[1]!, bar: { kind: 'value-at-most', value: P99_BAR_MS, invalid } };
  }
  return rows;
}
