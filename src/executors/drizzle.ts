/**
 * The Drizzle executor: runs outbox's SQL on the `tx` of `db.transaction(…)`, whatever the
 * driver: PostgreSQL (node-postgres, postgres.js, …), MySQL (mysql2) or SQLite, where
 * better-sqlite3's transactions are synchronous and so is this executor. Describes `tx`
 * structurally, so this file never loads `drizzle-orm`.
 */
import { OutboxError } from '../core/errors.js';
import type { Dialect, Executor, SqlRow } from '../core/ports.js';
import { portableParam } from './postgres-js.js';

/**
 * What Drizzle's dialects call on a query to build it: `toQuery()`. Ours hands over outbox's
 * statement as written, in the placeholders of the dialect it was made for.
 */
export interface DrizzleQueryLike {
  getSQL(): { toQuery(config: never): { sql: string; params: unknown[] } };
}

/** A Drizzle transaction: `execute()` on PostgreSQL and MySQL, `run()` / `all()` on SQLite. */
export interface DrizzleTransactionLike {
  execute?(query: string | DrizzleQueryLike): PromiseLike<unknown>;
  run?(query: string | DrizzleQueryLike): unknown;
  all?(query: string | DrizzleQueryLike): unknown;
}

// Drizzle tags its classes with this registered symbol (its `is()` walks the same chain).
const ENTITY_KIND = Symbol.for('drizzle:entityKind');
const DATABASES: Readonly<Record<string, Dialect>> = {
  PgDatabase: 'postgres',
  MySqlDatabase: 'mysql',
  BaseSQLiteDatabase: 'sqlite',
};
const TRANSACTIONS = new Set(['PgTransaction', 'MySqlTransaction', 'SQLiteTransaction']);
const RETURNS_ROWS = /^\s*(SELECT|WITH|VALUES|PRAGMA)\b|\bRETURNING\b/i;

/**
 * Wraps a Drizzle transaction for `add()`: synchronous on a synchronous SQLite driver
 * (better-sqlite3: call `add()` without await inside `db.transaction((tx) => …)`).
 * @example
 * await db.transaction(async (tx) => {
 *   await tx.insert(orders).values({ id: orderId, total });
 *   await outbox.add(fromDrizzle(tx), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 * });
 */
export function fromDrizzle(tx: DrizzleTransactionLike): Executor {
  const kinds = entityKinds(tx);
  const dialect = kinds.map((kind) => DATABASES[kind]).find((d) => d !== undefined);
  if (!dialect) {
    throw new OutboxError(
      'INVALID_EXECUTOR',
      'fromDrizzle needs a Drizzle transaction (the tx of db.transaction)',
    );
  }
  const state = kinds.some((kind) => TRANSACTIONS.has(kind)) ? 'active' : 'none';
  const run = (sql: string, params: readonly unknown[]): unknown => {
    const values = dialect === 'postgres' ? params.map(portableParam) : [...params];
    const query = { getSQL: () => ({ toQuery: () => ({ sql, params: values }) }) };
    if (dialect !== 'sqlite') return tx.execute!(query);
    return RETURNS_ROWS.test(sql) ? tx.all!(query) : tx.run!(query);
  };
  const rows = (result: unknown): SqlRow[] => {
    // node-postgres: a result with rows; postgres.js and SQLite: the rows; mysql2: [rows, fields].
    if (dialect === 'mysql') return Array.isArray((result as unknown[])[0]) ? (result as SqlRow[][])[0]! : [];
    if (Array.isArray(result)) return result;
    return (result as { rows?: SqlRow[] }).rows ?? [];
  };
  const base = { dialect, transactionState: () => state };
  // SQLite's result kind is private in Drizzle's types, but it is what decides sync or async.
  if (dialect === 'sqlite' && (tx as { resultKind?: unknown }).resultKind === 'sync') {
    return { ...base, sync: true, query: (sql, params) => rows(run(sql, params)) };
  }
  return { ...base, sync: false, query: async (sql, params) => rows(await run(sql, params)) };
}

function entityKinds(value: object): string[] {
  const kinds: string[] = [];
  for (let c = Object.getPrototypeOf(value)?.constructor; c; c = Object.getPrototypeOf(c)) {
    if (typeof c[ENTITY_KIND] === 'string') kinds.push(c[ENTITY_KIND]);
  }
  return kinds;
}
