/**
 * The executor conformance suite: one contract, run unchanged for every executor on every
 * database it supports (test/integration/executors-*.test.ts). A harness opens the library,
 * runs transactions and savepoints the library's own way, writes a business row through the
 * same handle, and, where it can, kills the transaction's connection from another one.
 *
 * Synchronous transactions (better-sqlite3, Drizzle on SQLite) run the same scenarios: every
 * callback here chains its steps synchronously while they return plain values, so nothing
 * inside such a transaction is awaited.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { OutboxEvent } from '../../src/core/event.js';
import type { Executor, Store } from '../../src/core/ports.js';
import { createOutbox, type Outbox, silentLogger } from '../../src/index.js';
import { type MemoryPublisher, memoryPublisher, runOnce } from '../../src/testing/index.js';
import { countingExecutor } from '../helpers/counting.js';
import { expectOutboxError } from '../helpers/expect-error.js';

export interface ExecutorHarness<Tx> {
  /** The outbox table, migrated, on the database the library writes to (the store's own connection). */
  readonly store: Store;
  /** Another outbox table whose store wakes relays at commit (`listenNotify`), or why there is none. */
  readonly notifyStore: Store | string;
  /**
   * Runs `fn` in a transaction, the library's way: commits when it returns (or resolves), rolls
   * back when it throws. Returns what `fn` returned: synchronously for a synchronous transaction.
   */
  transaction(fn: (tx: Tx) => unknown): unknown;
  /** Runs `fn` in a savepoint of `tx` (a nested transaction): released when it returns, rolled back to and rethrown when it throws. */
  savepoint(tx: Tx, fn: (tx: Tx) => unknown): unknown;
  /** The executor under test, over the handle. */
  executor(tx: Tx): Executor;
  /** Inserts a business row through the handle, with the library's own API. */
  insertBusinessRow(tx: Tx, id: string): unknown;
  /** Committed business rows with this id. */
  countBusinessRows(id: string): Promise<number>;
  /**
   * Terminates the transaction's connection from another connection, while a query runs on it,
   * and rejects with the error the handle saw. Or why that cannot be done here.
   */
  readonly kill: ((tx: Tx) => Promise<never>) | string;
  /** An executor over a handle of the same library that is not in a transaction. Or why none can be told. */
  readonly outside: (() => Executor) | string;
  /** An executor over the handle of a transaction that has already committed. Or why that cannot be told. */
  readonly ended: (() => Promise<Executor>) | string;
  close(): Promise<void>;
}

class RolledBack extends Error {}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

type Step = (previous: unknown) => unknown;

/**
 * Runs steps in order, each given the previous one's value: synchronously while they return
 * plain values, chained once one returns a promise. Returns the last step's value.
 */
function inOrder(...steps: Step[]): unknown {
  let value: unknown;
  for (let i = 0; i < steps.length; i++) {
    value = steps[i]!(value);
    if (isThenable(value)) return Promise.resolve(value).then((v) => inOrder(() => v, ...steps.slice(i + 1)));
  }
  return value;
}

/** Runs `fn`, which must fail with RolledBack (thrown, or as a rejection), and swallows that failure. */
function expectRolledBack(fn: () => unknown): unknown {
  const unexpected = () => {
    throw new Error('the savepoint was expected to roll back');
  };
  const swallow = (error: unknown) => {
    if (!(error instanceof RolledBack)) throw error;
  };
  try {
    const value = fn();
    if (isThenable(value)) return Promise.resolve(value).then(unexpected, swallow);
  } catch (error) {
    return swallow(error);
  }
  return unexpected();
}

const order = (id: string, extra: Partial<OutboxEvent> = {}): OutboxEvent => ({
  type: 'order.created',
  aggregateType: 'order',
  aggregateId: id,
  payload: { id },
  ...extra,
});

/** The suite's transactional scenarios, by name. */
export type TransactionScenario = 'rollback' | 'savepoint' | 'kill';

export interface SuiteOptions {
  /**
   * Scenarios that must fail: for a deliberately broken executor, run to show that the suite
   * catches one that writes outside the caller's transaction.
   */
  readonly mustFail?: readonly TransactionScenario[];
}

