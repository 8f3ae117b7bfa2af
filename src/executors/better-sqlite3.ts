/**
 * Executor for better-sqlite3 (and anything exposing its Database API). Its transactions are
 * synchronous, so this executor is too: `outbox.add(fromBetterSqlite3(db), event)` completes
 * inside `db.transaction(() => …)` without an await.
 */
import type { SqlRow, SyncExecutor, TransactionState } from '../core/ports.js';

/** The part of better-sqlite3's `Statement` we use. */
export interface BetterSqlite3StatementLike {
  readonly reader: boolean;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): unknown;
}

/** The part of better-sqlite3's `Database` we use. */
export interface BetterSqlite3DatabaseLike {
  readonly inTransaction: boolean;
  prepare(sql: string): BetterSqlite3StatementLike;
}

// Statements are prepared once per database and SQL text: preparing is most of a small insert's cost.
const cache = new WeakMap<object, Map<string, BetterSqlite3StatementLike>>();

function prepared(db: BetterSqlite3DatabaseLike, sql: string): BetterSqlite3StatementLike {
  let statements = cache.get(db);
  if (!statements) {
    statements = new Map();
    cache.set(db, statements);
  }
  let statement = statements.get(sql);
  if (!statement) {
    statement = db.prepare(sql);
    statements.set(sql, statement);
  }
  return statement;
}

/**
 * Wraps a better-sqlite3 database that is inside a transaction.
 * @example
 * const addOrder = db.transaction((order) => {
 *   db.prepare('INSERT INTO orders (id, total) VALUES (?, ?)').run(order.id, order.total);
 *   outbox.add(fromBetterSqlite3(db), { type: 'order.created', aggregateType: 'order', aggregateId: order.id, payload: order });
 * });
 */
export function fromBetterSqlite3(db: BetterSqlite3DatabaseLike): SyncExecutor {
  return {
    dialect: 'sqlite',
    sync: true,
    transactionState: (): TransactionState => (db.inTransaction ? 'active' : 'none'),
    query(sql, params) {
      const statement = prepared(db, sql);
      if (statement.reader) return statement.all(...params) as SqlRow[];
      statement.run(...params);
      return [];
    },
  };
}
