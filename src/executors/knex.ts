/**
 * The Knex executor: runs outbox's SQL through `trx.raw()` on a Knex transaction (the `trx` of
 * `knex.transaction(async (trx) => …)`). Describes `trx` structurally, so this file never loads
 * `knex`. The MikroORM executor reuses it: MikroORM 6 runs its transactions on Knex.
 */
import { OutboxError } from '../core/errors.js';
import type { AsyncExecutor, Dialect, SqlRow, TransactionState } from '../core/ports.js';

/** A Knex transaction (a Knex instance also fits, but is not a transaction: `add()` refuses it). */
export interface KnexTransactionLike {
  raw(sql: string, bindings: readonly unknown[]): PromiseLike<unknown>;
  /** true on a transaction only. */
  readonly isTransaction?: boolean;
  /** true once the transaction has committed or rolled back. */
  isCompleted?(): boolean;
  /** Knex's client: its `dialect` names the database. */
  readonly client: { readonly dialect: string };
}

const DIALECTS: Readonly<Record<string, Dialect>> = {
  postgresql: 'postgres',
  sqlite3: 'sqlite',
  mysql: 'mysql',
};

// Quoted text, comments and dollar quotes (copied, their `?` escaped), `$n` placeholders (not
// inside a name such as a$1), and any other `?`, such as PostgreSQL's jsonb operators.
const PG_TOKENS =
  /'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|\/\*[\s\S]*?\*\/|\$([A-Za-z_]\w*)?\$[\s\S]*?\$\1\$|(?<![\w$])\$(\d+)|\?/g;

/**
 * outbox's statement as `knex.raw()` takes it. On PostgreSQL every `$n` becomes a `?` bound to
 * its value (in order of appearance, a repeated `$n` repeating its value) and every other `?` is
 * escaped `\?`, which knex turns back into `?`. On SQLite and MySQL the statement already uses
 * `?` placeholders (and knex has no escape there: it sends `\?` as is), so it goes unchanged.
 */
export function toKnexRaw(dialect: Dialect, sql: string, params: readonly unknown[]): [string, unknown[]] {
  if (dialect !== 'postgres') return [sql, [...params]];
  const bindings: unknown[] = [];
  const text = sql.replace(PG_TOKENS, (token: string, _tag: unknown, n: string | undefined, at: number) => {
    if (n === undefined) return token.replaceAll('?', '\\?');
    bindings.push(params[Number(n) - 1]);
    // After a literal `?`, knex would read `\??` as one token: keep them apart.
    return sql[at - 1] === '?' ? ' ?' : '?';
  });
  return [text, bindings];
}

/** The rows of a raw result: pg's result object, SQLite's rows, mysql2's [rows, fields]. */
export function knexRows(dialect: Dialect, result: unknown): SqlRow[] {
  if (dialect === 'mysql') return Array.isArray((result as unknown[])[0]) ? (result as SqlRow[][])[0]! : [];
  if (Array.isArray(result)) return result;
  return (result as { rows?: SqlRow[] }).rows ?? [];
}

/** The dialect of a Knex instance or transaction. */
export function knexDialect(knex: Pick<KnexTransactionLike, 'client'>): Dialect {
  const dialect = DIALECTS[knex.client.dialect];
  if (!dialect) {
    throw new OutboxError(
      'INVALID_EXECUTOR',
      `outbox has no store for Knex's "${knex.client.dialect}" client`,
    );
  }
  return dialect;
}

/**
 * Wraps a Knex transaction for `add()`.
 * @example
 * await knex.transaction(async (trx) => {
 *   await trx('orders').insert({ id: orderId, total });
 *   await outbox.add(fromKnex(trx), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 * });
 */
export function fromKnex(trx: KnexTransactionLike): AsyncExecutor {
  const dialect = knexDialect(trx);
  return {
    dialect,
    sync: false,
    async query(sql, params) {
      return knexRows(dialect, await trx.raw(...toKnexRaw(dialect, sql, params)));
    },
    transactionState(): TransactionState {
      return trx.isTransaction === true && trx.isCompleted?.() !== true ? 'active' : 'none';
    },
  };
}
