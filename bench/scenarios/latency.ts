/**
 * Commit → publish latency at a steady rate: the relay under test runs here, alone on this
 * thread; the writers run in a worker thread (bench/load-worker.ts). To JetStream, latency is
 * measured at a real consumer of the stream (in the worker); to the in-process handler, at the
 * handler (here). Either way from the writer's acknowledged COMMIT to the arrival, on the
 * process-wide monotonic clock; the first second is warm-up. Ours runs with the default wake-up
 * (adaptive polling, no NOTIFY) and, at the bar's rate, with `notify: true`; the reference
 * always with its NOTIFY trigger.
 */
import { Worker } from 'node:worker_threads';
import { type BenchEnv, endSessions, withApplicationName } from '../env.js';
import type { LoadMessage, LoadRequest, LoadResult } from '../load-worker.js';
import { ReferenceRelay } from '../reference-relay.js';
import { formatNumber, progress, type ResultRow } from '../report.js';
import { quiesce, resetTables } from '../tables.js';
import { oursOutbox, oursSubject, referenceSubject, referenceTarget, type TargetKind } from '../targets.js';
import { clockMs, describeTiming } from '../timing.js';

export interface LatencySettings {
  readonly rate: number;
  readonly seconds: number;
  readonly batchSize: number;
  /** Runs per variant, alternating order; percentiles are taken over all their samples. */
  readonly repeats: number;
  readonly kind: TargetKind;
}

const WRITERS = 8;
const WARMUP_SECONDS = 1;
export const ARRIVAL_TIMEOUT_MS = 15_000;
/** Issue 3: p99 at 2,000 events/s, keeping up. */
const P99_BAR_RATE = 2_000;
const P99_BAR_MS: Record<TargetKind, number> = { inproc: 10, nats: 15 };

type Variant = 'ours' | 'ours-notify' | 'reference';

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function runLoad(request: LoadRequest, label: string): Promise<LoadResult> {
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
          `${r.committed} committed, ${Math.round(r.achievedRate)}/s achieved, ` +
            `writers at most ${r.maxScheduleLagMs.toFixed(1)} ms behind schedule (at ${r.maxScheduleLagAtS.toFixed(1)} s)`,
        );
        resolve(r);
      }
    });
    worker.on('error', reject);
    worker.on('exit', (code) => reject(new Error(`${label}: load worker exited with ${code}`)));
  }).finally(() => void worker.terminate());
}

interface Run {
  /** Arrived events' latencies, and Infinity for each measured event that never arrived. */
  readonly latencies: number[];
  readonly achievedRate: number;
  /** Measured events not published within ARRIVAL_TIMEOUT_MS of the end: the relay fell behind. */
  readonly missing: number;
}

/** Arrivals at the in-process handler: id → clockMs(). */
export type Arrivals = Map<string, number>;

/**
 * An in-process run's result with its latencies: the worker's commit times against the
 * handler's arrivals, waiting up to ARRIVAL_TIMEOUT_MS for the stragglers.
 */
export async function pairArrivals(result: LoadResult, arrivals: Arrivals): Promise<LoadResult> {
  const until = clockMs() + ARRIVAL_TIMEOUT_MS;
  while (arrivals.size < result.committed && clockMs() < until) await new Promise((r) => setTimeout(r, 20));
  const latencies: number[] = [];
  let missing = 0;
  for (const [id, at] of result.commits) {
    const arrived = arrivals.get(id);
    if (arrived === undefined) missing++;
    else latencies.push(Math.max(0, arrived - at));
  }
  return { ...result, latencies, missing, received: arrivals.size };
}

/** Runs the relay of `variant` while the worker writes (and, to JetStream, consumes). */
async function measureRun(env: BenchEnv, variant: Variant, s: LatencySettings): Promise<Run> {
  const phase = `lat${s.kind}${s.rate}`;
  await resetTables(env);
  await env.purgeStream();
  await quiesce(env);
  const arrivals: Arrivals = new Map();
  const arrive = (id: string) => arrivals.set(id, clockMs());
  const base = {
    pgUrl: env.pgUrl,
    schema: env.schema,
    natsServers: env.natsServers,
    stream: env.stream,
    rate: s.rate,
    seconds: s.seconds,
    warmupSeconds: WARMUP_SECONDS,
    writers: WRITERS,
    keys: 1_000,
    consumer: s.kind === 'nats' ? ('jetstream' as const) : ('none' as const),
  };
  const label = `${variant} → ${s.kind} at ${s.rate}/s`;
  let result: LoadResult;
  if (variant !== 'reference') {
    const notify = variant === 'ours-notify' ? true : undefined;
    const session = `${env.schema}_lat`;
    const setup = oursOutbox(env, {
      kind: s.kind,
      phase,
      batchSize: s.batchSize,
      notify,
      pgUrl: withApplicationName(env.pgUrl, session),
      record: (messages) => {
        for (const m of messages) arrive(m.id);
      },
    });
    const relay = setup.outbox.relay();
    relay.on('error', () => {});
    try {
      await relay.start();
      const request = {
        ...base,
        side: 'ours' as const,
        notify,
        subject: oursSubject(env, phase),
        idPrefix: '',
      };
      result = await runLoad(request, label);
      if (s.kind === 'inproc') result = await pairArrivals(result, arrivals);
      // A relay that fell far behind may be in a long claim: end it rather than wait.
      if (result.missing > 0) await endSessions(env.admin, session);
      await relay.stop();
      process.stderr.write(`    ${variant}: ${describeTiming(setup.timing)}\n`);
    } finally {
      await setup.close();
    }
  } else {
    const target = await referenceTarget(env, s.kind, arrive);
    const relay = new ReferenceRelay({
      url: env.pgUrl,
      schema: env.schema,
      batchSize: s.batchSize,
      target: target.target,
    });
    try {
      await relay.start();
      const request = {
        ...base,
        side: 'reference' as const,
        subject: referenceSubject(env, phase),
        idPrefix: target.idPrefix,
      };
      result = await runLoad(request, label);
      if (s.kind === 'inproc') result = await pairArrivals(result, arrivals);
      await relay.stop();
      process.stderr.write(`    reference: ${describeTiming(relay.timing)}\n`);
    } finally {
      await target.close();
    }
  }
  if (result.missing > 0)
    process.stderr.write(
      `    ${variant}: did not keep up: ${result.missing} measured events not published within ${ARRIVAL_TIMEOUT_MS / 1_000} s of the end\n`,
    );
  process.stderr.write(`    ${variant}: ${spread(result.latencies)}\n`);
  const never = Array.from({ length: result.missing }, () => Number.POSITIVE_INFINITY);
  return {
    latencies: [...result.latencies, ...never],
    achievedRate: result.achievedRate,
    missing: result.missing,
  };
}

