/**
 * The store conformance suite: one contract, run unchanged against every real store
 * (test/integration/stores.test.ts calls it for SQLite and PostgreSQL). Each scenario goes
 * through the public API: add() on a real transaction, the store's relay-side methods, and
 * the relay itself where behaviour spans both.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../src/core/errors.js';
import type { OutboxEvent } from '../../src/core/event.js';
import type { Executor, Fence, Store } from '../../src/core/ports.js';
import { createOutbox, type Outbox, OutboxError, PermanentError, PublishError } from '../../src/index.js';
import { silentLogger } from '../../src/relay/logger.js';
import { memoryPublisher, seededRandom } from '../../src/testing/index.js';
import { countingExecutor } from '../helpers/counting.js';

export interface StoreHarness {
  /** A store on a fresh, migrated table (options passed through, e.g. retainPublished). */
  store(options?: { retainPublished?: boolean }): Promise<Store>;
  /** Runs `fn` in a real transaction on its own connection: COMMIT when it returns, ROLLBACK when it throws. */
  transaction<T>(store: Store, fn: (executor: Executor) => T | Promise<T>): Promise<T>;
  /** An executor on a connection that is NOT inside a transaction. */
  withoutTransaction<T>(store: Store, fn: (executor: Executor) => T | Promise<T>): Promise<T>;
  /** Inserts a business row through the executor, in the caller's transaction. */
  insertBusinessRow(executor: Executor, id: string): Promise<void> | void;
  /** Counts committed business rows with this id. */
  countBusinessRows(id: string): Promise<number>;
  close(): Promise<void>;
}

const order = (id: string | number, payload: unknown = { id }): OutboxEvent => ({
  type: 'order.created',
  aggregateType: 'order',
  aggregateId: String(id),
  payload,
});

async function expectCode(promise: () => unknown, code: ErrorCode): Promise<void> {
  try {
    await promise();
  } catch (error) {
    expect(error).toBeInstanceOf(OutboxError);
    expect((error as OutboxError).code).toBe(code);
    return;
  }
  throw new Error(`expected OutboxError ${code}, nothing was thrown`);
}

