/**
 * Chaos 1, kill storm: 4 relay processes, 50k events over 500 keys committed by 4 writers,
 * 10 seeded SIGKILLs of 1–4 relays at a time spread over the writing (each landing on the backlog
 * the previous ones left), each victim restarted after 0–2 s → 0 lost, 0 per-key order
 * violations, every duplicate an event a killed relay had handed to the broker and not settled,
 * no publish into a partition another relay had acquired since, and everything drained within
 * lease TTL + 10 s of the last kill (of the last commit, when the writers outlast the kills).
 * Then both broken relays run through the same checker and must fail it. On PostgreSQL and on
 * MariaDB: a `describe` each.
 */
import { describe, expect, it } from 'vitest';
import { runLastSeen, runSkipLocked } from '../fixtures/broken-relays.js';
import { chaosSeed, summary } from '../helpers/fleet.js';
import type { FleetDatabase } from '../helpers/fleet-databases.js';
import { fleetDatabases, fleetSuite, killStorm } from '../helpers/fleet-scenarios.js';

const LEASE_TTL_MS = 2_000;

for (const { db, skip } of await fleetDatabases()) {
  describe.skipIf(skip)(`chaos 1: kill storm on ${db.name}`, () => killStormTests(db));
}

function killStormTests(db: FleetDatabase): void {
  const suite = fleetSuite(
    'outbox_chaos_kill',
    { leaseTtlMs: LEASE_TTL_MS, pollIntervalMs: 100, batchSize: 200 },
    db,
  );

  it('4 relays, 50k events over 500 keys, 10 SIGKILLs of 1–4 relays: 0 lost, 0 out of order, duplicates only of in-flight ids', async () => {
    const startedAt = Date.now();
    const r = await killStorm(suite.env('chaos kill storm'), {
      relays: 4,
      total: 50_000,
      keys: 500,
      kills: 10,
    });
    console.log(
      `chaos kill storm on ${db.name}: ${JSON.stringify({ ...summary(r.verdict), inFlightAtKills: r.inFlightAtKills.size, unexplainedDuplicates: r.unexplainedDuplicates.length, drainMs: r.drainMs, ownershipViolations: r.ownership.length, writer: r.writer, seconds: (Date.now() - startedAt) / 1000 })}`,
    );
    console.log(`chaos kill storm kills on ${db.name}: ${JSON.stringify(r.kills)}`);
    expect(r.verdict.added).toBeGreaterThanOrEqual(50_000);
    expect(r.verdict.lost).toBe(0);
    expect(r.verdict.orderViolations).toBe(0);
    expect(r.unexplainedDuplicates).toEqual([]);
    expect(r.ownership).toEqual([]);
    expect(r.drainMs).toBeLessThanOrEqual(LEASE_TTL_MS + 10_000);
    expect(r.exitCodes.every((c) => c === 0)).toBe(true);
    expect(r.kills.filter((k) => k.pending > 0).length, 'kills that landed on a backlog').toBeGreaterThan(0);
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
    expect(lost.lost).toBe(lost.leftPending);
  });
}
