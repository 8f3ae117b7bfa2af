/**
 * The Prisma executor: runs outbox's SQL on the client that an interactive transaction,
 * `prisma.$transaction(async (tx) => …)`, hands to its callback, through `$executeRawUnsafe`
 * with bound parameters. Describes that client structurally, so this file never loads
 * `@prisma/client`.
 */
import { OutboxError } from '../core/errors.js';
import type { AsyncExecutor, Dialect, SqlRow, TransactionState } from '../core/ports.js';

/**
 * The client of an interactive transaction. The top-level `PrismaClient` also fits, but runs
 * each query on its own: `add()` refuses it (it has `$disconnect`, which Prisma leaves out of a
 * transaction's client).
 */
export interface PrismaTransactionLike {
  $executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
  readonly $disconnect?: unknown;
}

export interface FromPrismaOptions {
  /** The database the client runs on; default: read from the client's provider. */
  readonly dialect?: Dialect;
}

const PROVIDERS: Readonly<Record<string, Dialect>> = {
  postgresql: 'postgres',
  mysql: 'mysql',
  sqlite: 'sqlite',
};

/**
 * Wraps the client of a Prisma interactive transaction for `add()`.
 * @example
 * await prisma.$transaction(async (tx) => {
 *   await tx.order.create({ data: { id: orderId, total } });
 *   await outbox.add(fromPrisma(tx), { type: 'order.placed', aggregateType: 'order', aggregateId: orderId, payload });
 * });
 */
export function fromPrisma(tx: PrismaTransactionLike, options: FromPrismaOptions = {}): AsyncExecutor {
  const dialect = options.dialect ?? providerDialect(tx);
  return {
    dialect,
    sync: false,
    // add() reads no rows back, and $queryRawUnsafe would decode every column: Prisma cannot
    // decode pg_notify's void, which add()'s statement returns when `notify` is on.
    async query(sql, params): Promise<SqlRow[]> {
      await tx.$executeRawUnsafe(sql, ...params);
      return [];
    },
    transactionState: (): TransactionState => (typeof tx.$disconnect === 'function' ? 'none' : 'active'),
  };
}

function providerDialect(tx: PrismaTransactionLike): Dialect {
  // Not in Prisma's types, but set on every client (and seen through a transaction's client).
  const provider = (tx as { _activeProvider?: unknown })._activeProvider;
  const dialect = typeof provider === 'string' ? PROVIDERS[provider] : undefined;
  if (!dialect) {
    throw new OutboxError(
      'INVALID_EXECUTOR',
      `fromPrisma cannot tell the database of this client (provider "${String(provider)}"): pass { dialect: 'postgres' | 'mysql' | 'sqlite' }`,
    );
  }
  return dialect;
}
