/**
 * The fleet scenarios shared by the short versions in `npm test` (test/integration/relay-fleet.test.ts)
 * and the full ones in `npm run test:chaos` (test/chaos/): a kill storm, a zombie, a graceful
 * hand-over, a rebalance. Each runs relay processes against a fresh outbox table and stream, on
 * any of the databases of test/helpers/fleet-databases.ts, and returns what the test asserts on,
 * with the numbers it logs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { type Reception, seededRandom } from '../../src/testing/index.js';
import {
  chaosSeed,
  countRows,
  Fleet,
  heldPartitions,
  idsOf,
  type Journal,
  killAllRelays,
  type OwnershipViolation,
  ownershipViolations,
  type RelayProcess,
  type RelaySettings,
  readJournal,
  setupOutbox,
  sleep,
  type TestOutbox,
  unsettledIds,
  type Verdict,
  verify,
  waitUntil,
  writeLedger,
} from './fleet.js';
import { FLEET_DATABASES, type FleetDatabase, postgresFleet } from './fleet-databases.js';
import { natsSkip, uniqueName } from './services.js';

/**
 * Every database the fleet runs on, with why its tests skip (it or NATS is unreachable), for a
 * `describe` per database.
 */
export async function fleetDatabases(): Promise<{ db: FleetDatabase; skip: string | undefined }[]> {
  const databases = [];
  for (const db of FLEET_DATABASES)
    databases.push({ db, skip: (await db.skipReason()) ?? (await natsSkip()) });
  return databases;
}

export interface ScenarioEnv<Pool = pg.Pool> {
  readonly db: FleetDatabase<Pool>;
  readonly pool: Pool;
  readonly schema: string;
  /** A folder for the journals (each scenario makes its own inside). */
  readonly dir: string;
  readonly seed: number;
  readonly relay: RelaySettings & { leaseTtlMs: number; pollIntervalMs: number };
}

/** What every scenario reports besides its own numbers. */
export interface FleetOutcome {
  readonly verdict: Verdict;
  readonly journals: readonly Journal[];
  readonly ownership: readonly OwnershipViolation[];
  /** Exit codes of the relays stopped gracefully at the end (all must be 0). */
  readonly exitCodes: readonly (number | null)[];
}

export interface FleetSuite<Pool = pg.Pool> {
  readonly db: FleetDatabase<Pool>;
  readonly pool: Pool;
  readonly schema: string;
  readonly dir: string;
  /** The environment of one scenario run, with a fresh seed (printed) under `label`. */
  env(label: string): ScenarioEnv<Pool>;
}

/**
 * Registers the file's (or the `describe`'s) beforeAll/afterAll: a schema (a database on MariaDB)
 * of `db` (default PostgreSQL) and a journal folder for the scenarios, and, whatever happened,
 * every relay process killed and the schema dropped.
 */
export function fleetSuite(prefix: string, relay: ScenarioEnv['relay']): FleetSuite;
export function fleetSuite<Pool>(
  prefix: string,
  relay: ScenarioEnv['relay'],
  db: FleetDatabase<Pool>,
): FleetSuite<Pool>;
export function fleetSuite(
  prefix: string,
  relay: ScenarioEnv['relay'],
  db: FleetDatabase = postgresFleet,
): FleetSuite<unknown> {
  const schema = uniqueName(prefix);
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const suite = {
    db,
    pool: undefined as unknown,
    schema,
    dir,
    env: (label: string): ScenarioEnv<unknown> => ({
      db,
      pool: suite.pool,
      schema,
      dir,
      seed: chaosSeed(`${label} on ${db.name}`),
      relay,
    }),
  };
  beforeAll(async () => {
    suite.pool = await db.openPool(12);
    await db.createSchema(suite.pool, schema);
  });
  afterAll(async () => {
    killAllRelays();
    await db.dropSchema(suite.pool, schema);
    await db.closePool(suite.pool);
    rmSync(dir, { recursive: true, force: true });
  });
  return suite;
}

/**
 * A fresh outbox table, ledger and stream, and a fleet over them (none started). `pgUrl`: on
 * PostgreSQL, the relays' URL instead of the database's (the chaos tier adds `application_name`
 * to find the relays' sessions).
 */
