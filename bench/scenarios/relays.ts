/**
 * Several relays on one table, each in its own process (bench/relay-process.ts), sharing the
 * partitions through their leases. Timed: the same backlog drained by 1 and by N relays that
 * were started first and have split the partitions, the backlog landing in one commit
 * (bench/tables.ts stashes it and puts it back) and analysed, until the table is empty. Untimed, for order
 * only: a hand-over under load — one relay starts on the backlog, the others join when a tenth
 * is drained, and it gives partitions back to them mid-drain. Per-key order is checked against
 * the table's commit order: to JetStream in the stream's order; in-process by merging the
 * handlers' receptions on the machine's monotonic clock.
 */
import type { DeliveryResult, LedgerEntry } from '../../src/testing/index.js';
import type { BenchEnv } from '../env.js';
import { checkOrder, describeDelivery, streamIds } from '../order.js';
import { forkRelay, type RelayChild, timeChildrenDrain } from '../relay-children.js';
import type { Receptions } from '../relay-process.js';
import type { ResultRow } from '../report.js';
import {
  countRows,
  landStash,
  leaseOwners,
  ledgerOf,
  OURS_TABLE,
  preloadOurs,
  quiesce,
  resetTables,
  stash,
} from '../tables.js';
import { oursOutbox, oursSubject, type TargetKind } from '../targets.js';
import { check } from '../timed-drain.js';
import { workload } from '../workload.js';
import type { DrainSettings } from './drain.js';

export interface RelaysSettings extends DrainSettings {
  readonly relays: number;
}

/** Issue 3: N relays reach at least this share of one relay's drain rate, with 0 order violations. */
const SCALE_BAR = 0.9;
const BALANCE_TIMEOUT_MS = 60_000;
/** The hand-over run: the other relays join when this share of the backlog is drained. */
const JOIN_AT = 0.1;
/** …with a short lease TTL: heartbeats (where extras are given back) every second. */
const HAND_OVER_TTL_MS = 3_000;

