/**
 * Relay behaviour that spans the loop and the database: wake-ups (NOTIFY at commit on PostgreSQL,
 * local adds on SQLite), one owner at a time, and graceful stop.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, OutboxError, PermanentError, silentLogger } from '../../src/index.js';
import { PartitionLeases } from '../../src/relay/lease.js';
import { postgresStore } from '../../src/stores/postgres.js';
import { memoryPublisher } from '../../src/testing/index.js';
import { PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

const event = (i: number) => ({ type: 'order.created', aggregateType: 'order', aggregateId: String(i) });
// Polling alone would take a minute: anything sooner is a wake-up.
const IDLE = { pollIntervalMs: 60_000, logger: silentLogger };

describe('relay on SQLite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-relay-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('an add() in this process wakes the relay once its transaction has committed', async () => {
    const path = join(dir, 'wake.db');
    const publisher = memoryPublisher();
    const outbox = createOutbox({ database: `sqlite:${path}`, publishers: { memory: publisher } });
    await outbox.migrate();
    const db = new Database(path);
    const relay = outbox.relay(IDLE);
    try {
      await relay.start();
      await new Promise((r) => setTimeout(r, 100)); // the first (empty) poll is behind us
      db.transaction(() => outbox.add(fromBetterSqlite3(db), event(1)))();
      expect(await until(() => publisher.messages.length === 1, 10_000)).toBe(true);
    } finally {
      await outbox.close();
      db.close();
    }
  });

  it('stop() finishes the round in flight, settles it, and leaves the rest pending', async () => {
    const path = join(dir, 'stop.db');
    const publisher = memoryPublisher();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    publisher.behaviour = async () => {
      await gate;
      return undefined;
    };
    const outbox = createOutbox({ database: `sqlite:${path}`, publishers: { memory: publisher } });
    await outbox.migrate();
    const db = new Database(path);
    // Two events of one key: the second can only go in a second round.
    db.transaction(() => outbox.add(fromBetterSqlite3(db), [event(1), event(1)]))();
    const relay = outbox.relay(IDLE);
    await relay.start();
    await new Promise((r) => setTimeout(r, 100)); // round 1 is in flight, waiting at the gate
    const stopped = relay.stop();
    release();
    await stopped;
    expect(publisher.messages).toHaveLength(1);
    expect((await outbox.status()).pending).toBe(1);
    // The lease was released: another relay takes over at once.
    expect(await outbox.relay({ logger: silentLogger }).drain()).toMatchObject({ published: 1 });
    await outbox.close();
    db.close();
  });
});

describe('relay with real publishers and slow ones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-relay-http-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('an HTTP 400 dead-letters at once, with the status in the history; a 503 retries', async () => {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(req.url?.includes('bad') ? 400 : 503).end('nope'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const outbox = createOutbox({
      database: `sqlite:${join(dir, 'http.db')}`,
      publishers: { hook: { url: `http://127.0.0.1:${port}/{destination}` } },
    });
    await outbox.migrate();
    const db = new Database(join(dir, 'http.db'));
    try {
      const [bad, busy] = db.transaction(() =>
        outbox.add(fromBetterSqlite3(db), [
          { type: 'x', key: 'a', destination: 'bad' },
          { type: 'x', key: 'b', destination: 'busy' },
        ]),
      )();
      const report = await outbox.relay({ logger: silentLogger }).runOnce();
      expect(report.dead.map((d) => d.id)).toEqual([bad]);
      expect(report.retried.map((d) => d.id)).toEqual([busy]);
      const dead = await outbox.store.get(bad!);
      expect(dead).toMatchObject({ status: 'dead', attempts: 1 });
      expect(dead!.history[0]!.error).toMatch(/400/);
    } finally {
      await outbox.close();
      db.close();
      server.close();
    }
  });

  it('a publish() that never answers counts as a failure after publishTimeoutMs', async () => {
    const publisher = memoryPublisher();
    publisher.behaviour = () => new Promise(() => {}); // hangs forever
    const outbox = createOutbox({
      database: `sqlite:${join(dir, 'hang.db')}`,
      publishers: { memory: publisher },
    });
    await outbox.migrate();
    const db = new Database(join(dir, 'hang.db'));
    try {
      db.transaction(() => outbox.add(fromBetterSqlite3(db), event(1)))();
      const report = await outbox.relay({ publishTimeoutMs: 200, logger: silentLogger }).runOnce();
      expect(report.retried).toHaveLength(1);
      expect(report.retried[0]!.error).toMatch(/did not answer within 200 ms/);
    } finally {
      await outbox.close();
      db.close();
    }
  });
});

describe('relay stop() past its budget', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-relay-stop-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('returns on time, keeps the lease while the round finishes, then releases it', async () => {
    const path = join(dir, 'slow.db');
    const publisher = memoryPublisher();
    let release!: () => void;
    const gate = new Promise<undefined>((r) => {
      release = () => r(undefined);
    });
    publisher.behaviour = () => gate;
    const outbox = createOutbox({ database: `sqlite:${path}`, publishers: { memory: publisher } });
    await outbox.migrate();
    const db = new Database(path);
    try {
      db.transaction(() => outbox.add(fromBetterSqlite3(db), event(1)))();
      const relay = outbox.relay({ ...IDLE, shutdownTimeoutMs: 200 });
      await relay.start();
      await new Promise((r) => setTimeout(r, 100)); // the round is waiting at the gate
      const startedAt = Date.now();
      await relay.stop();
      expect(Date.now() - startedAt).toBeLessThan(2_000);
      const other = outbox.relay(IDLE);
      await expect(other.runOnce()).rejects.toSatisfy(
        (e) => e instanceof OutboxError && e.code === 'LEASE_HELD',
      );
      release();
      expect(await until(() => publisher.messages.length === 1, 5_000)).toBe(true);
      expect(await until(async () => (await outbox.status()).pending === 0, 5_000)).toBe(true);
      // The finished round gave the lease back: another relay takes over at once.
      expect(
        await until(
          async () =>
            await other.runOnce().then(
              () => true,
              () => false,
            ),
          5_000,
        ),
      ).toBe(true);
      await other.stop();
    } finally {
      await outbox.close();
      db.close();
    }
  });
});

const skip = await pgSkip();

describe.skipIf(skip)('relay on PostgreSQL', () => {
  const schema = uniqueName('outbox_relay');
  let pool: pg.Pool;
  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: PG_URL, max: 6 });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  });

  async function commit(outbox: ReturnType<typeof createOutbox>, n: number) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.add(fromPg(client), event(n));
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }

  it('NOTIFY at commit wakes an idle relay at once; with notify off (the default) it waits for its next poll', async () => {
    for (const notify of [true, false]) {
      const publisher = memoryPublisher();
      const outbox = createOutbox({
        database: postgresStore({ pool, schema, table: uniqueName('outbox'), notify }),
        publishers: { memory: publisher },
      });
      await outbox.migrate();
      const relay = outbox.relay(IDLE);
      try {
        await relay.start();
        // Idle for 2.2 s, the adaptive poll has backed off to sleeps of seconds (1, 2, 4 … ms).
        await new Promise((r) => setTimeout(r, 2200));
        await commit(outbox, 1);
        expect(await until(() => publisher.messages.length === 1, notify ? 10_000 : 1_000)).toBe(notify);
      } finally {
        await outbox.close();
      }
    }
  });

  it('two relays configured with the same relayId still never share the lease', async () => {
    const outbox = createOutbox({
      database: postgresStore({ pool, schema, table: uniqueName('outbox') }),
      publishers: { memory: memoryPublisher() },
      relay: { relayId: 'relay-1', logger: silentLogger },
    });
    await outbox.migrate();
    try {
      await outbox.relay().runOnce();
      await expect(outbox.relay().runOnce()).rejects.toSatisfy(
        (e) => e instanceof OutboxError && e.code === 'LEASE_HELD',
      );
    } finally {
      await outbox.close();
    }
  });

  it('works without prepared statements (for poolers that cannot keep them)', async () => {
    const publisher = memoryPublisher();
    const outbox = createOutbox({
      database: postgresStore({ pool, schema, table: uniqueName('outbox'), prepareStatements: false }),
      publishers: { memory: publisher },
    });
    await outbox.migrate();
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.add(fromPg(client, { prepareStatements: false }), [event(1), event(2)]);
      await outbox.add(fromPg(client, { prepareStatements: false }), event(3));
      await client.query('COMMIT');
      expect(await outbox.relay({ logger: silentLogger }).drain()).toMatchObject({ published: 3 });
      expect(publisher.messages.map((m) => m.aggregateId)).toEqual(['1', '2', '3']);
    } finally {
      client.release();
      await outbox.close();
    }
  });

  it('a relay that finds every partition held gets LEASE_HELD from runOnce', async () => {
    const outbox = createOutbox({
      database: postgresStore({ pool, schema, table: uniqueName('outbox') }),
      publishers: { memory: memoryPublisher() },
    });
    await outbox.migrate();
    const first = outbox.relay(IDLE);
    const acquired = once(first, 'lease');
    await first.start();
    await acquired;
    try {
      await expect(outbox.relay(IDLE).runOnce()).rejects.toSatisfy(
        (e) => e instanceof OutboxError && e.code === 'LEASE_HELD',
      );
    } finally {
      await outbox.close();
    }
  });

  it('releasing every lease waits for a take still in flight (else the take would win afterwards)', async () => {
    const store = postgresStore({ pool, schema, table: uniqueName('outbox') });
    // Takes answer 300 ms late: the release below starts while one is in flight.
    const slow = new Proxy(store, {
      get(target, property) {
        if (property === 'acquireLeases') {
          return async (...args: Parameters<typeof store.acquireLeases>) => {
            await new Promise((r) => setTimeout(r, 300));
            return target.acquireLeases(...args);
          };
        }
        const value = Reflect.get(target, property);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    await store.migrate();
    const leases = new PartitionLeases({
      store: slow,
      owner: 'leaving-relay',
      ttlMs: 10_000,
      acquireEveryMs: 100,
      log: silentLogger,
      logFields: {},
      onChange: () => {},
    });
    try {
      const taking = leases.maintain(true);
      await new Promise((r) => setTimeout(r, 100)); // the heartbeat is done, the take is in flight
      await leases.releaseAll();
      await taking;
      expect(
        (await store.leases()).filter((l) => l.owner === 'leaving-relay' && l.expiresAt !== null),
      ).toEqual([]);
    } finally {
      await leases.releaseAll();
      await store.close();
    }
  });

  it('a heartbeat that read the leases before a give-back does not adopt the given-back partitions again', async () => {
    const store = postgresStore({ pool, schema, table: uniqueName('outbox') });
    await store.migrate();
    let slowHeartbeats = false;
    let givenBack = false;
    const adoptedAfterGiveBack: number[] = [];
    // While the give-back is under way, heartbeats read the database at once and answer 300 ms late.
    const slow = new Proxy(store, {
      get(target, property) {
        if (property === 'heartbeat') {
          return async (...args: Parameters<typeof store.heartbeat>) => {
            const delayed = slowHeartbeats;
            const membership = await target.heartbeat(...args);
            if (delayed) await new Promise((r) => setTimeout(r, 300));
            return membership;
          };
        }
        const value = Reflect.get(target, property);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const leases = new PartitionLeases({
      store: slow,
      owner: 'giving-relay',
      ttlMs: 600, // a background heartbeat every 200 ms
      acquireEveryMs: 100,
      log: silentLogger,
      logFields: {},
      onChange: (event) => {
        if (event.change === 'released') givenBack = true;
        else if (event.change === 'acquired' && givenBack) adoptedAfterGiveBack.push(...event.partitions);
      },
      // Long enough for a background heartbeat to start (and read all 64 as ours) meanwhile.
      beforeGiveBack: async () => {
        slowHeartbeats = true;
        await new Promise((r) => setTimeout(r, 250));
      },
    });
    try {
      await leases.maintain(true);
      expect(leases.owned()).toHaveLength(64);
      await store.heartbeat('newcomer', 60_000); // a second live relay: the share drops to 32
      await leases.maintain(true); // heartbeat (share 32), then the give-back of 32
      slowHeartbeats = false;
      expect(adoptedAfterGiveBack).toEqual([]);
      const held = (await store.leases()).filter((l) => l.owner === 'giving-relay' && l.expiresAt !== null);
      expect(leases.owned()).toHaveLength(32);
      expect(held.map((l) => l.partition).sort((a, b) => a - b)).toEqual(leases.owned());
    } finally {
      await leases.releaseAll();
      await store.close();
    }
  });

  it('relays split the partitions into fair shares; a stopping relay gives its partitions back, re-owned within a poll interval', async () => {
    const outbox = createOutbox({
      database: postgresStore({ pool, schema, table: uniqueName('outbox') }),
      publishers: { memory: memoryPublisher() },
    });
    await outbox.migrate();
    const options = { leaseTtlMs: 900, pollIntervalMs: 50, logger: silentLogger };
    const relays = [outbox.relay(options), outbox.relay(options), outbox.relay(options)];
    const owned = () => relays.map((r) => r.partitions);
    const split = (parts: number[][], share: number) =>
      parts.flat().length === 64 &&
      new Set(parts.flat()).size === 64 &&
      parts.every((p) => p.length <= share);
    try {
      for (const relay of relays) await relay.start();
      // Fair share ceil(64 / 3) = 22, every partition owned once, within a few heartbeats.
      expect(
        await until(() => split(owned(), 22), 3 * 900),
        JSON.stringify(owned().map((p) => p.length)),
      ).toBe(true);
      await relays[2]!.stop();
      const stoppedAt = Date.now();
      expect(await until(() => split(owned().slice(0, 2), 32), 3 * 900)).toBe(true);
      // Given back at once and taken at the next attempt (every poll interval): no lease expiry.
      expect(Date.now() - stoppedAt).toBeLessThan(600);
    } finally {
      await outbox.close();
    }
  });

  it('a parked dead letter holds its key until an operator retries it; other keys and continued keys flow', async () => {
    const publisher = memoryPublisher();
    const outbox = createOutbox({
      database: postgresStore({ pool, schema, table: uniqueName('outbox') }),
      publishers: { memory: publisher },
      routes: [{ destination: '{aggregateType}.{aggregateId}' }],
      relay: { logger: silentLogger, onDeadLetter: { 'vip.*': 'park' } },
    });
    await outbox.migrate();
    const broken = new Set(['vip.1', 'std.1']);
    // The first event of vip.1 and of std.1 is refused for good.
    publisher.behaviour = (m) =>
      broken.has(m.destination) && JSON.parse(m.payload).n === 1 ? new PermanentError('refused') : undefined;
    const add = async (aggregateType: string, aggregateId: string, n: number) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await outbox.add(fromPg(client), { type: 'x.changed', aggregateType, aggregateId, payload: { n } });
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    for (const n of [1, 2, 3]) {
      await add('vip', '1', n);
      await add('std', '1', n);
      await add('std', '2', n);
    }
    const relay = outbox.relay();
    const seen = () => publisher.messages.map((m) => `${m.destination}#${JSON.parse(m.payload).n}`);
    try {
      await relay.drain();
      // std.1 under 'continue': its first event is dead, the key moves on; vip.1 under 'park': held.
      expect(seen()).toEqual(['std.2#1', 'std.2#2', 'std.2#3', 'std.1#2', 'std.1#3']);
      const parked = (await outbox.store.list({ status: 'dead' })).find((e) => e.destination === 'vip.1')!;
      expect(parked).toMatchObject({ parked: true });
      expect((await outbox.store.stats()).pending).toBe(2);
      // The operator fixes the consumer and retries the dead letter: the key resumes in order.
      broken.clear();
      publisher.clear();
      expect(await outbox.store.retryDead([parked.id])).toBe(1);
      await relay.drain();
      expect(seen()).toEqual(['vip.1#1', 'vip.1#2', 'vip.1#3']);
      expect(publisher.messages[0]!.id).toBe(parked.id);
    } finally {
      await outbox.close();
    }
  });
});