export async function freshFleet<Pool>(
  env: ScenarioEnv<Pool>,
  label: string,
  fleetOptions: { pgUrl?: string; relay?: RelaySettings } = {},
): Promise<{ t: TestOutbox; fleet: Fleet }> {
  if (fleetOptions.pgUrl !== undefined && env.db.dialect !== 'postgres')
    throw new Error(`pgUrl is for PostgreSQL fleets, not ${env.db.name}`);
  const t = await setupOutbox(env.db, env.pool, env.schema);
  const dir = mkdtempSync(join(env.dir, `${label}-`));
  const relay = { ...env.relay, ...fleetOptions.relay };
  const dbUrl = fleetOptions.pgUrl ?? env.db.url;
  const fleet = new Fleet({ dbUrl, schema: env.schema, table: t.table, dir, relay });
  return { t, fleet };
}

/**
 * Stops every running relay gracefully, then reads the ledger, the journals and the verdict
 * (over the collector's receptions unless `receptions` are given).
 */
export async function conclude<Pool>(
  t: TestOutbox,
  fleet: Fleet,
  env: ScenarioEnv<Pool>,
  options: { receptions?: readonly Reception[]; deadIds?: ReadonlySet<string> } = {},
): Promise<FleetOutcome> {
  const exitCodes = await Promise.all(fleet.running.map((r) => fleet.stop(r)));
  await sleep(200); // a duplicate still on its way to the consumer
  const journals = fleet.journals();
  const ledger = await env.db.readLedger(env.pool, t.ledger);
  return {
    verdict: verify(ledger, options.receptions ?? t.collector.receptions, options.deadIds),
    journals,
    ownership: ownershipViolations(journals),
    exitCodes,
  };
}

/** Waits until the consumer has every event of the ledger, or `timeoutMs`. */
export async function drained<Pool>(t: TestOutbox, env: ScenarioEnv<Pool>, timeoutMs: number): Promise<void> {
  const committed = await countRows(env.db, env.pool, t.ledger);
  await t.collector.waitForDistinct(committed, Math.max(timeoutMs, 1));
}

// ---------------------------------------------------------------------------------------------

export interface KillStormOptions {
  readonly relays: number;
  readonly total: number;
  readonly keys: number;
  readonly kills: number;
  /** Default: as fast as the writers go. */
  readonly writeRatePerSecond?: number;
}

export interface KillStormOutcome extends FleetOutcome {
  readonly kills: readonly { at: number; victims: string[]; pending: number }[];
  /** Ids handed to the broker and not settled by a process that was then killed (or fenced). */
  readonly inFlightAtKills: ReadonlySet<string>;
  /** Duplicated ids that were not in flight at a kill: must be none. */
  readonly unexplainedDuplicates: readonly string[];
  /** From the last kill (or the last commit, if later) to the last event's first reception. */
  readonly drainMs: number;
  readonly writer: { committed: number; deadlocks: number; doneAt: number };
}

/**
 * `relays` relays; writers commit `total` events over `keys` keys while `kills` seeded SIGKILLs
 * hit 1–`relays` relays at a time, spread over the writing (kill k near k/kills of the events
 * committed, so they land on the backlog the previous kills left), each victim restarted after 0–2 s.
 */