interface Run {
  readonly ms: number;
  readonly delivery: DeliveryResult;
  readonly perRelay: number[];
  readonly fenced: number;
  /** Partitions given back or lost while draining. */
  readonly moved: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Receptions of several processes as one sequence: by time, then by each process's own order. */
function merge(all: readonly Receptions[]): string[] {
  const entries: [number, number, number][] = [];
  all.forEach((r, p) => {
    r.at.forEach((at, i) => {
      entries.push([at, p, i]);
    });
  });
  entries.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  return entries.map(([, p, i]) => all[p]!.ids[i]!);
}

/** Writes the backlog with add(); returns it in commit order. */
async function backlog(env: BenchEnv, s: DrainSettings, phase: string): Promise<LedgerEntry[]> {
  await resetTables(env);
  await env.purgeStream();
  const writer = oursOutbox(env, { kind: 'inproc', phase, batchSize: s.batchSize });
  try {
    await preloadOurs(env, writer, workload(s.keys, s.events), s.events);
  } finally {
    await writer.close();
  }
  return ledgerOf(env);
}

function forkRelays(
  env: BenchEnv,
  kind: TargetKind,
  s: DrainSettings,
  phase: string,
  n: number,
  leaseTtlMs?: number,
) {
  return Array.from({ length: n }, (_, i) =>
    forkRelay({
      side: 'ours',
      kind,
      pgUrl: env.pgUrl,
      schema: env.schema,
      natsServers: env.natsServers,
      tag: env.tag,
      subject: oursSubject(env, phase),
      batchSize: s.batchSize,
      relayId: `bench-relay-${i + 1}-of-${n}`,
      record: kind === 'inproc',
      leaseTtlMs,
    }),
  );
}

/** Waits until `n` relays hold every partition between them, as evenly as they can. */
async function balanced(env: BenchEnv, n: number): Promise<void> {
  const partitions = await countRows(env, `${OURS_TABLE}_leases`);
  const until = performance.now() + BALANCE_TIMEOUT_MS;
  for (;;) {
    const owners = await leaseOwners(env);
    const sum = owners.reduce((a, b) => a + b, 0);
    if (owners.length === n && sum === partitions && owners[0]! <= Math.ceil(partitions / n)) return;
    if (performance.now() > until)
      throw new Error(`${n} relays did not split the partitions: ${owners.join('/')}`);
    await sleep(100);
  }
}

/** Stops the children, then checks order (stream or merged receptions) against the ledger. */
async function finish(
  env: BenchEnv,
  kind: TargetKind,
  phase: string,
  ledger: readonly LedgerEntry[],
  children: readonly RelayChild[],
  ms: number,
): Promise<Run> {
  const moved = children.reduce((sum, c) => sum + c.counts.givenUp, 0);
  const perRelay = children.map((c) => c.counts.published);
  const fenced = children.reduce((sum, c) => sum + c.counts.fenced, 0);
  const stopped: Receptions[] = [];
  for (const result of await Promise.allSettled(children.map((c) => c.stop()))) {
    if (result.status === 'rejected') throw result.reason;
    stopped.push(result.value.receptions);
    check(result.value.errors === 0, `a relay reported ${result.value.errors} loop errors`);
  }
  const ids =
    kind === 'nats' ? await streamIds(env, `${oursSubject(env, phase)}.>`, ledger.length) : merge(stopped);
  const delivery = checkOrder(ledger, ids);
  process.stderr.write(
    `    ${describeDelivery(delivery)}; published per relay ${perRelay.join('/')}, ` +
      `${fenced} fenced, ${moved} partitions changed hands while draining\n`,
  );
  return { ms, delivery, perRelay, fenced, moved };
}

/** Timed: `n` relays split the partitions first, then the backlog lands in one commit. */
async function balancedRun(env: BenchEnv, kind: TargetKind, s: DrainSettings, n: number): Promise<Run> {
  const phase = `relays${kind}`;
  const ledger = await backlog(env, s, phase);
  await stash(env, OURS_TABLE);
  await quiesce(env);
  const children = forkRelays(env, kind, s, phase, n);
  let ms = Number.NaN;
  try {
    await Promise.all(children.map((c) => c.ready()));
    for (const c of children) c.go();
    await balanced(env, n);
    for (const c of children) c.counts.givenUp = 0; // the hand-overs of the start do not count
    // Fresh statistics, like every other drain (the burst scenario measures a relay without them).
    await landStash(env, OURS_TABLE, 'seq', { analyze: true });
    const label = `${n} relay process${n > 1 ? 'es' : ''} → ${kind}`;
    ms = await timeChildrenDrain(label, s.events, children, { countLeft: () => countRows(env, OURS_TABLE) });
  } finally {
    if (Number.isNaN(ms)) await Promise.allSettled(children.map((c) => c.stop()));
  }
  return finish(env, kind, phase, ledger, children, ms);
}

/**
 * Untimed: one relay starts on the backlog, the others join when a tenth of it is drained and
 * it gives them partitions back at its next heartbeat, mid-drain.
 */
async function handOverRun(env: BenchEnv, kind: TargetKind, s: DrainSettings, n: number): Promise<Run> {
  const phase = `handover${kind}`;
  const ledger = await backlog(env, s, phase);
  await quiesce(env);
  const children = forkRelays(env, kind, s, phase, n, HAND_OVER_TTL_MS);
  let ms = Number.NaN;
  try {
    await Promise.all(children.map((c) => c.ready()));
    children[0]!.go();
    let joined = false;
    ms = await timeChildrenDrain(`1 relay, then ${n - 1} more, → ${kind}`, s.events, children, {
      countLeft: () => countRows(env, OURS_TABLE),
      onProgress: (published) => {
        if (joined || published < s.events * JOIN_AT) return;
        joined = true;
        for (const c of children.slice(1)) c.go();
      },
    });
  } finally {
    if (Number.isNaN(ms)) await Promise.allSettled(children.map((c) => c.stop()));
  }
  return finish(env, kind, phase, ledger, children, ms);
}

/**
 * Two rows: N relays' drain rate against one relay's in the same harness, `repeats` times each
 * in alternating order, the best counting; and the order violations of every N-relay run.
 */
export async function relaysScenario(
  env: BenchEnv,
  kind: TargetKind,
  s: RelaysSettings,
): Promise<ResultRow[]> {
  const runs: Record<'one' | 'many', Run[]> = { one: [], many: [] };
  for (let r = 0; r < s.repeats; r++) {
    for (const which of r % 2 === 0 ? (['one', 'many'] as const) : (['many', 'one'] as const)) {
      runs[which].push(await balancedRun(env, kind, s, which === 'one' ? 1 : s.relays));
    }
  }
  const handOver = await handOverRun(env, kind, s, s.relays);
  const checked = [...runs.many, handOver];
  const rate = (list: Run[]) => s.events / (Math.min(...list.map((x) => x.ms)) / 1_000);
  const worst = (list: Run[], field: 'orderViolations' | 'lost' | 'duplicates') =>
    Math.max(...list.map((x) => x.delivery[field]));
  const violations = worst(checked, 'orderViolations');
  const lost = worst(checked, 'lost');
  const invalid = [violations > 0 ? `${violations} order violations` : '', lost > 0 ? `${lost} lost` : '']
    .filter(Boolean)
    .join(', ');
  const twice = (x: Run) => x.perRelay.reduce((a, b) => a + b, 0) - s.events;
  const target = kind === 'nats' ? 'JetStream' : 'in-process handler';
  const name = `drain ${s.events.toLocaleString('en-US')} events, ${s.relays} relay processes, PostgreSQL → ${target}`;
  const best = runs.many.reduce((a, b) => (b.ms < a.ms ? b : a));
  return [
    {
      scenario: name,
      unit: 'events/s',
      ours: rate(runs.many),
      reference: rate(runs.one),
      better: 'higher',
      bar: { kind: 'ratio-at-least', value: SCALE_BAR, invalid: invalid || undefined },
      note: `reference column: 1 relay process, same harness; relays started and balanced before the backlog landed; published per relay ${best.perRelay.join('/')}`,
    },
    {
      scenario: `${name}, per-key order violations`,
      unit: 'violations',
      ours: violations,
      reference: worst(runs.one, 'orderViolations'),
      better: 'lower',
      bar: { kind: 'value-at-most', value: 0 },
      note:
        `over ${runs.many.length} balanced run(s) and a hand-over run (${handOver.moved} partitions changed hands mid-drain, ` +
        `${twice(handOver)} events published twice, ${handOver.fenced} fenced); ${lost} lost; ` +
        `${worst(checked, 'duplicates')} duplicates received; reference column: 1 relay`,
    },
  ];
}
