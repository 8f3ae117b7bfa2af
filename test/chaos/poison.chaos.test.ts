/**
 * Chaos 6, poison: 2 relays under a steady load over 100 keys; midway, one event of a key is
 * refused by the destination every time it is tried (3 attempts, then a dead letter). Its key
 * follows the configured policy exactly, and the other keys do not notice:
 * - 'continue' (the default): the later events of the key wait while it retries — none is even
 *   handed to the broker before its dead-lettering — and then flow, in order.
 * - 'park' (here through a destination glob map): the dead letter keeps the key blocked — later
 *   events stay pending, never handed to the broker — until an operator acts: `retryDead` (the
 *   destination healed) delivers it and then the rest, in order; `discardDead` lets the rest go.
 * - Either way, commit→reception latency of the other keys after the poison stays within a
 *   generous bound of what it was before it.
 * Then the SKIP LOCKED broken relay must fail the same checker (order). On PostgreSQL and on
 * MariaDB: a `describe` each.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { OutboxEvent } from '../../src/index.js';
import { type LedgerEntry, percentile, type Reception, seededRandom } from '../../src/testing/index.js';
import { runSkipLocked } from '../fixtures/broken-relays.js';
import {
  chaosSeed,
  type DeadLetterPolicy,
  type Journal,
  type RelaySettings,
  sleep,
  summary,
  type Verdict,
  verify,
  waitUntil,
  writeLedger,
} from '../helpers/fleet.js';
import type { FleetDatabase } from '../helpers/fleet-databases.js';
import { fleetDatabases, fleetSuite, freshFleet, type ScenarioEnv } from '../helpers/fleet-scenarios.js';

const POISON_HEADER = 'x-chaos-poison';
const MAX_ATTEMPTS = 3;

/** The writers' events: key indexes 0 and 1 are the keys that get a poison event midway. */
const poisonKeys = ['poison-a', 'poison-b'];
const eventFor = (key: number, n: number): OutboxEvent => ({
  type: 'item.changed',
  aggregateType: 'item',
  aggregateId: poisonKeys[key] ?? `k${key}`,
  payload: { n },
});

/** p99 commit→first-reception latency of the ledger entries `keep` selects. */
function p99Latency(
  ledger: readonly LedgerEntry[],
  receptions: readonly Reception[],
  keep: (e: LedgerEntry) => boolean,
) {
  const first = new Map<string, number>();
  for (const r of receptions) if (!first.has(r.id)) first.set(r.id, r.at);
  const latencies = ledger
    .filter((e) => keep(e) && first.has(e.id))
    .map((e) => first.get(e.id)! - e.committedAt)
    .sort((a, b) => a - b);
  return percentile(latencies, 99);
}

/** First time any relay handed `id` to the broker (P line), or undefined. */
function firstPublish(journals: readonly Journal[], id: string): number | undefined {
  const times = journals.flatMap((j) =>
    j.events.filter((e) => e.kind === 'P' && e.id === id).map((e) => e.at),
  );
  return times.length > 0 ? Math.min(...times) : undefined;
}

/** When `id` was dead-lettered (D line), or undefined. */
function deadLetteredAt(journals: readonly Journal[], id: string): number | undefined {
  return journals.flatMap((j) => j.events.filter((e) => e.kind === 'D' && e.id === id).map((e) => e.at))[0];
}

interface PoisonRun {
  readonly ledger: readonly LedgerEntry[];
  /** Poison ids by key. */
  readonly poison: ReadonlyMap<string, string>;
  /** Ledger entries of each poison key after its poison event. */
  readonly later: ReadonlyMap<string, readonly LedgerEntry[]>;
  readonly latency: { beforeP99: number; afterP99: number };
}

/**
 * Starts 2 relays with `settings` (their destination refuses poison events), writes 4 s, commits
 * one poison event for each of `keys`, writes 5 s more, and stops the writers.
 */