export async function killStorm<Pool>(
  env: ScenarioEnv<Pool>,
  o: KillStormOptions,
): Promise<KillStormOutcome> {
  const random = seededRandom(env.seed);
  const { t, fleet } = await freshFleet(env, 'kill-storm');
  try {
    await fleet.startMany(o.relays);
    const writer = writeLedger({
      db: env.db,
      outbox: t.outbox,
      pool: env.pool,
      ledger: t.ledger,
      total: o.total,
      keys: o.keys,
      clients: 4,
      random,
      ratePerSecond: o.writeRatePerSecond,
    });
    let writesDoneAt = 0;
    void writer.done.then(() => {
      writesDoneAt = Date.now();
    });
    const kills: { at: number; victims: string[]; pending: number }[] = [];
    const killed: RelayProcess[] = [];
    const restarts: Promise<void>[] = [];
    for (let k = 0; k < o.kills; k++) {
      const mark = ((k + 0.1 + 0.8 * random()) / o.kills) * 0.95 * o.total;
      await waitUntil(() => writer.stats.committed >= mark, 300_000, `${Math.round(mark)} events committed`);
      // Every relay may be dead and waiting for its restart: a kill needs a victim.
      await waitUntil(() => fleet.running.length > 0, 10_000, 'a relay to kill');
      const running = fleet.running;
      const count = Math.min(running.length, 1 + Math.floor(random() * o.relays));
      const victims = [...running].sort(() => random() - 0.5).slice(0, count);
      const { pending } = await t.store.stats();
      kills.push({ at: Date.now(), victims: victims.map((v) => v.name), pending });
      await Promise.all(victims.map((v) => fleet.kill(v)));
      killed.push(...victims);
      for (const _ of victims) {
        const delay = random() * 2000;
        // Not awaiting ready: a relay still starting may well be the next kill's victim.
        restarts.push(sleep(delay).then(() => void fleet.start()));
      }
    }
    await writer.done;
    await Promise.all(restarts);
    await Promise.all(fleet.running.map((r) => r.ready));
    await drained(t, env, 120_000);
    const from = Math.max(kills[kills.length - 1]!.at, writesDoneAt);
    const drainMs = Math.max(...t.collector.receptions.map((r) => r.at)) - from;
    const outcome = await conclude(t, fleet, env);
    const inFlightAtKills = new Set<string>();
    for (const victim of killed)
      for (const id of unsettledIds(readJournal(victim.journal, victim.name))) inFlightAtKills.add(id);
    for (const j of outcome.journals) for (const id of idsOf(j, 'F')) inFlightAtKills.add(id);
    return {
      ...outcome,
      kills,
      inFlightAtKills,
      unexplainedDuplicates: outcome.verdict.duplicatedIds.filter((id) => !inFlightAtKills.has(id)),
      drainMs,
      writer: { committed: writer.stats.committed, deadlocks: writer.stats.deadlocks, doneAt: writesDoneAt },
    };
  } finally {
    await t.close();
  }
}

// ---------------------------------------------------------------------------------------------

export interface ZombieOptions {
  /** Healthy relays beside the zombie. */
  readonly others: number;
  readonly keys: number;
  readonly writeRatePerSecond: number;
  /** The zombie's `relay.after-publish` sleep: it is SIGSTOPped inside it. */
  readonly afterPublishSleepMs: number;
  /** How long it stays stopped (more than the lease TTL). */
  readonly stoppedMs: number;
}

export interface ZombieOutcome extends FleetOutcome {
  readonly zombie: string;
  /** Partitions the zombie held when stopped. */
  readonly heldAtStop: readonly number[];
  /** Ids it had published and not settled when stopped. */
  readonly inFlightAtStop: number;
  /** F lines in the zombie's journal. */
  readonly fenced: number;
  /** Publishes started by the zombie into a partition that another relay had acquired since. */
  readonly zombieViolations: readonly OwnershipViolation[];
  /** Duplicated ids that the zombie had not published unsettled: must be none. */
  readonly unexplainedDuplicates: readonly string[];
}

const lastLine = (j: Journal) => j.events[j.events.length - 1];

/** Waits until every partition is held by some relay and every relay holds some. */
async function leasesSpread(fleet: Fleet, partitions: number, timeoutMs: number): Promise<void> {
  await waitUntil(
    () => {
      const held = fleet.journals().map(heldPartitions);
      return held.every((h) => h.size > 0) && new Set(held.flatMap((h) => [...h])).size === partitions;
    },
    timeoutMs,
    'the partitions to spread over the relays',
  );
}

/**
 * A zombie: a relay whose every batch sleeps between publish and settle is SIGSTOPped inside
 * that window, stays stopped past its lease TTL while the others take its partitions over, and
 * is SIGCONTed: its settle must be fenced, and it must start no publish into a partition that
 * another relay acquired meanwhile.
 */
