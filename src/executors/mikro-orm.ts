/**
 * The MikroORM 6 executor: runs outbox's SQL on the transaction of an `EntityManager` inside
 * `em.transactional(async (em) => …)` (or after `em.begin()`). MikroORM 6's SQL drivers hold that
 * transaction as a Knex transaction (`em.getTransactionContext()`), so the statement goes
 * through it as `knex.raw()` with bound parameters: MikroORM's own `em.execute()` would inline
 * them into the SQL text instead. Describes `em` structurally, so this file never loads MikroORM.
 */
import { OutboxError } from '../core/errors.js';
import type { AsyncExecutor, TransactionState } from '../core/ports.js';
import { type KnexTransactionLike, knexDialect, knexRows, toKnexRaw } from './knex.js';

/** A MikroORM 6 `EntityManager` of a SQL driver (`@mikro-orm/postgresql`, `mysql`, `mariadb`, `sqlite`, …). */
export interface MikroOrmEntityManagerLike {
  /** The current transaction (a Knex transaction in MikroORM 6), undefined outside one. */
  getTransactionContext(): KnexTransactionLike | undefined;
  /** The driver's Knex instance: its client names the database. */
  getKnex(): Pick<KnexTransactionLike, 'client'>;
}

/**
 * Wraps a MikroORM entity manager that is inside a transaction for `add()`. Entities persisted
 * but not flushed yet are flushed by MikroORM at commit, in the same transaction.
 * @example
 * await orm.em.transactional(async (em) => {
 *   em.persist(em.create(Order, { id: orderId, total }));
 *   await outbox.add(fromMikroORM(em), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 * });
 */
export function fromMikroORM(em: MikroOrmEntityManagerLike): AsyncExecutor {
  const dialect = knexDialect(em.getKnex());
  return {
    dialect,
    sync: false,
    async query(sql, params) {
      const trx = em.getTransactionContext();
      // add() refuses an entity manager outside a transaction before it gets here.
      if (!trx) throw new OutboxError('NOT_IN_TRANSACTION', 'the entity manager is not in a transaction');
      return knexRows(dialect, await trx.raw(...toKnexRaw(dialect, sql, params)));
    },
    transactionState(): TransactionState {
      const trx = em.getTransactionContext();
      return trx?.isTransaction === true && trx.isCompleted?.() !== true ? 'active' : 'none';
    },
  };
}
