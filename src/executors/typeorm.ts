/**
 * The TypeORM executor: runs outbox's SQL on the `EntityManager` that
 * `dataSource.transaction(async (manager) => …)` hands to its callback, or on a `QueryRunner`
 * after `startTransaction()`. Describes both structurally, so this file never loads `typeorm`.
 */
import { OutboxError } from '../core/errors.js';
import type { AsyncExecutor, Dialect, SqlRow, TransactionState } from '../core/ports.js';

/** The part of a TypeORM `DataSource` read here: which database it is. */
export interface TypeOrmDataSourceLike {
  readonly options: { readonly type: string };
}

/** A TypeORM `QueryRunner`. */
export interface TypeOrmQueryRunnerLike {
  query(query: string, parameters?: unknown[]): Promise<unknown>;
  readonly isTransactionActive: boolean;
  readonly isReleased: boolean;
  /** TypeORM ≥ 1.0; `connection` before. */
  readonly dataSource?: TypeOrmDataSourceLike;
  readonly connection?: TypeOrmDataSourceLike;
}

/** A TypeORM `EntityManager`: a transaction's has a `queryRunner`, the data source's own has none. */
export interface TypeOrmEntityManagerLike {
  readonly queryRunner?: TypeOrmQueryRunnerLike;
  readonly dataSource?: TypeOrmDataSourceLike;
  readonly connection?: TypeOrmDataSourceLike;
}

const DIALECTS: Readonly<Record<string, Dialect>> = {
  postgres: 'postgres',
  'aurora-postgres': 'postgres',
  mysql: 'mysql',
  mariadb: 'mysql',
  'aurora-mysql': 'mysql',
  'better-sqlite3': 'sqlite',
  sqlite: 'sqlite',
};

/**
 * Wraps a TypeORM entity manager or query runner that is inside a transaction for `add()`.
 * @example
 * await dataSource.transaction(async (manager) => {
 *   await manager.insert(Order, { id: orderId, total });
 *   await outbox.add(fromTypeORM(manager), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 * });
 */
export function fromTypeORM(handle: TypeOrmEntityManagerLike | TypeOrmQueryRunnerLike): AsyncExecutor {
  const runner = 'isTransactionActive' in handle ? handle : handle.queryRunner;
  const source = handle.dataSource ?? handle.connection;
  const dialect = source && DIALECTS[source.options.type];
  if (!dialect) {
    throw new OutboxError(
      'INVALID_EXECUTOR',
      `fromTypeORM needs an EntityManager or QueryRunner of a PostgreSQL, MySQL/MariaDB or SQLite data source (got "${source?.options.type}")`,
    );
  }
  return {
    dialect,
    sync: false,
    async query(sql, params) {
      // add() refuses an entity manager without a query runner before it gets here.
      if (!runner) throw new OutboxError('NOT_IN_TRANSACTION', 'the entity manager is not in a transaction');
      const result = await runner.query(sql, params as unknown[]);
      // SQL that returns no rows gives the driver's write result (SQLite's changes, MySQL's OkPacket).
      return Array.isArray(result) ? (result as SqlRow[]) : [];
    },
    transactionState(): TransactionState {
      return runner?.isTransactionActive && !runner.isReleased ? 'active' : 'none';
    },
  };
}
