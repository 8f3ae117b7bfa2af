/**
 * A big backlog (1,000,000 events in a full run) drained by one relay in its own process to an
 * in-process handler, ours and the reference, with the relay process's resident memory sampled
 * every second (from /proc) and once when the drained count passes the mark (100,000, or a tenth
 * of a smaller backlog): nothing may load a backlog whole, so memory must stay flat after it.
 * The backlog is written fast: a template with add() (or the reference's INSERT), then copies
 * by INSERT … SELECT generate_series (bench/tables.ts), then VACUUM ANALYZE and a checkpoint.
 */
import type { BenchEnv } from '../env.js';
import { REFERENCE_TABLE } from '../reference-relay.js';
import { forkRelay, rssMb, timeChildrenDrain } from '../relay-children.js';
import { progress, type ResultRow } from '../report.js';
import {
  bulkPreloadOurs,
  bulkPreloadReference,
  countRows,
  OURS_TABLE,
  quiesce,
  resetTables,
} from '../tables.js';
import { oursOutbox, oursSubject, referenceSubject } from '../targets.js';
import { sidesInOrder } from '../timed-drain.js';
import { workload } from '../workload.js';

export interface BigDrainSettings {
  readonly events: number;
  readonly keys: number;
  readonly batchSize: number;
}

/** Issue 3: each relay's RSS stays under this, and flat after the first 100k events. */
const RSS_BAR_MB = 200;
/** "Flat": the RSS at the end is at most this multiple of the RSS at the mark. */
const FLAT_FACTOR = 1.1;
const MARK = 100_000;

interface Memory {
  readonly ms: number;
  /** RSS once connected, before the drain. */
  readonly idle: number;
  readonly peak: number;
  /** First sample at or past the mark, and how many were drained then. */
  readonly atMark: number;
  readonly markDrained: number;
  readonly maxAfterMark: number;
  readonly end: number;
}

async function drainSide(env: BenchEnv, side: 'ours' | 'reference', s: BigDrainSettings): Promise<Memory> {
  const phase = 'big';
  const mark = Math.min(MARK, Math.floor(s.events / 10));
  await resetTables(env);
  const w = workload(s.keys, Math.min(s.events, 1_000));
  const line = progress(`${side}: writing the backlog`);
  const show = (n: number) => line.update(`${n.toLocaleString('en-US')} rows`);
  const startedAt = performance.now();
  if (side === 'ours') {
    const writer = oursOutbox(env, { kind: 'inproc', phase, batchSize: s.batchSize });
    try {
      await bulkPreloadOurs(env, writer, w, s.events, show);
    } finally {
      await writer.close();
    }
  } else {
    await bulkPreloadReference(env, w, s.events, referenceSubject(env, phase), show);
  }
  await quiesce(env);
  line.done(
    `${s.events.toLocaleString('en-US')} rows in ${((performance.now() - startedAt) / 1_000).toFixed(1)} s`,
  );
  const child = forkRelay({
    side,
    kind: 'inproc',
    pgUrl: env.pgUrl,
    schema: env.schema,
    natsServers: env.natsServers,
    tag: env.tag,
    subject: oursSubject(env, phase),
    batchSize: s.batchSize,
    relayId: `bench-big-${side}`,
    record: false,
  });
  const samples: { drained: number; rss: number }[] = [];
  const sample = (drained: number) => {
    const rss = rssMb(child.pid);
    if (rss !== undefined) samples.push({ drained, rss });
  };
  let idle = Number.NaN;
  let ms: number;
  try {
    await child.ready();
    idle = rssMb(child.pid) ?? Number.NaN;
    let marked = false;
    child.go();
    ms = await timeChildrenDrain(`${side} → in-process, 1 relay process`, s.events, [child], {
      countLeft: () => countRows(env, side === 'ours' ? OURS_TABLE : REFERENCE_TABLE),
      tickMs: 1_000,
      onTick: sample,
      onProgress: (n) => {
        if (!marked && n >= mark) {
          marked = true;
          sample(n);
        }
      },
    });
  } finally {
    await child.stop().catch((e: unknown) => process.stderr.write(`    warning: ${String(e)}\n`));
  }
  const first = samples.find((x) => x.drained >= mark) ?? samples.at(-1)!;
  const after = samples.filter((x) => x.drained >= first.drained);
  const memory: Memory = {
    ms,
    idle,
    peak: Math.max(...samples.map((x) => x.rss)),
    atMark: first.rss,
    markDrained: first.drained,
    maxAfterMark: Math.max(...after.map((x) => x.rss)),
    end: samples.at(-1)!.rss,
  };
  process.stderr.write(
    `    ${side}: RSS idle ${idle.toFixed(1)} MB, at ${first.drained.toLocaleString('en-US')} drained ` +
      `${memory.atMark.toFixed(1)} MB, peak ${memory.peak.toFixed(1)} MB, end ${memory.end.toFixed(1)} MB ` +
      `(${samples.length} samples: ${samples.map((x) => Math.round(x.rss)).join(' ')})\n`,
  );
  return memory;
}

/** Three rows: drain rate, peak RSS (bar < 200 MB), RSS at the end against the mark (flat). */
export async function bigDrainScenario(env: BenchEnv, s: BigDrainSettings): Promise<ResultRow[]> {
  const result: Partial<Record<'ours' | 'reference', Memory>> = {};
  for (const side of sidesInOrder(1)) result[side] = await drainSide(env, side, s);
  const ours = result.ours!;
  const ref = result.reference!;
  const name = `drain ${s.events.toLocaleString('en-US')} events, 1 relay process, PostgreSQL → in-process handler`;
  const mark = (m: Memory) =>
    `${m.atMark.toFixed(0)} MB at ${m.markDrained.toLocaleString('en-US')} drained, max after ${m.maxAfterMark.toFixed(0)} MB`;
  return [
    {
      scenario: name,
      unit: 'events/s',
      ours: s.events / (ours.ms / 1_000),
      reference: s.events / (ref.ms / 1_000),
      better: 'higher',
    },
    {
      scenario: `${name}, relay process peak RSS`,
      unit: 'MB',
      ours: ours.peak,
      reference: ref.peak,
      better: 'lower',
      bar: { kind: 'value-at-most', value: RSS_BAR_MB },
      note: `sampled every second; idle (connected, before the drain): ours ${ours.idle.toFixed(0)} MB, reference ${ref.idle.toFixed(0)} MB`,
    },
    {
      scenario: `${name}, relay process RSS at the end`,
      unit: 'MB',
      ours: ours.end,
      reference: ref.end,
      better: 'lower',
      bar: {
        kind: 'check',
        text: `flat: ≤ ${FLAT_FACTOR}× RSS at the mark`,
        met: ours.end <= ours.atMark * FLAT_FACTOR,
      },
      note: `ours ${mark(ours)}; reference ${mark(ref)}`,
    },
  ];
}
