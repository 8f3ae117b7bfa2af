/**
 * Chaos 4, rebalance: 4 relays under a steady write load; every 5 s one is stopped (SIGTERM) and
 * another started, for a minute, so partitions are given back and taken all the time → 0 lost,
 * 0 out of order, no publish into a partition another relay had acquired since, and (no crash, no
 * timeout) 0 duplicates. Then both broken relays must fail the same checker. On PostgreSQL and on
 * MariaDB: a `describe` each.
 */
import { describe, expect, it } from 'vitest';
import { runLastSeen, runSkipLocked } from '../fixtures/broken-relays.js';
import { chaosSeed, summary } from '../helpers/fleet.js';
import type { FleetDatabase } from '../helpers/fleet-databases.js';
import { fleetDatabases, fleetSuite, rebalance } from '../helpers/fleet-scenarios.js';

for (const { db, skip } of await fleetDatabases()) {
  describe.skipIf(skip)(`chaos 4: rebalance on ${db.name}`, () => rebalanceTests(db));
}

function rebalanceTests(db: FleetDatabase): void {
  const suite = fleetSuite(
    'outbox_chaos_rebalance',
    { leaseTtlMs: 2_000, pollIntervalMs: 100, batchSize: 200 },
    db,
  );

  it('every 5 s one relay stops and another starts, for 1 minute: 0 lost, 0 out of order', async () => {
    const startedAt = Date.now();
    const r = await rebalance(suite.env('chaos rebalance'), {
      relays: 4,
      keys: 500,
      writeRatePerSecond: 1_000,
      everyMs: 5_000,
      durationMs: 60_000,
    });
    console.log(
      `chaos rebalance on ${db.name}: ${JSON.stringify({ ...summary(r.verdict), changes: r.changes.length, ownershipViolations: r.ownership.length, seconds: (Date.now() - startedAt) / 1000 })}`,
    );
    expect(r.changes.length).toBe(12);
    expect(r.changes.every((c) => c.exit === 0)).toBe(true);
    expect(r.verdict.lost).toBe(0);
    expect(r.verdict.orderViolations).toBe(0);
    expect(r.verdict.duplicates).toBe(0);
    expect(r.ownership).toEqual([]);
    expect(r.exitCodes.every((c) => c === 0)).toBe(true);
  });

  it('the checker catches the broken relays: SKIP LOCKED without partitions reorders, "id > last seen" loses', async () => {
    const { pool, schema } = suite;
    const reordered = await runSkipLocked({
      db,
      pool,
      schema,
      seed: chaosSeed(`broken skip-locked on ${db.name}`),
    });
    const lost = await runLastSeen({ db, pool, schema, seed: chaosSeed(`broken last-seen on ${db.name}`) });
    console.log(`broken skip-locked on ${db.name}: ${JSON.stringify(summary(reordered))}`);
    console.log(
      `broken last-seen on ${db.name}: ${JSON.stringify({ ...summary(lost), leftPending: lost.leftPending })}`,
    );
    expect(reordered.orderViolations).toBeGreaterThan(0);
    expect(lost.lost).toBeGreaterThan(0);
  });
}
