/**
 * What `outbox doctor` reports, and the parts of its checks every dialect shares: the schema
 * version, the indexes `migrate` creates, leases of relays that stopped heartbeating, and the
 * clock skew between this process and the database.
 */
import { describeError, OutboxError } from '../../core/errors.js';
import type { OutboxStats } from '../../core/ports.js';
import { formatAge } from '../commands/status.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One finding: what was checked, what was found (one line), and how to fix it (one line). */
export interface Check {
  /** Stable, for scripts: 'schema', 'indexes', 'leases', 'clock-skew', 'redis-aof.<publisher>', … */
  readonly id: string;
  readonly status: CheckStatus;
  readonly summary: string;
  /** null when nothing needs fixing. */
  readonly fix: string | null;
  readonly details?: Record<string, unknown>;
}

export interface DoctorOptions {
  /** A transaction open longer than this is reported (it holds back the cleanup of dead rows). */
  readonly longTransactionMs: number;
}

export const ok = (id: string, summary: string, details?: Record<string, unknown>): Check => ({
  id,
  status: 'ok',
  summary,
  fix: null,
  ...(details ? { details } : {}),
});

export function connectionFailed(error: unknown): Check {
  return {
    id: 'connection',
    status: 'fail',
    summary: `cannot reach the database: ${error instanceof Error ? error.message || error.name : String(error)}`,
    fix: 'check --db / OUTBOX_DATABASE_URL (or database.url in the config) and that the database is up',
  };
}

/** Runs one check; a check that cannot run (permissions, an old server) is a warning saying why. */
export async function attempt(id: string, check: () => Promise<Check | Check[]>): Promise<Check[]> {
  try {
    const result = await check();
    return Array.isArray(result) ? result : [result];
  } catch (error) {
    return [
      {
        id,
        status: 'warn',
        summary: `could not run this check: ${describeError(error)}`,
        fix: 'run doctor as a user that may read the database catalog and statistics views',
      },
    ];
  }
}

/**
 * The schema against this code. Returns the check and whether the outbox tables exist at all
 * (the checks that read them are skipped when they do not).
 */
export async function schemaCheck(
  checkSchema: () => Promise<void>,
  latest: number,
): Promise<{ check: Check; tables: boolean }> {
  try {
    await checkSchema();
    return { check: ok('schema', `schema version ${latest}, the one this code needs`), tables: true };
  } catch (error) {
    if (!(error instanceof OutboxError)) {
      const summary = `could not read the schema version: ${describeError(error)}`;
      const fix = 'check that this user may read the outbox tables, then run doctor again';
      return { check: { id: 'schema', status: 'fail', summary, fix }, tables: false };
    }
    const fix =
      error.code === 'SCHEMA_TOO_NEW'
        ? 'upgrade outbox (every relay and app) to the version that migrated this database'
        : error.code === 'SCHEMA_OUTDATED'
          ? 'run `outbox migrate` with the same --db/--config (safe while relays run)'
          : 'see docs/errors.md for this code';
    const current = Number(error.details?.current ?? error.details?.version ?? 0);
    return {
      check: { id: 'schema', status: 'fail', summary: `${error.code}: ${error.message}`, fix },
      tables: error.code !== 'SCHEMA_OUTDATED' || current > 0,
    };
  }
}

/** An index `migrate` creates: its table, its name, and the statement that (re)creates it. */
export interface ExpectedIndex {
  readonly table: string;
  readonly name: string;
  readonly create: string;
}

export function indexCheck(
  expected: readonly ExpectedIndex[],
  present: ReadonlySet<string>,
  invalid: readonly string[] = [],
): Check {
  const missing = expected.filter((i) => !present.has(i.name));
  if (missing.length === 0 && invalid.length === 0) {
    return ok('indexes', `all ${expected.length} indexes migrate creates are there`, {
      indexes: expected.map((i) => i.name),
    });
  }
  const fixes = [
    ...missing.map((i) => i.create),
    ...invalid.map((name) => `REINDEX INDEX CONCURRENTLY "${name}"`),
  ];
  const problems = [
    ...(missing.length > 0 ? [`missing: ${missing.map((i) => i.name).join(', ')}`] : []),
    ...(invalid.length > 0 ? [`invalid (a failed CREATE INDEX CONCURRENTLY): ${invalid.join(', ')}`] : []),
  ];
  return {
    id: 'indexes',
    status: 'fail',
    summary: `${problems.join('; ')}: the claim, settle or purge queries scan the table instead`,
    fix: fixes.join('; '),
    details: { missing: missing.map((i) => i.name), invalid },
  };
}

