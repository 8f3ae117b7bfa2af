/**
 * The Kysely executor: runs outbox's SQL on a Kysely `Transaction` (the `trx` of
 * `db.transaction().execute(async (trx) => …)`, or a controlled transaction). Describes it
 * structurally, so this file never loads `kysely`.
 */
import { OutboxError } from '../core/errors.js';
import type { AsyncExecutor, Dialect, SqlRow, TransactionState } from '../core/ports.js';

/** What `CompiledQuery.raw(sql, parameters)` builds: a query Kysely runs as given. */
export interface KyselyRawQueryLike {
  readonly sql: string;
  readonly parameters: readonly unknown[];
  readonly query: {
    readonly kind: 'RawNode';
    readonly sqlFragments: readonly string[];
    readonly parameters: readonly [];
  };
  readonly queryId: { readonly queryId: string };
}

/** A Kysely `Transaction` (a `Kysely` instance also fits, but is not a transaction: `add()` refuses it). */
export interface KyselyTransactionLike {
  readonly isTransaction: boolean;
  executeQuery(query: KyselyRawQueryLike): Promise<{ readonly rows: readonly unknown[] }>;
  /** Kysely marks it internal; read only to find the dialect when none is given. */
  getExecutor?(): { readonly adapter: object };
  /** A `ControlledTransaction` after commit() or rollback(). */
  readonly isCommitted?: boolean;
  readonly isRolledBack?: boolean;
}

export interface FromKyselyOptions {
  /** The database the transaction runs on; default: read from Kysely's adapter. */
  readonly dialect?: Dialect;
}

// Kysely's own adapters, which third-party dialects use or extend (names survive unless a bundler mangles them).
const ADAPTERS: Readonly<Record<string, Dialect>> = {
  PostgresAdapter: 'postgres',
  MysqlAdapter: 'mysql',
  SqliteAdapter: 'sqlite',
};

/**
 * Wraps a Kysely transaction for `add()`. Kysely passes outbox's SQL to the driver as written
 * (its plugins see only the result).
 * @example
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values({ id: orderId, total }).execute();
 *   await outbox.add(fromKysely(trx), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 * });
 */
export function fromKysely(trx: KyselyTransactionLike, options: FromKyselyOptions = {}): AsyncExecutor {
  const dialect = options.dialect ?? adapterDialect(trx);
  return {
    dialect,
    sync: false,
    async query(sql, parameters) {
      const query = { kind: 'RawNode', sqlFragments: [sql], parameters: [] } as const;
      // Plugins may key their state by the query id, as CompiledQuery.raw gives each query its own.
      const queryId = { queryId: Math.random().toString(36).slice(2, 10) };
      const result = await trx.executeQuery({ sql, parameters, query, queryId });
      return result.rows as SqlRow[];
    },
    transactionState(): TransactionState {
      if (!trx.isTransaction || trx.isCommitted === true || trx.isRolledBack === true) return 'none';
      return 'active';
    },
  };
}

function adapterDialect(trx: KyselyTransactionLike): Dialect {
  const adapter = trx.getExecutor?.().adapter;
  for (let proto = adapter && Object.getPrototypeOf(adapter); proto; proto = Object.getPrototypeOf(proto)) {
    const dialect = ADAPTERS[(proto as { constructor: { name: string } }).constructor.name];
    if (dialect) return dialect;
  }
  throw new OutboxError(
    'INVALID_EXECUTOR',
    "fromKysely cannot tell this database from Kysely's adapter: pass { dialect: 'postgres' | 'mysql' | 'sqlite' }",
  );
}
