/**
 * The mysql2 executor: runs outbox's SQL on a mysql2 connection the caller has put in a
 * transaction (`await conn.beginTransaction()`). Describes the connection structurally, so this
 * file never loads `mysql2`.
 */
import type { AsyncExecutor, SqlRow, TransactionState } from '../core/ports.js';

/** What a mysql2 promise-API call resolves to: `[rows or result header, fields]`. */
type Mysql2Result = [unknown, unknown];

/**
 * A mysql2 promise-API `Connection` or `PoolConnection` (from `mysql2/promise`, or `.promise()` of
 * a callback-API one: a callback-API handle is wrapped with its own `.promise()`). A `Pool` also
 * fits, but runs each statement on whichever connection is free, so `add()` refuses it.
 */
export interface Mysql2ConnectionLike {
  query(sql: string, values?: unknown): Promise<Mysql2Result> | unknown;
  execute(sql: string, values?: unknown): Promise<Mysql2Result> | unknown;
  /** A pool's: it cannot hold a transaction. */
  getConnection?: unknown;
  /** A callback-API handle's: returns its promise-API wrapper. */
  promise?(): Mysql2ConnectionLike;
}

export interface FromMysql2Options {
  /**
   * Send add()'s statement as a server-side prepared statement (mysql2 `execute`, prepared once
   * per connection and SQL text; default true). Turn off behind a proxy that cannot keep them.
   */
  readonly prepareStatements?: boolean;
}

/**
 * Wraps a mysql2 connection that is inside a transaction for `add()`. mysql2 does not record
 * whether its connection is in a transaction, so for a connection the state is 'unknown': call
 * `add()` between `beginTransaction()` and `commit()`, or it commits on its own (autocommit).
 * @example
 * const conn = await pool.getConnection();
 * try {
 *   await conn.beginTransaction();
 *   await conn.execute('INSERT INTO orders (id, total) VALUES (?, ?)', [orderId, total]);
 *   await outbox.add(fromMysql2(conn), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 *   await conn.commit();
 * } catch (error) {
 *   await conn.rollback();
 *   throw error;
 * } finally {
 *   conn.release();
 * }
 */
export function fromMysql2(connection: Mysql2ConnectionLike, options: FromMysql2Options = {}): AsyncExecutor {
  const prepare = options.prepareStatements ?? true;
  const handle = typeof connection.promise === 'function' ? connection.promise() : connection;
  const pool = typeof handle.getConnection === 'function';
  return {
    dialect: 'mysql',
    sync: false,
    async query(sql, params) {
      const result = (await (prepare
        ? handle.execute(sql, params)
        : handle.query(sql, params))) as Mysql2Result;
      return Array.isArray(result[0]) ? (result[0] as SqlRow[]) : [];
    },
    transactionState: (): TransactionState => (pool ? 'none' : 'unknown'),
  };
}