/** What the lease rows say, read with the database's own clock. */
export interface LeaseFindings {
  /** Owners whose leases expired without being taken over or released: partitions and how long ago. */
  readonly stale: readonly { owner: string; partitions: number[]; expiredMs: number }[];
  /** Relays whose registration is current. */
  readonly liveRelays: number;
  readonly heldPartitions: number;
  readonly partitions: number;
}

export function leaseCheck(findings: LeaseFindings, stats: OutboxStats): Check {
  const { stale, liveRelays, heldPartitions, partitions } = findings;
  if (stale.length > 0) {
    const count = stale.reduce((n, s) => n + s.partitions.length, 0);
    const who = stale
      .map((s) => `${s.owner} (${s.partitions.length} partitions, expired ${formatAge(s.expiredMs)} ago)`)
      .join(', ');
    const taken = liveRelays > 0;
    return {
      id: 'leases',
      status: taken ? 'warn' : 'fail',
      summary: taken
        ? `${count} partitions held by relays that stopped heartbeating: ${who}; ${liveRelays} live relays take them over at their next poll`
        : `${count} partitions held by relays that stopped heartbeating: ${who}; no live relay takes them over, so their ${stats.pending} pending events wait`,
      fix: taken
        ? 'if this stays, the live relays are at their fair share or cannot write the lease table: look at their logs'
        : 'start a relay (outbox relay); it takes the expired leases over at once. Find why the old one died (crash, OOM kill, SIGSTOP, network cut)',
      details: { stale, liveRelays },
    };
  }
  if (liveRelays === 0 && stats.pending > 0) {
    return {
      id: 'leases',
      status: 'warn',
      summary: `no relay is running and ${stats.pending} events are pending (lag ${formatAge(stats.oldestPendingAgeMs)})`,
      fix: 'start a relay: outbox relay --db … --broker …',
      details: { liveRelays, pending: stats.pending },
    };
  }
  return ok(
    'leases',
    `${liveRelays} live relays hold ${heldPartitions} of ${partitions} partitions; no stale lease`,
    {
      liveRelays,
      heldPartitions,
      partitions,
    },
  );
}

/** Warn above this difference between this machine's clock and the database's. */
export const MAX_CLOCK_SKEW_MS = 1000;

/**
 * Reads the database's clock three times and keeps the sample with the shortest round trip: the
 * skew is the database's time minus the midpoint of the local times around the query.
 */
export async function clockSkewCheck(readDatabaseMs: () => Promise<number>): Promise<Check> {
  let best: { skewMs: number; roundTripMs: number } | undefined;
  for (let i = 0; i < 3; i++) {
    const before = Date.now();
    const database = await readDatabaseMs();
    const after = Date.now();
    const sample = { skewMs: Math.round(database - (before + after) / 2), roundTripMs: after - before };
    if (!best || sample.roundTripMs < best.roundTripMs) best = sample;
  }
  const { skewMs, roundTripMs } = best!;
  // The database read its clock somewhere within the round trip: only what exceeds half of it counts.
  const beyond = Math.abs(skewMs) - roundTripMs / 2;
  const details = { skewMs, roundTripMs };
  if (beyond <= MAX_CLOCK_SKEW_MS)
    return ok('clock-skew', `this machine and the database agree within ${Math.abs(skewMs)} ms`, details);
  return {
    id: 'clock-skew',
    status: 'warn',
    summary: `the database's clock is ${Math.abs(skewMs)} ms ${skewMs > 0 ? 'ahead of' : 'behind'} this machine's: delayed events (availableAt), the status command's lease ages and the attempt history times disagree`,
    fix: 'run NTP (chrony or systemd-timesyncd) on both this machine and the database host',
    details,
  };
}

/** Statements in a migration's text, whitespace collapsed, for a one-line fix. */
export function oneLine(sql: string): string {
  return sql
    .replace(/--[^\n]*/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}
