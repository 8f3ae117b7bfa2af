/**
 * The per-key commit-order workload of commit-order.test.ts (PostgreSQL) and
 * mysql-commit-order.test.ts (MariaDB): concurrent producers on shared keys, each transaction
 * holding its events a random moment before COMMIT, and the count of same-key pairs seen in the
 * opposite order of their commits.
 */
import { expect } from 'vitest';
import type { Store } from '../../src/core/ports.js';
import { createOutbox, type Outbox, type OutboxEvent, silentLogger } from '../../src/index.js';
import { memoryPublisher, seededRandom } from '../../src/testing/index.js';

export const WORKERS = 8;
export const TRANSACTIONS = 400;
export const KEYS = 6;
const seed = Number(process.env.OUTBOX_TEST_SEED ?? 7);

/** Each key's event ids, in the order their transactions committed. */
export type Committed = ReadonlyMap<string, readonly string[]>;

/** Pairs of same-key events published (or stored) in the opposite order of their commits. */
export function inversions(committed: Committed, observed: readonly { id: string; key: string }[]): number {
  const position = new Map(observed.map((e, i) => [e.id, i]));
  let count = 0;
  for (const ids of committed.values()) {
    for (let i = 1; i < ids.length; i++) if (position.get(ids[i - 1]!)! > position.get(ids[i]!)!) count++;
  }
  return count;
}

/** The workload's event for `key` (`order:<n>`). */
export function orderChanged(key: string): OutboxEvent {
  const [type, id] = key.split(':') as [string, string];
  return { type: 'order.changed', aggregateType: type, aggregateId: id };
}

/** How a producer opens, commits and gives back its connection, the driver's way. */
export interface ProducerConnections<C> {
  connect(): Promise<C>;
  begin(conn: C): Promise<unknown>;
  commit(conn: C): Promise<unknown>;
  release(conn: C): void;
}

export interface WorkloadOptions<C> {
  /** Names the run in the seed line. */
  readonly label: string;
  readonly connections: ProducerConnections<C>;
  /**
   * A transaction's place in commit order: when it sent COMMIT, or when COMMIT returned. They
   * differ where the database frees a key's lock before the client hears of the commit (InnoDB).
   */
  readonly commitOrder: 'sent' | 'returned';
  /** Adds events (one for `key`, maybe more) on the open transaction; returns their [key, id] pairs. */
  write(conn: C, key: string): Promise<readonly (readonly [string, string])[]>;
}

/** Runs the workload and returns each key's ids in commit order (of the transactions that committed). */
export async function produce<C>(options: WorkloadOptions<C>): Promise<Committed> {
  const { connections } = options;
  console.log(`${options.label}: seed ${seed} (OUTBOX_TEST_SEED reproduces a run)`);
  const random = seededRandom(seed);
  const committed = new Map<string, [number, string][]>();
  let started = 0;
  let sent = 0;
  let returned = 0;
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      const conn = await connections.connect();
      try {
        while (started++ < TRANSACTIONS) {
          const key = `order:${Math.floor(random() * KEYS)}`;
          const holdMs = random() * 4;
          await connections.begin(conn);
          const added = await options.write(conn, key);
          await new Promise((r) => setTimeout(r, holdMs));
          const sentAs = sent++;
          await connections.commit(conn);
          const place = options.commitOrder === 'sent' ? sentAs : returned++;
          for (const [k, id] of added) committed.set(k, [...(committed.get(k) ?? []), [place, id]]);
        }
      } finally {
        connections.release(conn);
      }
    }),
  );
  return new Map([...committed].map(([k, ids]) => [k, ids.sort((a, b) => a[0] - b[0]).map(([, id]) => id)]));
}

/**
 * Runs `run` (the workload, adding through `outbox`) on an outbox over `store` that relays to
 * memory, relays everything, and expects all `events` published, each key's in commit order.
 */
export async function expectPublishedInCommitOrder(
  store: Store,
  events: number,
  run: (outbox: Outbox) => Promise<Committed>,
): Promise<void> {
  const publisher = memoryPublisher();
  const outbox = createOutbox({
    database: store,
    publishers: { memory: publisher },
    relay: { logger: silentLogger },
  });
  await outbox.migrate();
  const committed = await run(outbox);
  await outbox.relay().drain();
  expect(publisher.messages).toHaveLength(events);
  expect(inversions(committed, publisher.messages)).toBe(0);
  await outbox.close();
}

/**
 * The control: `run` is the workload writing with a plain INSERT (no key lock) into `store`'s
 * table, `stored` reads that table in seq order. Some same-key pair must be out of commit order.
 */
export async function expectStoredOutOfCommitOrder(
  label: string,
  store: Store,
  run: () => Promise<Committed>,
  stored: () => Promise<readonly { id: string; key: string }[]>,
): Promise<void> {
  await store.migrate();
  const committed = await run();
  const found = inversions(committed, await stored());
  console.log(`${label} control: ${found} same-key pairs stored out of commit order without the lock`);
  expect(found).toBeGreaterThan(0);
  await store.close();
}