export async function zombie<Pool>(env: ScenarioEnv<Pool>, o: ZombieOptions): Promise<ZombieOutcome> {
  const random = seededRandom(env.seed);
  const { t, fleet } = await freshFleet(env, 'zombie');
  try {
    const z = fleet.start({ failpoints: `relay.after-publish=sleep(${o.afterPublishSleepMs})` });
    await z.ready;
    await fleet.startMany(o.others);
    // The zombie gives extras back at its (slow) batch boundaries: let every relay hold some first.
    await leasesSpread(fleet, (await t.store.leases()).length, 3 * env.relay.leaseTtlMs + 5_000);
    const writer = writeLedger({
      db: env.db,
      outbox: t.outbox,
      pool: env.pool,
      ledger: t.ledger,
      total: Number.MAX_SAFE_INTEGER,
      keys: o.keys,
      clients: 2,
      random,
      ratePerSecond: o.writeRatePerSecond,
    });
    // Stop it inside the window: its last line is a publish of a partition it still holds.
    await waitUntil(
      () => {
        const j = readJournal(z.journal, z.name);
        const last = lastLine(j);
        return last?.kind === 'P' && heldPartitions(j).has(last.partition);
      },
      30_000,
      'the zombie to publish a batch',
    );
    fleet.pause(z);
    const stoppedAt = Date.now();
    const atStop = readJournal(z.journal, z.name);
    const heldAtStop = [...heldPartitions(atStop)];
    const inFlight = unsettledIds(atStop);
    // Every partition it held is taken over by another relay (after its lease expired).
    await waitUntil(
      () => {
        const taken = new Set<number>();
        for (const j of fleet.journals()) {
          if (j.relay === z.name) continue;
          for (const l of j.leases)
            if (l.change === 'acquired' && l.at > stoppedAt) for (const p of l.leases) taken.add(p.partition);
        }
        return heldAtStop.every((p) => taken.has(p));
      },
      3 * env.relay.leaseTtlMs + 5_000,
      "the other relays to take the zombie's partitions",
    );
    await sleep(Math.max(0, stoppedAt + o.stoppedMs - Date.now()));
    fleet.resume(z);
    await waitUntil(
      () => idsOf(readJournal(z.journal, z.name), 'F').size > 0,
      3 * env.relay.leaseTtlMs,
      'a fenced settle by the zombie',
    );
    await fleet.stop(z); // it has shown what it does; its slow batches would only slow the drain
    writer.stop();
    await writer.done;
    await drained(t, env, 60_000);
    const outcome = await conclude(t, fleet, env);
    const zj = outcome.journals.find((j) => j.relay === z.name)!;
    const fencedIds = idsOf(zj, 'F');
    return {
      ...outcome,
      zombie: z.name,
      heldAtStop,
      inFlightAtStop: inFlight.size,
      fenced: fencedIds.size,
      zombieViolations: outcome.ownership.filter((v) => v.relay === z.name),
      unexplainedDuplicates: outcome.verdict.duplicatedIds.filter(
        (id) => !inFlight.has(id) && !fencedIds.has(id),
      ),
    };
  } finally {
    await t.close();
  }
}

// ---------------------------------------------------------------------------------------------

export interface HandOverOptions {
  readonly relays: number;
  readonly keys: number;
  readonly writeRatePerSecond: number;
  /** Writing time before the SIGTERM, and after it. */
  readonly beforeMs: number;
  readonly afterMs: number;
}

export interface HandOverOutcome extends FleetOutcome {
  readonly leaver: string;
  readonly leaverExit: number | null;
  readonly released: readonly number[];
  /** Per released partition: from the leaver's 'released' line to another relay's 'acquired' line. */
  readonly reownMs: readonly number[];
  /** Released partitions no other relay acquired. */
  readonly orphaned: readonly number[];
}

/**
 * `relays` relays under a steady write load; one is SIGTERMed mid-load. Its partitions must be
 * re-owned by the others within about one poll interval, and nothing may be published twice.
 */
