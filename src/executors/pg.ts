/**
 * The node-postgres executor: runs outbox's SQL on a `pg` client the caller has put in a
 * transaction. Describes the client structurally, so this file never loads `pg`.
 */
import type { AsyncExecutor, SqlRow, TransactionState } from '../core/ports.js';
import { statementName } from '../core/sql.js';

/**
 * A node-postgres `Client` or `PoolClient` (a `Pool` also fits, but it cannot hold a
 * transaction, so `add()` refuses it).
 */
export interface PgClientLike {
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<{ rows: SqlRow[] }>;
  /** Recent node-postgres 8.x: 'I' idle, 'T' in a transaction, 'E' in a failed transaction. */
  getTransactionStatus?(): string | null;
}

export interface FromPgOptions {
  /**
   * Send add()'s statement as a named prepared statement (default true). Turn off behind a pooler
   * that cannot keep prepared statements (pgbouncer in transaction mode before 1.21, or 1.21+
   * without max_prepared_statements).
   */
  readonly prepareStatements?: boolean;
}

const TRANSACTION_STATES: Readonly<Record<string, TransactionState>> = {
  I: 'none',
  T: 'active',
  E: 'aborted',
};

/**
 * Wraps a node-postgres client for `add()`. The state comes from the protocol's ReadyForQuery
 * status, which node-postgres receives just *after* it rejects a failed query: right after a
 * failure the state may still read 'active' for a moment, and PostgreSQL then refuses the insert
 * itself (25P02, current transaction is aborted), so nothing is written either way.
 * @example
 * const client = await pool.connect();
 * try {
 *   await client.query('BEGIN');
 *   await client.query('INSERT INTO orders (id) VALUES ($1)', [orderId]);
 *   await outbox.add(fromPg(client), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 *   await client.query('COMMIT');
 * } catch (error) {
 *   await client.query('ROLLBACK');
 *   throw error;
 * } finally {
 *   client.release();
 * }
 */
export function fromPg(client: PgClientLike, options: FromPgOptions = {}): AsyncExecutor {
  const prepare = options.prepareStatements ?? true;
  return {
    dialect: 'postgres',
    sync: false,
    async query(sql, params) {
      const values = params as unknown[];
      // Named: the connection parses and plans add()'s INSERT once, then only binds it.
      const config = prepare ? { name: statementName(sql), text: sql, values } : { text: sql, values };
      return (await client.query(config)).rows;
    },
    transactionState() {
      if (typeof client.getTransactionStatus === 'function') {
        const status = client.getTransactionStatus();
        return status === null ? 'unknown' : (TRANSACTION_STATES[status] ?? 'unknown');
      }
      // A Pool runs each query on whichever connection is free: it is never in a transaction.
      return isPool(client) ? 'none' : 'unknown';
    },
  };
}

function isPool(client: object): boolean {
  return 'totalCount' in client && 'idleCount' in client;
}
