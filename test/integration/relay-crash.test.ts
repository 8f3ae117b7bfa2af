/**
 * Crash: the relay runs as a child process and is SIGKILLed mid-batch five times, restarted
 * each time, on PostgreSQL and on MariaDB. Then: 0 lost, and every duplicate the consumer saw is
 * an event that was in flight (handed to the broker, not yet settled) at one of the kills.
 * JetStream's dedupe window is cut to its 100 ms minimum for this stream so that duplicates stay
 * visible to the check. A failpoint widens the window between the broker's ack and the settle,
 * so the kills do produce duplicates to count.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutbox } from '../../src/index.js';
import { checkDelivery, memoryPublisher, seededRandom } from '../../src/testing/index.js';
import type { FleetDatabase } from '../helpers/fleet-databases.js';
import { fleetDatabases } from '../helpers/fleet-scenarios.js';
import { startStreamCollector } from '../helpers/jetstream.js';
import { NATS_URL, uniqueName } from '../helpers/services.js';

// Every relay process still running, killed when the file ends whatever happened.
const children = new Set<ChildProcess>();
const fixture = new URL('../fixtures/crash-relay.mjs', import.meta.url).pathname;

function startRelay(
  args: string[],
  failpoints = '',
): { child: ChildProcess; ready: Promise<void>; exited: Promise<number | null> } {
  const env = { ...process.env, OUTBOX_FAILPOINTS: failpoints };
  const child = spawn(process.execPath, [fixture, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('lease acquired')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`relay exited early (${code})`)));
  });
  ready.catch(() => undefined);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, ready, exited };
}

function journalSets(path: string): { handed: Set<string>; settled: Set<string> } {
  const handed = new Set<string>();
  const settled = new Set<string>();
  if (!existsSync(path)) return { handed, settled };
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.startsWith('P ')) handed.add(line.slice(2));
    else if (line.startsWith('S ')) settled.add(line.slice(2));
  }
  return { handed, settled };
}

for (const { db, skip } of await fleetDatabases()) {
  describe.skipIf(skip)(`relay crash on ${db.name} (child process, SIGKILL)`, () => crashTests(db));
}

function crashTests(db: FleetDatabase): void {
  const schema = uniqueName('outbox_crash');
  const table = 'outbox';
  const dir = mkdtempSync(join(tmpdir(), 'outbox-crash-'));
  let pool: unknown;

  beforeAll(async () => {
    if (!existsSync(new URL('../../dist/index.js', import.meta.url)))
      throw new Error('dist/ is missing: run npm run build');
    pool = await db.openPool(4);
    await db.createSchema(pool, schema);
  });
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await db.dropSchema(pool, schema);
    await db.closePool(pool);
    rmSync(dir, { recursive: true, force: true });
  });

  it('5 SIGKILLs mid-batch: 0 lost; duplicates only among events in flight at a kill', async () => {
    const collector = await startStreamCollector(100); // the smallest dedupe window (100 ms): duplicates stay visible
    const store = db.store(pool, { schema, table });
    const outbox = createOutbox({
      database: store,
      publishers: { nats: memoryPublisher({ kind: 'nats' }) },
      routes: [{ destination: `${collector.prefix}.{aggregateType}` }],
    });
    await outbox.migrate();
    const ledger = await db.createLedger(pool, schema, table);
    const total = 30_000;
    const connection = await db.connect(pool);
    try {
      for (let i = 0; i < total; i += 1000) {
        const events = Array.from({ length: 1000 }, (_, j) => ({
          type: 'item.changed',
          aggregateType: 'item',
          aggregateId: `k${(i + j) % 300}`,
          payload: { n: i + j },
        }));
        await connection.commitEvents({ outbox, ledger }, events);
      }
    } finally {
      connection.release();
    }

    const random = seededRandom(3);
    const inFlightAtKills = new Set<string>();
    const args = (n: number) => [db.url, schema, table, NATS_URL, join(dir, `journal-${n}`)];
    try {
      for (let kill = 0; kill < 5; kill++) {
        // Widen the window between the broker's ack and the settle, so that kills land in it.
        const relay = startRelay(args(kill), 'relay.after-publish=sleep(300)');
        await relay.ready;
        // Kill mid-batch: once this relay has settled a first batch (its broker connection is up),
        // at a random moment after.
        const journal = join(dir, `journal-${kill}`);
        for (let waited = 0; journalSets(journal).settled.size === 0 && waited < 30_000; waited += 10) {
          await new Promise((r) => setTimeout(r, 10));
        }
        await new Promise((r) => setTimeout(r, random() * 300));
        relay.child.kill('SIGKILL');
        await relay.exited;
        const { handed, settled } = journalSets(join(dir, `journal-${kill}`));
        expect(handed.size, `relay ${kill} published before its kill`).toBeGreaterThan(0);
        for (const id of handed) if (!settled.has(id)) inFlightAtKills.add(id);
      }
      expect((await store.stats()).pending, 'a backlog remained at the last kill').toBeGreaterThan(0);
      const last = startRelay(args(5));
      await last.ready;
      await collector.waitForDistinct(total, 120_000);
      last.child.kill('SIGTERM');
      expect(await last.exited).toBe(0);
    } finally {
      await collector.close().catch(() => undefined);
    }
    const result = checkDelivery(await db.readLedger(pool, ledger), collector.receptions, new Set());
    const counts = new Map<string, number>();
    for (const r of collector.receptions) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    console.log(
      `crash on ${db.name}: ${JSON.stringify({ received: collector.receptions.length, lost: result.lost, duplicates: result.duplicates, duplicatedIds: duplicated.length, inFlightAtKills: inFlightAtKills.size, orderViolations: result.orderViolations })}`,
    );
    expect(result.lost).toBe(0);
    expect(result.orderViolations).toBe(0);
    expect(duplicated.length, 'kills inside the ack→settle window produce duplicates').toBeGreaterThan(0);
    expect(duplicated.filter((id) => !inFlightAtKills.has(id))).toEqual([]);
    expect((await store.stats()).pending).toBe(0);
  });
}