export function spread(latencies: readonly number[]): string {
  const sorted = [...latencies].sort((a, b) => a - b);
  const ps = [50, 90, 99, 99.9].map((p) => `p${p} ${percentile(sorted, p).toFixed(1)}`).join(', ');
  return `${ps}, max ${(sorted.at(-1) ?? Number.NaN).toFixed(1)} ms over ${sorted.length} events`;
}

interface Pooled {
  readonly p50: number;
  readonly p99: number;
  readonly achievedRate: number;
  readonly missing: number;
}

/** Percentiles over the samples of every run of one variant. */
function pooled(runs: readonly Run[]): Pooled {
  const sorted = runs.flatMap((r) => r.latencies).sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    achievedRate: Math.min(...runs.map((r) => r.achievedRate)),
    missing: runs.reduce((sum, r) => sum + r.missing, 0),
  };
}

/** The variants of a run order: all of them, then the other way round, `repeats` times. */
function variantsInOrder(variants: readonly Variant[], repeats: number): Variant[] {
  const order: Variant[] = [];
  for (let r = 0; r < repeats; r++) order.push(...(r % 2 === 0 ? variants : [...variants].reverse()));
  return order;
}

/**
 * Rows for one rate and target: p50 and p99 of ours (default wake-up) against the reference,
 * and at the bar's rate a p99 row of ours with `notify: true`.
 */
export async function latencyScenario(env: BenchEnv, s: LatencySettings): Promise<ResultRow[]> {
  const atBar = s.rate === P99_BAR_RATE;
  const variants: Variant[] = atBar ? ['ours', 'reference', 'ours-notify'] : ['ours', 'reference'];
  const runs: Record<Variant, Run[]> = { ours: [], 'ours-notify': [], reference: [] };
  for (const v of variantsInOrder(variants, s.repeats)) runs[v].push(await measureRun(env, v, s));
  const ours = pooled(runs.ours);
  const reference = pooled(runs.reference);
  const target = s.kind === 'nats' ? 'JetStream consumer' : 'in-process handler';
  const name = `commit → ${target} at ${s.rate.toLocaleString('en-US')}/s`;
  const slow = (p: Pooled) =>
    [
      p.achievedRate < s.rate * 0.95 ? `writers reached only ${Math.round(p.achievedRate)}/s` : '',
      p.missing > 0
        ? `${p.missing} events not published within ${ARRIVAL_TIMEOUT_MS / 1_000} s of the end`
        : '',
    ]
      .filter(Boolean)
      .join(', ');
  const notes = (p: Pooled) =>
    [slow(p) && `ours: ${slow(p)}`, slow(reference) && `reference: ${slow(reference)}`]
      .filter(Boolean)
      .join('; ');
  const bar = (p: Pooled) =>
    atBar
      ? ({
          kind: 'value-at-most',
          value: P99_BAR_MS[s.kind],
          invalid: slow(p) ? 'did not keep up' : undefined,
        } as const)
      : undefined;
  const rows: ResultRow[] = [
    {
      scenario: `${name}, p50`,
      unit: 'ms',
      ours: ours.p50,
      reference: reference.p50,
      better: 'lower',
    },
    {
      scenario: `${name}, p99 (polling, no NOTIFY)`,
      unit: 'ms',
      ours: ours.p99,
      reference: reference.p99,
      better: 'lower',
      bar: bar(ours),
      note: ['reference with its NOTIFY trigger', notes(ours)].filter(Boolean).join('; '),
    },
  ];
  if (atBar) {
    const notify = pooled(runs['ours-notify']);
    rows.push({
      scenario: `${name}, p99 with notify: true`,
      unit: 'ms',
      ours: notify.p99,
      reference: reference.p99,
      better: 'lower',
      note: [`ours p50 ${formatNumber(notify.p50, 'ms')} ms`, notes(notify)].filter(Boolean).join('; '),
    });
  }
  return rows;
}
