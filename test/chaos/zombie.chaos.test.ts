/**
 * Chaos 2, zombie: of 4 relays, one sleeps between publish and settle on every batch
 * (failpoint relay.after-publish) and is SIGSTOPped inside that window, while it holds
 * partitions; it stays stopped past its lease TTL, the others take its partitions over, and it
 * is SIGCONTed → its settle is fenced (F lines in its journal), it starts no publish into a
 * partition another relay acquired meanwhile (P times against the others' 'acquired' times, same
 * machine clock), 0 lost, 0 out of order, duplicates only of what it had published unsettled.
 * Then the SKIP LOCKED broken relay — several workers with no ownership at all — must fail the
 * same checker (order), and with "crashes" after the broker's ack, show duplicates. On PostgreSQL
 * and on MariaDB: a `describe` each.
 */
import { describe, expect, it } from 'vitest';
import { runSkipLocked } from '../fixtures/broken-relays.js';
import { chaosSeed, summary } from '../helpers/fleet.js';
import type { FleetDatabase } from '../helpers/fleet-databases.js';
import { fleetDatabases, fleetSuite, zombie } from '../helpers/fleet-scenarios.js';

const LEASE_TTL_MS = 2_000;

for (const { db, skip } of await fleetDatabases()) {
  describe.skipIf(skip)(`chaos 2: zombie relay on ${db.name}`, () => zombieTests(db));
}

function zombieTests(db: FleetDatabase): void {
  const suite = fleetSuite(
    'outbox_chaos_zombie',
    { leaseTtlMs: LEASE_TTL_MS, pollIntervalMs: 100, batchSize: 200 },
    db,
  );

  it('SIGSTOP between publish and settle past the lease TTL, SIGCONT: fenced, no publish into a lost partition, 0 lost', async () => {
    const startedAt = Date.now();
    const r = await zombie(suite.env('chaos zombie'), {
      others: 3,
      keys: 500,
      writeRatePerSecond: 1_000,
      afterPublishSleepMs: 1_000,
      stoppedMs: Math.round(2.5 * LEASE_TTL_MS),
    });
    console.log(
      `chaos zombie on ${db.name}: ${JSON.stringify({ ...summary(r.verdict), heldAtStop: r.heldAtStop.length, inFlightAtStop: r.inFlightAtStop, fenced: r.fenced, zombieViolations: r.zombieViolations.length, ownershipViolations: r.ownership.length, unexplainedDuplicates: r.unexplainedDuplicates.length, seconds: (Date.now() - startedAt) / 1000 })}`,
    );
    expect(r.heldAtStop.length).toBeGreaterThan(0);
    expect(r.inFlightAtStop).toBeGreaterThan(0);
    expect(r.fenced).toBeGreaterThanOrEqual(1);
    expect(r.zombieViolations).toEqual([]);
    expect(r.ownership).toEqual([]);
    expect(r.verdict.lost).toBe(0);
    expect(r.verdict.orderViolations).toBe(0);
    expect(r.unexplainedDuplicates).toEqual([]);
    expect(r.exitCodes.every((c) => c === 0)).toBe(true);
  });

  it('the checker catches SKIP LOCKED without partitions: reordered, and duplicated after "crashes"', async () => {
    const { pool, schema } = suite;
    const seed = chaosSeed(`broken skip-locked on ${db.name}`);
    const r = await runSkipLocked({ db, pool, schema, seed, abandonShare: 0.1 });
    console.log(`broken skip-locked with crashes on ${db.name}: ${JSON.stringify(summary(r))}`);
    expect(r.orderViolations).toBeGreaterThan(0);
    expect(r.duplicates).toBeGreaterThan(0);
  });
}
