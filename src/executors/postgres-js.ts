/**
 * The postgres.js executor: runs outbox's SQL on the `sql` that `sql.begin(async (sql) => …)`
 * hands to its callback. Describes that handle structurally, so this file never loads `postgres`.
 */
import type { AsyncExecutor, SqlRow, TransactionState } from '../core/ports.js';

/**
 * The `sql` of a postgres.js transaction (`TransactionSql`). The top-level `sql` also fits, but
 * it runs each query on whichever connection is free, so `add()` refuses it.
 */
export interface PostgresJsSqlLike {
  unsafe(
    query: string,
    parameters?: unknown[],
    options?: { prepare?: boolean },
  ): PromiseLike<readonly SqlRow[]>;
  /** Present on a transaction's `sql` only. */
  readonly savepoint?: unknown;
  /** Present on the top-level `sql` only (a reserved connection has `release` instead). */
  readonly begin?: unknown;
}

export interface FromPostgresJsOptions {
  /**
   * Send add()'s statement as a named prepared statement (default true). Turn off behind a pooler
   * that cannot keep prepared statements, as you would with postgres.js's own `prepare: false`.
   */
  readonly prepareStatements?: boolean;
}

/**
 * Wraps the `sql` of a postgres.js transaction for `add()`. Use it inside the callback only:
 * once `sql.begin` has settled, its connection serves other queries again.
 * @example
 * await sql.begin(async (sql) => {
 *   await sql`INSERT INTO orders ${sql({ id: orderId, total })}`;
 *   await outbox.add(fromPostgresJs(sql), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 * });
 */
export function fromPostgresJs(sql: PostgresJsSqlLike, options: FromPostgresJsOptions = {}): AsyncExecutor {
  const prepare = options.prepareStatements ?? true;
  return {
    dialect: 'postgres',
    sync: false,
    async query(text, params) {
      return (await sql.unsafe(text, params.map(portableParam), { prepare })) as SqlRow[];
    },
    transactionState(): TransactionState {
      if (typeof sql.savepoint === 'function') return 'active';
      // A reserved connection may have run BEGIN itself: nothing on it tells.
      return typeof sql.begin === 'function' ? 'none' : 'unknown';
    },
  };
}

/**
 * A parameter as text that PostgreSQL types from the statement's casts: a Date as ISO-8601, an
 * array as an array literal. As they are, postgres.js would type an array after its first element
 * (one opening with a Date is declared a lone timestamptz and refused by `$n::timestamptz[]`), and
 * a postgres.js client shared with Drizzle sends dates and date arrays unserialised (Drizzle turns
 * those serializers off). Drizzle's executor uses it too, whatever its PostgreSQL driver.
 */
export function portableParam(param: unknown): unknown {
  if (param instanceof Date) return param.toISOString();
  if (!Array.isArray(param)) return param;
  const items = param.map((v) => (v === null ? 'NULL' : `"${text(v).replace(/[\\"]/g, '\\$&')}"`));
  return `{${items.join(',')}}`;
}

const text = (value: unknown): string => (value instanceof Date ? value.toISOString() : String(value));