async function poisonLoad<Pool>(
  env: ScenarioEnv<Pool>,
  setup: Awaited<ReturnType<typeof freshFleet>>,
  settings: RelaySettings,
  keys: readonly string[],
): Promise<{ poison: Map<string, string>; poisonAt: number }> {
  const { t, fleet } = setup;
  await fleet.startMany(2, settings);
  const writer = writeLedger({
    db: env.db,
    outbox: t.outbox,
    pool: env.pool,
    ledger: t.ledger,
    total: Number.MAX_SAFE_INTEGER,
    keys: 100,
    clients: 2,
    random: seededRandom(env.seed),
    ratePerSecond: 500,
    event: eventFor,
  });
  await sleep(4_000); // the last 2 s of it are the other keys' latency baseline
  const connection = await env.db.connect(env.pool);
  const poison = new Map<string, string>();
  try {
    for (const key of keys) {
      const event = { ...eventFor(0, -1), aggregateId: key, headers: { [POISON_HEADER]: '1' } };
      const [id] = await connection.commitEvents({ outbox: t.outbox, ledger: t.ledger }, [event]);
      poison.set(`item:${key}`, id!);
    }
  } finally {
    connection.release();
  }
  const poisonAt = Date.now();
  await sleep(5_000);
  writer.stop();
  await writer.done;
  return { poison, poisonAt };
}

function analyse(
  ledger: readonly LedgerEntry[],
  receptions: readonly Reception[],
  poison: ReadonlyMap<string, string>,
  poisonAt: number,
): PoisonRun {
  const later = new Map<string, LedgerEntry[]>();
  for (const [key, id] of poison) {
    const entries = ledger.filter((e) => e.key === key);
    later.set(key, entries.slice(entries.findIndex((e) => e.id === id) + 1));
  }
  const other = (e: LedgerEntry) => !poison.has(e.key);
  const latency = {
    // The 2 s before the poison (the first second of the load is the fleet settling in).
    beforeP99: p99Latency(
      ledger,
      receptions,
      (e) => other(e) && e.committedAt > poisonAt - 2_200 && e.committedAt < poisonAt - 200,
    ),
    afterP99: p99Latency(ledger, receptions, (e) => other(e) && e.committedAt > poisonAt),
  };
  return { ledger, poison, later, latency };
}

/** The other keys' latency is unaffected: within 3× (+100 ms of scheduling noise) of before. */
function expectLatencyUnaffected(run: PoisonRun): void {
  expect(run.latency.afterP99).toBeLessThanOrEqual(3 * run.latency.beforeP99 + 100);
}

for (const { db, skip } of await fleetDatabases()) {
  describe.skipIf(skip)(`chaos 6: a poison event on ${db.name}`, () => poisonTests(db));
}

