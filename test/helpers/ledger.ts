/**
 * The ledger the publisher suite checks deliveries against: an outbox on a SQLite file whose
 * events are each added in a transaction that also writes a ledger row, so the ledger holds
 * exactly the committed events, in commit order, whatever the relay and the broker did.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'vitest';
import type { Publisher } from '../../src/core/ports.js';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { createOutbox, type Outbox, silentLogger } from '../../src/index.js';
import type { RelayOptions } from '../../src/relay/relay.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import type { Received } from '../conformance/publisher.suite.js';

/** The ids a consumer received, each once. */
export function distinctIds(received: readonly Received[]): Set<string> {
  return new Set(received.map((r) => r.attributes.id ?? ''));
}

export interface LedgerEntry {
  readonly id: string;
  readonly key: string;
}

/** An outbox on a SQLite file with a ledger table written in each event's transaction. */
export interface LedgerRun {
  readonly outbox: Outbox;
  /** Adds event `i` (key `order:k<i % 7>` unless overridden) and its ledger row in one transaction; its id. */
  add(i: number, over?: { aggregateType?: string; headers?: Record<string, string> }): string;
  /** The ledger in commit order. */
  ledger(): LedgerEntry[];
  close(): Promise<void>;
}

export async function ledgerRun(
  publishers: Publisher | Record<string, Publisher>,
  destination: string,
  relay: RelayOptions,
  routes: { aggregateType?: string; destination: string; publisher?: string }[] = [{ destination }],
): Promise<LedgerRun> {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-publisher-'));
  const path = join(dir, 'app.db');
  const outbox = createOutbox({
    database: sqliteStore({ path }),
    publishers: 'publish' in publishers ? { broker: publishers as Publisher } : publishers,
    routes,
    relay: { logger: silentLogger, ...relay },
  });
  await outbox.migrate();
  const db = new Database(path);
  db.exec('CREATE TABLE ledger (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, key TEXT NOT NULL)');
  const record = db.prepare('INSERT INTO ledger (id, key) VALUES (?, ?)');
  const add = db.transaction(
    (i: number, over: { aggregateType?: string; headers?: Record<string, string> }) => {
      const aggregateType = over.aggregateType ?? 'order';
      const event = { type: 'order.updated', aggregateType, aggregateId: `k${i % 7}`, payload: { i } };
      const id = outbox.add(
        fromBetterSqlite3(db),
        over.headers ? { ...event, headers: over.headers } : event,
      );
      record.run(id, `${aggregateType}:k${i % 7}`);
      return id as string;
    },
  );
  return {
    outbox,
    add: (i, over = {}) => add(i, over),
    ledger: () => db.prepare('SELECT id, key FROM ledger ORDER BY seq').all() as LedgerEntry[],
    async close() {
      db.close();
      await outbox.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Every ledger event arrived, nothing else did, each key's events first arrived in commit order,
 * and a duplicate is the same message again (same id, key and data).
 */
export function expectLedgerDelivered(received: readonly Received[], ledger: readonly LedgerEntry[]): void {
  expect(distinctIds(received)).toEqual(new Set(ledger.map((e) => e.id)));
  const first = new Map<string, Received>();
  for (const r of received) {
    const earlier = first.get(r.attributes.id!);
    if (earlier === undefined) first.set(r.attributes.id!, r);
    else
      expect({ key: r.attributes.partitionkey, data: r.data }, `duplicate of ${r.attributes.id}`).toEqual({
        key: earlier.attributes.partitionkey,
        data: earlier.data,
      });
  }
  const order = [...first.values()];
  for (const key of new Set(ledger.map((e) => e.key))) {
    const expected = ledger.filter((e) => e.key === key).map((e) => e.id);
    const seen = order.filter((r) => r.attributes.partitionkey === key).map((r) => r.attributes.id);
    expect(seen, `order of key ${key}`).toEqual(expected);
  }
}