export function describeExecutor<Tx>(
  label: string,
  makeHarness: () => Promise<ExecutorHarness<Tx> | string>,
  options: SuiteOptions = {},
): void {
  const scenario = (name: TransactionScenario) => (options.mustFail?.includes(name) ? it.fails : it);
  describe(`executor conformance: ${label}`, () => {
    let h: ExecutorHarness<Tx>;
    let skip: string | undefined;
    let outbox: Outbox;
    let memory: MemoryPublisher;

    beforeAll(async () => {
      const made = await makeHarness();
      if (typeof made === 'string') {
        skip = made;
        return;
      }
      h = made;
      memory = memoryPublisher();
      outbox = createOutbox({ database: h.store, publishers: { memory }, relay: { logger: silentLogger } });
    });
    afterAll(async () => {
      await outbox?.close();
      await h?.close();
    });
    beforeEach((ctx) => {
      if (skip) ctx.skip(skip);
    });

    /** In `tx`: a business row, then its event through the executor. Returns add()'s result. */
    const addWithRow = (tx: Tx, id: string) =>
      inOrder(
        () => h.insertBusinessRow(tx, id),
        () => outbox.add(h.executor(tx), order(id)),
      );
    /** A transaction that must fail; a synchronous throw counts as its rejection. */
    const failing = (fn: (tx: Tx) => unknown) => (async () => h.transaction(fn))();
    /**
     * Adds an event with its business row in a transaction that `end` then fails (a throw, a
     * killed connection); `rejects` checks the failure. Afterwards neither the event nor the row exists.
     */
    const expectAbandoned = async (
      end: (tx: Tx) => unknown,
      rejects: (failed: Promise<unknown>) => Promise<void>,
    ) => {
      const id = randomUUID();
      let eventId: unknown;
      await rejects(
        failing((tx) =>
          inOrder(
            () => addWithRow(tx, id),
            (added) => {
              eventId = added;
              return end(tx);
            },
          ),
        ),
      );
      expect(eventId).toBeTypeOf('string');
      expect(await h.countBusinessRows(id)).toBe(0);
      expect(await h.store.get(eventId as string)).toBeUndefined();
    };
    /** add() through `executor` is refused (NOT_IN_TRANSACTION) before any SQL, and stores nothing. */
    const expectRefused = async (executor: Executor) => {
      const counting = countingExecutor(executor);
      const id = randomUUID();
      expectOutboxError(() => outbox.add(counting, order(id, { id })), 'NOT_IN_TRANSACTION');
      expect(counting.statements).toBe(0);
      expect(await h.store.get(id)).toBeUndefined();
    };

    it('commit: the event is stored with its business row, and relayed', async () => {
      const id = randomUUID();
      let sync: boolean | undefined;
      const eventId = (await h.transaction((tx) => {
        sync = h.executor(tx).sync;
        return addWithRow(tx, id);
      })) as string;
      // A synchronous executor's add() returned the id itself, inside the transaction.
      if (sync) expect(eventId).toBeTypeOf('string');
      expect(await h.countBusinessRows(id)).toBe(1);
      expect(await h.store.get(eventId)).toMatchObject({ status: 'pending', aggregateId: id });
      await runOnce(outbox);
      const message = memory.messages.find((m) => m.id === eventId);
      expect(message).toMatchObject({ type: 'order.created', key: `order:${id}` });
      expect(JSON.parse(message!.payload)).toEqual({ id });
      expect(await h.store.get(eventId)).toBeUndefined();
    });

    it('a batch is one statement and keeps every field as given', async () => {
      const id = randomUUID();
      const availableAt = new Date(Date.now() + 3_600_000);
      const payload = { text: 'é 🙂 it\'s $1 ? \\ "q" {a,b}', n: 1.5, list: [1, 'two', null] };
      const events: OutboxEvent[] = [
        order(id, { availableAt, headers: { 'x-tenant': 'acme' }, payload }),
        { type: 'audit.logged', aggregateType: 'audit', key: `k-${id}`, payload: null },
        order(id, { id: randomUUID() }),
      ];
      let statements = 0;
      const ids = (await h.transaction((tx) => {
        const counting = countingExecutor(h.executor(tx));
        return inOrder(
          () => outbox.add(counting, events),
          (added) => {
            statements = counting.statements;
            return added;
          },
        );
      })) as string[];
      expect(statements).toBe(1);
      expect(ids[2]).toBe(events[2]!.id);
      const [first, second, third] = await Promise.all(ids.map((e) => h.store.get(e)));
      expect(first).toMatchObject({ key: `order:${id}`, aggregateId: id, headers: { 'x-tenant': 'acme' } });
      expect(first!.availableAt.getTime()).toBe(availableAt.getTime());
      expect(JSON.parse(first!.payload)).toEqual(payload);
      expect(second).toMatchObject({
        key: `k-${id}`,
        aggregateType: 'audit',
        aggregateId: null,
        payload: 'null',
      });
      expect(third).toMatchObject({
        key: `order:${id}`,
        type: 'order.created',
        destination: 'events.order.order.created',
      });
      expect(third!.seq).toBeGreaterThan(first!.seq);
    });

    it('with wake-up at commit on, add() queues the notification in the transaction', async (ctx) => {
      const store = h.notifyStore;
      if (typeof store === 'string') return ctx.skip(store);
      const notifying = createOutbox({ database: store });
      let woken = 0;
      const listener = await store.listen!(() => {
        woken++;
      });
      try {
        const id = randomUUID();
        // One event and a batch: each has its own statement.
        const [one, batch] = (await h.transaction((tx) =>
          inOrder(
            () => h.insertBusinessRow(tx, id),
            () => notifying.add(h.executor(tx), order(id)),
            (first) =>
              inOrder(
                () => notifying.add(h.executor(tx), [order(id), order(id)]),
                (rest) => [first, rest],
              ),
          ),
        )) as [string, string[]];
        for (const eventId of [one, ...batch]) expect(await store.get(eventId)).toBeDefined();
        for (let waitedMs = 0; woken === 0 && waitedMs < 30_000; waitedMs += 20) await sleep(20);
        expect(woken).toBeGreaterThan(0);
      } finally {
        await listener.close();
        await notifying.close();
      }
    });

    scenario('rollback')('rollback: neither the event nor the business row exists', () =>
      expectAbandoned(
        () => {
          throw new RolledBack();
        },
        (failed) => expect(failed).rejects.toBeInstanceOf(RolledBack),
      ),
    );

    scenario('savepoint')(
      "a savepoint rolled back takes its events with it; the transaction's others commit",
      async () => {
        const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
        const ids: Record<string, string> = {};
        await h.transaction((tx) =>
          inOrder(
            () => addWithRow(tx, a),
            (added) => {
              ids.a = added as string;
            },
            () =>
              expectRolledBack(() =>
                h.savepoint(tx, (sp) =>
                  inOrder(
                    () => addWithRow(sp, b),
                    (added) => {
                      ids.b = added as string;
                      throw new RolledBack();
                    },
                  ),
                ),
              ),
            () => addWithRow(tx, c),
            (added) => {
              ids.c = added as string;
            },
          ),
        );
        expect([
          await h.countBusinessRows(a),
          await h.countBusinessRows(b),
          await h.countBusinessRows(c),
        ]).toEqual([1, 0, 1]);
        expect(ids.b).toBeTypeOf('string');
        expect(await h.store.get(ids.a!)).toBeDefined();
        expect(await h.store.get(ids.b!)).toBeUndefined();
        expect(await h.store.get(ids.c!)).toBeDefined();
      },
    );

    scenario('kill')(
      'one transaction: its connection killed before commit, neither the event nor the row exists',
      async (ctx) => {
        if (typeof h.kill === 'string') return ctx.skip(h.kill);
        await expectAbandoned(h.kill, (failed) => expect(failed).rejects.toBeTruthy());
      },
    );

    it('a handle outside a transaction is refused, before any SQL', async (ctx) => {
      if (typeof h.outside === 'string') return ctx.skip(h.outside);
      await expectRefused(h.outside());
    });

    it('the handle of a transaction that has ended is refused, before any SQL', async (ctx) => {
      if (typeof h.ended === 'string') return ctx.skip(h.ended);
      await expectRefused(await h.ended());
    });
  });
}