function poisonTests(db: FleetDatabase): void {
  const suite = fleetSuite(
    'outbox_chaos_poison',
    {
      leaseTtlMs: 2_000,
      pollIntervalMs: 100,
      batchSize: 200,
      maxAttempts: MAX_ATTEMPTS,
      backoffBaseMs: 100,
      backoffCapMs: 200,
      refuseHeader: POISON_HEADER,
    },
    db,
  );

  it("'continue' (default): later events of the key wait while it retries, then flow in order after its dead-lettering", async () => {
    const env = suite.env('chaos poison continue');
    const setup = await freshFleet(env, 'poison-continue');
    const { t, fleet } = setup;
    try {
      const { poison, poisonAt } = await poisonLoad(env, setup, {}, ['poison-a']);
      const [[key, poisonId]] = [...poison] as [[string, string]];
      await waitUntil(
        async () => (await t.store.get(poisonId))?.status === 'dead',
        30_000,
        'the dead letter',
      );
      const ledger = await env.db.readLedger(env.pool, t.ledger);
      await t.collector.waitForDistinct(ledger.length - 1, 60_000);
      await Promise.all(fleet.running.map((r) => fleet.stop(r)));
      const journals = fleet.journals();
      const dead = (await t.store.get(poisonId))!;
      const verdict: Verdict = verify(ledger, t.collector.receptions, new Set([poisonId]));
      const run = analyse(ledger, t.collector.receptions, poison, poisonAt);
      const deadAt = deadLetteredAt(journals, poisonId)!;
      const later = run.later.get(key)!;
      const early = later.filter((e) => (firstPublish(journals, e.id) ?? Number.POSITIVE_INFINITY) < deadAt);
      console.log(
        `chaos poison continue on ${db.name}: ${JSON.stringify({ ...summary(verdict), poisonAttempts: dead.attempts, laterEventsOfKey: later.length, publishedBeforeDeadLetter: early.length, latency: run.latency })}`,
      );
      expect(dead.status).toBe('dead');
      expect(dead.attempts).toBe(MAX_ATTEMPTS);
      expect(dead.parked).toBe(false);
      expect(later.length).toBeGreaterThan(0);
      expect(early).toEqual([]); // while it retried, its key waited
      expect(verdict.lost).toBe(0); // …and then flowed: every later event of the key arrived
      expect(verdict.orderViolations).toBe(0);
      expectLatencyUnaffected(run);
    } finally {
      await t.close();
    }
  });

  it("'park' (glob map): the key stays blocked until an operator retries (delivered, then the rest in order) or discards", async () => {
    const env = suite.env('chaos poison park');
    const setup = await freshFleet(env, 'poison-park');
    const { t, fleet } = setup;
    const refuseFile = join(suite.dir, `refuse-${env.seed}`);
    writeFileSync(refuseFile, '');
    try {
      // A glob map (the stream's subjects are `<prefix>.item`): the destination decides the policy.
      const onDeadLetter: DeadLetterPolicy = { [`${t.collector.prefix}.*`]: 'park' };
      const { poison, poisonAt } = await poisonLoad(
        env,
        setup,
        { onDeadLetter, refuseWhileFile: refuseFile },
        ['poison-a', 'poison-b'],
      );
      const [a, b] = [...poison.values()] as [string, string];
      await waitUntil(
        async () => (await t.store.list({ status: 'dead' })).filter((e) => e.parked).length === 2,
        30_000,
        'two parked dead letters',
      );
      const ledger = await env.db.readLedger(env.pool, t.ledger);
      const run = analyse(ledger, t.collector.receptions, poison, poisonAt);
      const blocked = [...run.later.values()].flat();
      // Everything else arrives; the blocked keys' later events do not, however long we wait.
      await t.collector.waitForDistinct(ledger.length - 2 - blocked.length, 60_000);
      await sleep(2_000);
      const received = new Set(t.collector.receptions.map((r) => r.id));
      const journalsParked = fleet.journals();
      const leaked = blocked.filter(
        (e) => received.has(e.id) || firstPublish(journalsParked, e.id) !== undefined,
      );
      const stillPending = (await Promise.all(blocked.map((e) => t.store.get(e.id)))).filter(
        (e) => e?.status === 'pending',
      ).length;
      // The operator: the destination is healed, one dead letter retried, the other discarded.
      rmSync(refuseFile);
      expect(await t.store.retryDead([a])).toBe(1);
      expect(await t.store.discardDead([b])).toBe(1);
      await t.collector.waitForDistinct(ledger.length - 1, 60_000);
      await Promise.all(fleet.running.map((r) => fleet.stop(r)));
      const verdict = verify(ledger, t.collector.receptions, new Set([b]));
      console.log(
        `chaos poison park on ${db.name}: ${JSON.stringify({ ...summary(verdict), blockedLaterEvents: blocked.length, leaked: leaked.length, stillPending, latency: run.latency })}`,
      );
      expect(blocked.length).toBeGreaterThan(0);
      expect(leaked).toEqual([]);
      expect(stillPending).toBe(blocked.length);
      expect(verdict.lost).toBe(0); // the retried one and every later event arrived after the operator acted
      expect(verdict.orderViolations).toBe(0); // the retried poison first, then the rest of its key
      expectLatencyUnaffected(run);
    } finally {
      rmSync(refuseFile, { force: true });
      await t.close();
    }
  });

  it('the checker catches SKIP LOCKED without partitions: reordered', async () => {
    const { pool, schema } = suite;
    const r = await runSkipLocked({ db, pool, schema, seed: chaosSeed(`broken skip-locked on ${db.name}`) });
    console.log(`broken skip-locked on ${db.name}: ${JSON.stringify(summary(r))}`);
    expect(r.orderViolations).toBeGreaterThan(0);
  });
}