const LEASE = { owner: 'suite', ttl: 60_000 };
/** Partitions of the suite's tables (the default). */
const P = 64;
const ALL = Array.from({ length: P }, (_, i) => i);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function storeConformance(name: string, makeHarness: () => Promise<StoreHarness | string>): void {
  describe(`store conformance: ${name}`, () => {
    let h: StoreHarness;
    let skip: string | undefined;
    let store: Store;
    let outbox: Outbox;

    beforeAll(async () => {
      const made = await makeHarness();
      if (typeof made === 'string') skip = made;
      else h = made;
    });
    afterAll(async () => {
      await h?.close();
    });
    beforeEach(async (ctx) => {
      if (skip) ctx.skip(skip);
      store = await h.store();
      outbox = createOutbox({ database: store, relay: { logger: silentLogger } });
    });

    async function addCommitted(events: OutboxEvent | OutboxEvent[]): Promise<string[]> {
      return h.transaction(store, async (exec) => {
        const ids = await outbox.add(exec as never, events as never);
        return Array.isArray(ids) ? ids : [ids as string];
      });
    }

    /** Every due event of every partition. */
    function claimAll(limit: number) {
      return store.claim(ALL, limit);
    }

    /** A lone relay's fence: it takes every partition. */
    async function lease(owner = LEASE.owner): Promise<Fence> {
      await store.heartbeat(owner, LEASE.ttl);
      const leases = await store.acquireLeases(owner, LEASE.ttl);
      expect(leases.map((l) => l.partition)).toEqual(ALL);
      return { owner, leases };
    }

    it('migrate is idempotent: a second run applies nothing', async () => {
      const again = await store.migrate();
      expect(again.applied).toEqual([]);
      expect(again.from).toBe(again.to);
      await store.checkSchema();
    });

    it('a committed event is visible with every field; a rolled-back one is not', async () => {
      const [id] = await addCommitted({
        ...order('c1', { total: 42, items: ['a', 'é', '🙂'] }),
        headers: { 'x-tenant': 'acme' },
      });
      await expect(
        h.transaction(store, async (exec) => {
          await outbox.add(exec as never, order('r1') as never);
          throw new Error('rollback');
        }),
      ).rejects.toThrow('rollback');
      const claimed = await claimAll(10);
      expect(claimed.map((e) => e.id)).toEqual([id]);
      const e = claimed[0]!;
      expect(e).toMatchObject({
        key: 'order:c1',
        type: 'order.created',
        aggregateType: 'order',
        aggregateId: 'c1',
        destination: 'events.order.order.created',
        headers: { 'x-tenant': 'acme' },
        attempts: 0,
        history: [],
      });
      expect(JSON.parse(e.payload)).toEqual({ total: 42, items: ['a', 'é', '🙂'] });
      expect(e.createdAt).toBeInstanceOf(Date);
      expect(Math.abs(e.createdAt.getTime() - Date.now())).toBeLessThan(60_000);
      expect(e.keyHash).toBeGreaterThanOrEqual(0);
      expect(e.keyHash).toBeLessThan(2 ** 32);
    });

    it('a batch is one statement, keeps its order, and returns the ids', async () => {
      const events = Array.from({ length: 50 }, (_, i) => order(`b${i % 5}`, { i }));
      const ids = await h.transaction(store, async (exec) => {
        const counting = countingExecutor(exec);
        const result = await outbox.add(counting as never, events as never);
        expect(counting.statements).toBe(1);
        return result as unknown as string[];
      });
      expect(ids).toHaveLength(50);
      const claimed = await claimAll(100);
      expect(claimed.map((e) => e.id)).toEqual(ids);
      expect(claimed.map((e) => JSON.parse(e.payload).i)).toEqual(events.map((_, i) => i));
      expect(await addCommitted([])).toEqual([]);
    });

    it('settle deletes published events by default', async () => {
      const ids = await addCommitted([order(1), order(2)]);
      const token = await lease();
      expect(await store.settle({ published: ids, retry: [], dead: [] }, token)).toEqual({ fenced: [] });
      expect(await claimAll(10)).toEqual([]);
      expect(await store.get(ids[0]!)).toBeUndefined();
    });

    it('retention keeps published events until purge', async () => {
      store = await h.store({ retainPublished: true });
      outbox = createOutbox({ database: store });
      const ids = await addCommitted([order(1), order(2)]);
      const token = await lease();
      await store.settle({ published: ids, retry: [], dead: [] }, token);
      expect(await claimAll(10)).toEqual([]);
      const kept = await store.get(ids[0]!);
      expect(kept?.status).toBe('published');
      expect(kept?.publishedAt).toBeInstanceOf(Date);
      expect((await store.stats()).published).toBe(2);
      expect(await store.purge(60_000)).toBe(0);
      await new Promise((r) => setTimeout(r, 20));
      expect(await store.purge(1)).toBe(2);
      expect(await store.get(ids[0]!)).toBeUndefined();
    });

    it('purge with a limit deletes at most that many in one go (the background cleanup paces itself)', async () => {
      store = await h.store({ retainPublished: true });
      outbox = createOutbox({ database: store });
      const ids = await addCommitted(Array.from({ length: 5 }, (_, i) => order(i)));
      await store.settle({ published: ids, retry: [], dead: [] }, await lease());
      await sleep(20);
      expect(await store.purge(1, 2)).toBe(2);
      expect((await store.stats()).published).toBe(3);
      expect(await store.purge(1, 10)).toBe(3);
      expect(await store.purge(1, 10)).toBe(0);
      await expectCode(() => store.purge(1, 0), 'INVALID_CONFIG');
    });

    it('list filters by status, destination, type and creation time, in seq order', async () => {
      const user = (id: string) => ({ type: 'user.joined', aggregateType: 'user', aggregateId: id });
      const [o1, u1, o2] = await addCommitted([order(1), user('u1'), order(2)]);
      await sleep(20);
      const since = new Date();
      await sleep(20);
      const [u2] = await addCommitted([user('u2')]);
      const fence = await lease();
      const dead = (id: string) => ({ id, attempts: 1, error: 'no', history: [], delayMs: 0 });
      await store.settle({ published: [], retry: [], dead: [dead(o1!), dead(u1!), dead(u2!)] }, fence);
      const ids = async (filter: Parameters<Store['list']>[0]) => (await store.list(filter)).map((e) => e.id);
      expect(await ids({})).toEqual([o1, u1, o2, u2]);
      expect(await ids({ status: 'dead' })).toEqual([o1, u1, u2]);
      expect(await ids({ status: 'dead', type: 'user.joined' })).toEqual([u1, u2]);
      expect(await ids({ destination: 'events.order.order.created' })).toEqual([o1, o2]);
      expect(await ids({ status: 'dead', destination: 'events.order.order.created' })).toEqual([o1]);
      expect(await ids({ status: 'dead', createdSince: since })).toEqual([u2]);
      expect(await ids({ status: 'dead', type: 'user.joined', createdSince: since, limit: 5 })).toEqual([u2]);
      expect(await ids({ status: 'dead', limit: 2 })).toEqual([o1, u1]);
      expect(await ids({ type: 'nothing.like.this' })).toEqual([]);
      await expectCode(() => store.list({ createdSince: new Date(Number.NaN) }), 'INVALID_CONFIG');
    });

    it('a retry records attempts and history, waits its delay, and holds back only its own key', async () => {
      const [a1, a2, b1] = await addCommitted([order('A', 1), order('A', 2), order('B', 1)]);
      const token = await lease();
      const history = [{ at: new Date().toISOString(), error: 'boom', relay: 'suite' }];
      await store.settle(
        {
          published: [],
          retry: [{ id: a1!, attempts: 1, error: 'boom', history, delayMs: 60_000 }],
          dead: [],
        },
        token,
      );
      // A1 waits a minute; A2 is behind it; B flows.
      expect((await claimAll(10)).map((e) => e.id)).toEqual([b1]);
      const record = await store.get(a1!);
      expect(record).toMatchObject({ status: 'pending', attempts: 1, lastError: 'boom', history });
      expect(record!.availableAt.getTime()).toBeGreaterThan(Date.now() + 50_000);
      const stats = await store.stats();
      expect(stats).toMatchObject({ pending: 3, retrying: 1, dead: 0 });
      // Due again at once: A1 then A2, in order.
      await store.settle(
        { published: [], retry: [{ id: a1!, attempts: 2, error: 'boom2', history, delayMs: 0 }], dead: [] },
        token,
      );
      expect((await claimAll(10)).map((e) => e.id)).toEqual([a1, a2, b1]);
    });

    it('a dead letter is kept with its history and no longer holds back its key', async () => {
      const [a1, a2] = await addCommitted([order('A', 1), order('A', 2)]);
      const token = await lease();
      const history = [{ at: new Date().toISOString(), error: 'rejected', relay: 'suite' }];
      await store.settle(
        {
          published: [],
          retry: [],
          dead: [{ id: a1!, attempts: 1, error: 'rejected', history, delayMs: 0 }],
        },
        token,
      );
      expect((await claimAll(10)).map((e) => e.id)).toEqual([a2]);
      expect(await store.get(a1!)).toMatchObject({
        status: 'dead',
        attempts: 1,
        lastError: 'rejected',
        history,
      });
      expect((await store.list({ status: 'dead' })).map((e) => e.id)).toEqual([a1]);
      expect((await store.stats()).dead).toBe(1);
    });

    it('a delayed event is not claimed before its time and holds back its key', async () => {
      const later = new Date(Date.now() + 60_000);
      const [d1, d2, c1] = await addCommitted([
        { ...order('D', 1), availableAt: later },
        order('D', 2),
        order('C', 1),
      ]);
      expect((await claimAll(10)).map((e) => e.id)).toEqual([c1]);
      expect((await store.get(d1!))!.availableAt.getTime()).toBe(later.getTime());
      const [p1] = await addCommitted({ ...order('P', 1), availableAt: new Date(Date.now() - 1000) });
      expect((await claimAll(10)).map((e) => e.id)).toEqual([c1, p1]);
      expect(d2).toBeDefined();
    });

    it('claim respects its limit and takes the oldest first', async () => {
      const ids = await addCommitted(Array.from({ length: 30 }, (_, i) => order(i)));
      expect((await claimAll(7)).map((e) => e.id)).toEqual(ids.slice(0, 7));
    });

    it('claim leaves out the events in flight and takes the next ones, in order', async () => {
      const ids = await addCommitted(Array.from({ length: 12 }, (_, i) => order(`k${i % 3}`, { n: i })));
      const first = await claimAll(5);
      expect(first.map((e) => e.id)).toEqual(ids.slice(0, 5));
      const next = await store.claim(ALL, 5, first);
      expect(next.map((e) => e.id)).toEqual(ids.slice(5, 10));
      expect((await store.claim(ALL, 100, [...first, ...next])).map((e) => e.id)).toEqual(ids.slice(10));
    });

    it('relays share the partitions: fair shares, expiry hands over with a new epoch, release frees at once', async () => {
      // r1 alone takes every partition.
      expect((await store.heartbeat('r1', 300)).relays).toBe(1);
      const r1 = await store.acquireLeases('r1', 300);
      expect(r1).toHaveLength(P);
      // r2 joins: nothing is free yet; r1 learns of it at its heartbeat and gives back half.
      const joined = await store.heartbeat('r2', 60_000);
      expect(joined).toEqual({ partitions: P, relays: 2, held: [] });
      expect(await store.acquireLeases('r2', 60_000)).toEqual([]);
      const seen = await store.heartbeat('r1', 300);
      expect(seen.relays).toBe(2);
      expect(seen.held).toEqual(r1);
      await store.releaseLeases('r1', ALL.slice(P / 2));
      const r2 = await store.acquireLeases('r2', 60_000);
      expect(r2.map((l) => l.partition)).toEqual(ALL.slice(P / 2));
      // Its fair share reached, r2 takes no more.
      expect(await store.acquireLeases('r2', 60_000)).toEqual([]);
      // r1 stops heartbeating: after expiry r2 may take the rest, each with a new epoch.
      await sleep(450);
      const taken = await store.acquireLeases('r2', 60_000);
      expect(taken.map((l) => l.partition)).toEqual(ALL.slice(0, P / 2));
      for (const lease of taken) expect(lease.epoch).toBeGreaterThan(r1[lease.partition]!.epoch);
      // r1's heartbeat no longer renews what it lost.
      expect((await store.heartbeat('r1', 300)).held).toEqual([]);
      // A graceful stop frees everything at once and unregisters.
      await store.releaseLeases('r2', 'all');
      expect((await store.heartbeat('r3', 60_000)).relays).toBe(2); // r1 still registered, r2 gone
      const leases = await store.leases();
      expect(leases).toHaveLength(P);
      expect(leases.every((l) => l.expiresAt === null || l.owner === 'r1')).toBe(true);
    });

    it('a settle is fenced per partition: a lost lease writes nothing for its partition, the rest is written', async () => {
      const fence = await lease('f1');
      const ids = await addCommitted(Array.from({ length: 40 }, (_, i) => order(i)));
      const claimed = await claimAll(100);
      const lost = claimed[0]!.partition;
      // Another relay takes `lost` over (after f1 gave it back, as after an expiry).
      await store.releaseLeases('f1', [lost]);
      await store.heartbeat('f2', LEASE.ttl);
      const f2 = await store.acquireLeases('f2', LEASE.ttl);
      expect(f2.map((l) => l.partition)).toEqual([lost]);
      const result = await store.settle({ published: ids, retry: [], dead: [] }, fence);
      expect(result.fenced).toEqual([lost]);
      const left = await claimAll(100);
      expect(left.length).toBeGreaterThan(0);
      expect(left.every((e) => e.partition === lost)).toBe(true);
    });

    it('the partition is the key hash mod P; claim takes only the given partitions', async () => {
      await addCommitted(Array.from({ length: 50 }, (_, i) => order(i)));
      const all = await claimAll(100);
      for (const e of all) expect(e.partition).toBe(e.keyHash % P);
      const some = [...new Set(all.map((e) => e.partition))].slice(0, 3);
      const claimed = await store.claim(some, 100);
      expect(claimed.map((e) => e.id)).toEqual(
        all.filter((e) => some.includes(e.partition)).map((e) => e.id),
      );
      expect(await store.claim([], 100)).toEqual([]);
    });

    it('a parked dead letter holds its key until retried or discarded; a continued one does not', async () => {
      const fence = await lease();
      const [p1, p2, c1, c2] = await addCommitted([
        order('park', 1),
        order('park', 2),
        order('cont', 1),
        order('cont', 2),
      ]);
      const fail = (id: string, park: boolean) => ({
        id,
        attempts: 1,
        error: 'boom',
        history: [],
        delayMs: 0,
        park,
      });
      await store.settle({ published: [], retry: [], dead: [fail(p1!, true), fail(c1!, false)] }, fence);
      expect((await claimAll(10)).map((e) => e.id)).toEqual([c2]);
      expect((await store.get(p1!))?.parked).toBe(true);
      expect(await store.retryDead([p1!, c2!])).toBe(1); // c2 is pending, not dead
      const retried = await store.get(p1!);
      expect(retried).toMatchObject({ status: 'pending', attempts: 0, parked: false });
      expect((await claimAll(10)).map((e) => e.id)).toEqual([p1, p2, c2]);
      await store.settle({ published: [], retry: [], dead: [fail(p1!, true)] }, fence);
      expect((await claimAll(10)).map((e) => e.id)).toEqual([c2]);
      expect(await store.discardDead([p1!])).toBe(1);
      expect(await store.get(p1!)).toBeUndefined();
      expect((await claimAll(10)).map((e) => e.id)).toEqual([p2, c2]);
    });

    it('migrate refuses a different partition count for an existing table', async () => {
      await expectCode(() => store.migrate({ partitions: 8 }), 'INVALID_CONFIG');
      expect((await store.migrate({ partitions: P })).applied).toEqual([]);
      await expectCode(() => store.migrate({ partitions: 0 }), 'INVALID_CONFIG');
    });

    it('stats count per destination with the oldest pending age', async () => {
      await addCommitted([order(1), { type: 'user.joined', aggregateType: 'user', aggregateId: 'u1' }]);
      const stats = await store.stats();
      expect(stats.pending).toBe(2);
      expect(stats.destinations.map((d) => d.destination).sort()).toEqual([
        'events.order.order.created',
        'events.user.user.joined',
      ]);
      expect(stats.oldestPendingAgeMs).toBeGreaterThanOrEqual(0);
      expect(stats.oldestPendingAgeMs).toBeLessThan(60_000);
      // A destination with nothing pending has no age (not 0: nothing is late there).
      const fence = await lease();
      const [first] = await claimAll(10);
      await store.settle({ published: [first!.id], retry: [], dead: [] }, fence);
      const after = await store.stats();
      expect(
        after.destinations.find((d) => d.destination === first!.destination)?.oldestPendingAgeMs ?? null,
      ).toBe(null);
    });

    it('the relay keeps per-key order and loses nothing while 30% of publishes fail', async () => {
      const publisher = memoryPublisher();
      const random = seededRandom(42);
      publisher.behaviour = () => (random() < 0.3 ? new PublishError('flaky') : undefined);
      outbox = createOutbox({ database: store, publishers: { memory: publisher } });
      const events = Array.from({ length: 400 }, (_, i) => order(`k${i % 20}`, { n: Math.floor(i / 20) }));
      for (let i = 0; i < events.length; i += 50) await addCommitted(events.slice(i, i + 50));
      const relay = outbox.relay({
        batchSize: 64,
        maxAttempts: 1000,
        backoff: { baseMs: 1, capMs: 3 },
        logger: silentLogger,
      });
      for (let i = 0; i < 2000 && (await store.stats()).pending > 0; i++) {
        await relay.runOnce();
        await new Promise((r) => setTimeout(r, 1));
      }
      expect((await store.stats()).pending).toBe(0);
      const seen = new Map<string, number>();
      for (const m of publisher.messages) {
        const n = JSON.parse(m.payload).n as number;
        expect(n, `key ${m.key} out of order`).toBe((seen.get(m.key) ?? -1) + 1);
        seen.set(m.key, n);
      }
      expect(publisher.messages).toHaveLength(400);
    });

    it('a running relay (claiming its next batch during the current one) keeps per-key order through failures', async () => {
      const publisher = memoryPublisher();
      const random = seededRandom(7);
      publisher.behaviour = () => (random() < 0.3 ? new PublishError('flaky') : undefined);
      outbox = createOutbox({ database: store, publishers: { memory: publisher } });
      // Few keys and small batches: the batch claimed ahead nearly always holds later events of a
      // key whose event is failing in the current batch.
      const events = Array.from({ length: 300 }, (_, i) => order(`k${i % 5}`, { n: Math.floor(i / 5) }));
      for (let i = 0; i < events.length; i += 50) await addCommitted(events.slice(i, i + 50));
      const relay = outbox.relay({
        batchSize: 8,
        maxAttempts: 1000,
        pollIntervalMs: 5,
        backoff: { baseMs: 1, capMs: 3 },
        logger: silentLogger,
      });
      await relay.start();
      try {
        for (let i = 0; i < 1000 && (await store.stats()).pending > 0; i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
      } finally {
        await relay.stop();
      }
      expect((await store.stats()).pending).toBe(0);
      const seen = new Map<string, number>();
      for (const m of publisher.messages) {
        const n = JSON.parse(m.payload).n as number;
        const last = seen.get(m.key) ?? -1;
        // A retry after a lost settle may repeat an event; a later one before an earlier one never.
        expect(n, `key ${m.key} out of order`).toBeLessThanOrEqual(last + 1);
        seen.set(m.key, Math.max(n, last));
      }
      expect(new Set(publisher.messages.map((m) => m.id)).size).toBe(300);
    });

    it('a PermanentError dead-letters at once; maxAttempts dead-letters a retrying event', async () => {
      const publisher = memoryPublisher();
      publisher.behaviour = (m) =>
        m.key === 'order:perm' ? new PermanentError('HTTP 400') : new Error('down');
      outbox = createOutbox({ database: store, publishers: { memory: publisher } });
      const [perm, flaky] = await addCommitted([order('perm'), order('flaky')]);
      const relay = outbox.relay({ maxAttempts: 2, backoff: { baseMs: 1, capMs: 1 }, logger: silentLogger });
      await relay.runOnce();
      expect(await store.get(perm!)).toMatchObject({ status: 'dead', attempts: 1 });
      expect(await store.get(flaky!)).toMatchObject({ status: 'pending', attempts: 1, lastError: 'down' });
      await new Promise((r) => setTimeout(r, 10));
      await relay.runOnce();
      const dead = await store.get(flaky!);
      expect(dead).toMatchObject({ status: 'dead', attempts: 2, lastError: 'down' });
      expect(dead!.history.map((a) => a.error)).toEqual(['down', 'down']);
      expect(dead!.history[0]!.relay).toBe(relay.id);
    });

    it('records what a failure says, safely: Retry-After as a floor, NUL-free errors, bounded history', async () => {
      const publisher = memoryPublisher();
      outbox = createOutbox({ database: store, publishers: { memory: publisher } });
      const [later, nul, huge] = await addCommitted([order('later'), order('nul'), order('huge')]);
      publisher.behaviour = (m) =>
        m.key === 'order:later'
          ? new PublishError('busy', { retryAfterMs: 30_000 })
          : m.key === 'order:nul'
            ? new Error('receiver said \u0000 and \ud800')
            : new PublishError('absurd', { retryAfterMs: Number.POSITIVE_INFINITY });
      const relay = outbox.relay({
        maxAttempts: 100,
        historyLimit: 3,
        backoff: { baseMs: 1, capMs: 1 },
        logger: silentLogger,
      });
      const report = await relay.runOnce();
      expect(report.settled).toBe(true);
      expect((await store.get(later!))!.availableAt.getTime()).toBeGreaterThan(Date.now() + 25_000);
      expect((await store.get(nul!))!.lastError).toBe('receiver said \ufffd and \ufffd');
      expect((await store.get(huge!))!.attempts).toBe(1);
      // Five more failures of the same event: the history keeps the last three.
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 5));
        await relay.runOnce();
      }
      const record = await store.get(nul!);
      expect(record!.attempts).toBe(6);
      expect(record!.history).toHaveLength(3);
      await relay.stop();
    });

    it('a relay survives store errors with no error listener, and keeps publishing', async () => {
      const publisher = memoryPublisher();
      let failures = 2;
      // The real store, whose claim() fails twice.
      const flaky = new Proxy(store, {
        get(target, property) {
          if (property === 'claim') {
            return (...args: Parameters<Store['claim']>) =>
              failures-- > 0 ? Promise.reject(new Error('database went away')) : target.claim(...args);
          }
          const value = Reflect.get(target, property);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const relayOutbox = createOutbox({ database: flaky, publishers: { memory: publisher } });
      await addCommitted(order('survivor'));
      const relay = relayOutbox.relay({ pollIntervalMs: 20, logger: silentLogger });
      await relay.start();
      try {
        for (let i = 0; i < 500 && publisher.messages.length === 0; i++)
          await new Promise((r) => setTimeout(r, 10));
        expect(publisher.messages.map((m) => m.key)).toEqual(['order:survivor']);
        expect(failures).toBeLessThan(0);
      } finally {
        await relay.stop();
      }
    });

    describe('bad input is refused with a typed error before any SQL', () => {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      const cases: Array<[string, unknown, ErrorCode]> = [
        ['not an object', 'order.created', 'INVALID_EVENT'],
        ['unknown field', { ...order(1), payLoad: {} }, 'INVALID_EVENT'],
        ['missing type', { aggregateType: 'order', aggregateId: '1' }, 'MISSING_TYPE'],
        ['empty type', { ...order(1), type: ' ' }, 'MISSING_TYPE'],
        ['no aggregate and no key', { type: 'x' }, 'MISSING_AGGREGATE'],
        ['key without a destination the template can fill', { type: 'x', key: 'k' }, 'MISSING_AGGREGATE'],
        ['BigInt', order(1, { n: 10n }), 'PAYLOAD_NOT_SERIALIZABLE'],
        ['circular', order(1, circular), 'PAYLOAD_NOT_SERIALIZABLE'],
        ['undefined in an array', order(1, [1, undefined]), 'PAYLOAD_NOT_SERIALIZABLE'],
        ['function', order(1, { f: () => 1 }), 'PAYLOAD_NOT_SERIALIZABLE'],
        ['symbol', order(1, { s: Symbol('x') }), 'PAYLOAD_NOT_SERIALIZABLE'],
        ['NaN', order(1, { n: Number.NaN }), 'PAYLOAD_NOT_FINITE'],
        ['Infinity', order(1, { n: Number.POSITIVE_INFINITY }), 'PAYLOAD_NOT_FINITE'],
        ['Map', order(1, { m: new Map() }), 'PAYLOAD_NOT_PLAIN'],
        ['Set', order(1, new Set([1])), 'PAYLOAD_NOT_PLAIN'],
        ['class instance', order(1, { u: new URL('http://x') }), 'PAYLOAD_NOT_PLAIN'],
        ['NUL in payload', order(1, { s: 'a\u0000b' }), 'INVALID_CHARACTERS'],
        ['lone surrogate in payload', order(1, { s: 'a\ud800b' }), 'INVALID_CHARACTERS'],
        ['NUL in a property name', order(1, { 'a\u0000': 1 }), 'INVALID_CHARACTERS'],
        ['NUL in the aggregate id', order('a\u0000b'), 'INVALID_CHARACTERS'],
        ['lone surrogate in a header', { ...order(1), headers: { x: '\udc00' } }, 'INVALID_CHARACTERS'],
        ['too large', order(1, { s: 'x'.repeat(1024 * 1024) }), 'PAYLOAD_TOO_LARGE'],
        ['header with CR/LF', { ...order(1), headers: { x: 'a\r\nb: c' } }, 'INVALID_HEADER'],
        ['header beyond Latin-1', { ...order(1), headers: { x: '🙂' } }, 'INVALID_HEADER'],
        ['header not a string', { ...order(1), headers: { x: 1 } }, 'INVALID_HEADER'],
        ['reserved header', { ...order(1), headers: { 'ce-id': 'x' } }, 'INVALID_HEADER'],
        ['destination with a space', { ...order(1), destination: 'events.a b' }, 'INVALID_DESTINATION'],
        ['invalid id', { ...order(1), id: 'not-a-uuid' }, 'INVALID_ID'],
        ['invalid availableAt', { ...order(1), availableAt: new Date('nope') }, 'INVALID_AVAILABLE_AT'],
        [
          'availableAt beyond year 9999',
          { ...order(1), availableAt: new Date('+010000-01-01') },
          'INVALID_AVAILABLE_AT',
        ],
      ];
      for (const [label, event, code] of cases) {
        it(`${label} → ${code}`, async () => {
          const bizId = `biz-${Math.random().toString(36).slice(2)}`;
          await h.transaction(store, async (exec) => {
            await h.insertBusinessRow(exec, bizId);
            const counting = countingExecutor(exec);
            await expectCode(() => outbox.add(counting as never, event as never), code);
            // A batch with one bad event writes nothing either.
            await expectCode(() => outbox.add(counting as never, [order(2), event] as never), code);
            expect(counting.statements).toBe(0);
          });
          // The caller's transaction was not poisoned: its business row committed.
          expect(await h.countBusinessRows(bizId)).toBe(1);
          expect(await claimAll(10)).toEqual([]);
        });
      }

      it('a duplicate id within a batch → INVALID_ID', async () => {
        const id = '01890a5d-ac96-774b-bcce-b302099a8057';
        await h.transaction(store, async (exec) => {
          await expectCode(
            () =>
              outbox.add(
                exec as never,
                [
                  { ...order(1), id },
                  { ...order(2), id },
                ] as never,
              ),
            'INVALID_ID',
          );
        });
      });

      it('a handle outside a transaction → NOT_IN_TRANSACTION, nothing written', async () => {
        await h.withoutTransaction(store, async (exec) => {
          const counting = countingExecutor(exec);
          await expectCode(() => outbox.add(counting as never, order(1) as never), 'NOT_IN_TRANSACTION');
          expect(counting.statements).toBe(0);
        });
        expect(await claimAll(10)).toEqual([]);
      });

      it('a destination no route allows, or that breaks the publisher grammar, is refused', async () => {
        const nats = memoryPublisher({ kind: 'nats' });
        outbox = createOutbox({
          database: store,
          publishers: { nats },
          routes: [{ type: 'order.*', destination: 'orders.{aggregateId}' }],
        });
        await h.transaction(store, async (exec) => {
          const counting = countingExecutor(exec);
          await expectCode(
            () => outbox.add(counting as never, { ...order(1), destination: 'billing.1' } as never),
            'DESTINATION_NOT_ALLOWED',
          );
          await expectCode(
            () => outbox.add(counting as never, { ...order(1), destination: 'orders.*' } as never),
            'INVALID_DESTINATION',
          );
          await expectCode(() => outbox.add(counting as never, order('a.') as never), 'INVALID_DESTINATION');
          await expectCode(
            () => outbox.add(counting as never, { type: 'user.joined', key: 'u' } as never),
            'NO_ROUTE',
          );
          expect(counting.statements).toBe(0);
          await outbox.add(counting as never, { ...order(1), destination: 'orders.77' } as never);
          expect(counting.statements).toBe(1);
        });
        expect((await claimAll(10)).map((e) => e.destination)).toEqual(['orders.77']);
      });
    });
  });
}
