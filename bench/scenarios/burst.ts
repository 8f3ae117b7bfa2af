/**
 * A burst after an idle spell, one relay in this process, to an in-process handler: the relay
 * starts on the empty table and polls it for a while (as a relay does between bursts), then
 * the whole backlog lands in one commit, with no ANALYZE after it — the statistics still say
 * "empty", as they do in production until autovacuum gets round to the table. Timed until
 * the table is empty, capped: a relay whose cached claim plan was made for the empty table
 * can take hours, and then its session is ended (by application_name) rather than waited for.
 */
import { type BenchEnv, endSessions, withApplicationName } from '../env.js';
import { REFERENCE_TABLE, ReferenceRelay } from '../reference-relay.js';
import { progress, type ResultRow } from '../report.js';
import {
  countRows,
  landStash,
  OURS_TABLE,
  preloadOurs,
  preloadReference,
  quiesce,
  resetTables,
  stash,
} from '../tables.js';
import { oursOutbox, referenceSubject, referenceTarget } from '../targets.js';
import { sidesInOrder } from '../timed-drain.js';
import { workload } from '../workload.js';
import type { DrainSettings } from './drain.js';

export interface BurstSettings extends DrainSettings {
  /** Give up after this long (s). */
  readonly capSeconds: number;
}

/** Long enough for our relay's adaptive polling to run its claim well over 5 times. */
const IDLE_MS = 2_000;

interface Burst {
  readonly ms: number;
  readonly drained: number;
  readonly capped: boolean;
}

interface Startable {
  start(): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function burst(
  env: BenchEnv,
  label: string,
  table: string,
  order: string,
  s: BurstSettings,
  relay: Startable,
  session: string,
): Promise<Burst> {
  await stash(env, table);
  await quiesce(env);
  const line = progress(label);
  await relay.start();
  try {
    await sleep(IDLE_MS);
    await landStash(env, table, order, { analyze: false });
    const startedAt = performance.now();
    const capAt = startedAt + s.capSeconds * 1_000;
    for (let lastLine = startedAt; ; await sleep(50)) {
      const left = await countRows(env, table);
      const now = performance.now();
      if (left === 0 || now > capAt) {
        const burst = { ms: now - startedAt, drained: s.events - left, capped: left > 0 };
        line.done(
          `${burst.drained.toLocaleString('en-US')}/${s.events.toLocaleString('en-US')} in ${(burst.ms / 1_000).toFixed(2)} s` +
            (burst.capped ? ` (cap reached; ${await endSessions(env.admin, session)} sessions ended)` : ''),
        );
        return burst;
      }
      if (now - lastLine > 1_000) {
        lastLine = now;
        line.update(`${(s.events - left).toLocaleString('en-US')}/${s.events.toLocaleString('en-US')}`);
      }
    }
  } finally {
    await relay.stop();
  }
}

async function oursBurst(env: BenchEnv, s: BurstSettings): Promise<Burst> {
  const session = `${env.schema}_burst`;
  const setup = oursOutbox(env, {
    kind: 'inproc',
    phase: 'burst',
    batchSize: s.batchSize,
    pgUrl: withApplicationName(env.pgUrl, session),
  });
  try {
    await preloadOurs(env, setup, workload(s.keys, s.events), s.events);
    const relay = setup.outbox.relay();
    relay.on('error', () => {});
    return await burst(env, 'ours → in-process', OURS_TABLE, 'seq', s, relay, session);
  } finally {
    await setup.close();
  }
}

async function referenceBurst(env: BenchEnv, s: BurstSettings): Promise<Burst> {
  const session = `${env.schema}_burstref`;
  const target = await referenceTarget(env, 'inproc');
  await preloadReference(env, workload(s.keys, s.events), s.events, referenceSubject(env, 'burst'));
  const relay = new ReferenceRelay({
    url: withApplicationName(env.pgUrl, session),
    schema: env.schema,
    batchSize: s.batchSize,
    target: target.target,
  });
  relay.on('loop-error', () => {});
  return burst(env, 'reference → in-process', REFERENCE_TABLE, 'id', s, relay, session);
}

export async function burstScenario(env: BenchEnv, s: BurstSettings): Promise<ResultRow> {
  const result: Partial<Record<'ours' | 'reference', Burst>> = {};
  for (const side of sidesInOrder(1)) {
    await resetTables(env);
    result[side] = side === 'ours' ? await oursBurst(env, s) : await referenceBurst(env, s);
  }
  const rate = (b: Burst) => b.drained / (b.ms / 1_000);
  const capped = (b: Burst) =>
    b.capped ? `only ${b.drained.toLocaleString('en-US')} drained in the ${s.capSeconds} s cap` : '';
  const ours = result.ours!;
  const reference = result.reference!;
  return {
    scenario: `burst of ${s.events.toLocaleString('en-US')} events after ${IDLE_MS / 1_000} s idle, no ANALYZE, 1 relay, PostgreSQL → in-process handler`,
    unit: 'events/s',
    ours: rate(ours),
    reference: rate(reference),
    better: 'higher',
    note:
      [capped(ours) && `ours: ${capped(ours)}`, capped(reference) && `reference: ${capped(reference)}`]
        .filter(Boolean)
        .join('; ') || 'statistics of the empty table, as between bursts in production',
  };
}