export async function handOver<Pool>(env: ScenarioEnv<Pool>, o: HandOverOptions): Promise<HandOverOutcome> {
  const random = seededRandom(env.seed);
  const { t, fleet } = await freshFleet(env, 'hand-over');
  try {
    const relays = await fleet.startMany(o.relays);
    await leasesSpread(fleet, (await t.store.leases()).length, 3 * env.relay.leaseTtlMs + 5_000);
    const writer = writeLedger({
      db: env.db,
      outbox: t.outbox,
      pool: env.pool,
      ledger: t.ledger,
      total: Number.MAX_SAFE_INTEGER,
      keys: o.keys,
      clients: 2,
      random,
      ratePerSecond: o.writeRatePerSecond,
    });
    await sleep(o.beforeMs);
    const leaver = relays[Math.floor(random() * relays.length)]!;
    const sigtermAt = Date.now();
    const leaverExit = await fleet.stop(leaver);
    await sleep(o.afterMs);
    writer.stop();
    await writer.done;
    await drained(t, env, 60_000);
    const outcome = await conclude(t, fleet, env);
    const lj = outcome.journals.find((j) => j.relay === leaver.name)!;
    // What it gave back, and when: its last 'released' line; without one (a relay that does not
    // say so), what it held at its exit.
    const release = [...lj.leases].reverse().find((l) => l.change === 'released' && l.at >= sigtermAt);
    const released = release ? release.leases.map((l) => l.partition) : [...heldPartitions(lj)];
    const releasedAt = release?.at ?? leaver.exit!.at;
    const others = outcome.journals.filter((j) => j.relay !== leaver.name).flatMap((j) => j.leases);
    const reownMs: number[] = [];
    const orphaned: number[] = [];
    for (const p of released) {
      // After the SIGTERM, nobody else can have taken p but for the leaver giving it back.
      const takenAt = others
        .filter(
          (l) => l.change === 'acquired' && l.at >= sigtermAt && l.leases.some((x) => x.partition === p),
        )
        .map((l) => l.at)
        .sort((a, b) => a - b)[0];
      if (takenAt === undefined) orphaned.push(p);
      else reownMs.push(Math.max(0, takenAt - releasedAt));
    }
    return { ...outcome, leaver: leaver.name, leaverExit, released, reownMs, orphaned };
  } finally {
    await t.close();
  }
}

// ---------------------------------------------------------------------------------------------

export interface RebalanceOptions {
  readonly relays: number;
  readonly keys: number;
  readonly writeRatePerSecond: number;
  readonly everyMs: number;
  readonly durationMs: number;
}

export interface RebalanceOutcome extends FleetOutcome {
  readonly changes: readonly { at: number; stopped: string; exit: number | null; started: string }[];
}

/**
 * `relays` relays under a steady write load; every `everyMs` one of them (seeded pick) is
 * SIGTERMed and a new one started, for `durationMs`: leases move all the time.
 */
export async function rebalance<Pool>(
  env: ScenarioEnv<Pool>,
  o: RebalanceOptions,
): Promise<RebalanceOutcome> {
  const random = seededRandom(env.seed);
  const { t, fleet } = await freshFleet(env, 'rebalance');
  try {
    await fleet.startMany(o.relays);
    const writer = writeLedger({
      db: env.db,
      outbox: t.outbox,
      pool: env.pool,
      ledger: t.ledger,
      total: Number.MAX_SAFE_INTEGER,
      keys: o.keys,
      clients: 2,
      random,
      ratePerSecond: o.writeRatePerSecond,
    });
    const changes: { at: number; stopped: string; exit: number | null; started: string }[] = [];
    const startedAt = Date.now();
    for (let i = 1; i <= Math.floor(o.durationMs / o.everyMs); i++) {
      await sleep(Math.max(0, startedAt + i * o.everyMs - Date.now()));
      const running = fleet.running;
      const victim = running[Math.floor(random() * running.length)]!;
      const exit = await fleet.stop(victim);
      const started = fleet.start();
      changes.push({ at: Date.now(), stopped: victim.name, exit, started: started.name });
    }
    writer.stop();
    await writer.done;
    await Promise.all(fleet.running.map((r) => r.ready));
    await drained(t, env, 60_000);
    return { ...(await conclude(t, fleet, env)), changes };
  } finally {
    await t.close();
  }
}
