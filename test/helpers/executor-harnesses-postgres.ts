/**
 * The executor conformance suite's harnesses for the libraries it runs on PostgreSQL alone
 * (postgres.js, Prisma, MikroORM: their MySQL packages are not installed here), built like those
 * of executor-harnesses.ts.
 */
import { EntitySchema as MikroEntitySchema, MikroORM, PostgreSqlDriver } from '@mikro-orm/postgresql';
import { PrismaPg } from '@prisma/adapter-pg';
import type pg from 'pg';
import type postgres from 'postgres';
import { fromMikroORM } from '../../src/executors/mikro-orm.js';
import { fromPostgresJs } from '../../src/executors/postgres-js.js';
import { fromPrisma } from '../../src/executors/prisma.js';
import type { PostgresFixture } from './executor-databases.js';
import { type Built, killOn, postgresKiller } from './executor-harnesses.js';
import { generatePrismaClient } from './prisma-client.js';

/** Seen here with a plain postgres.js script too, without outbox: an upstream defect. */
export const KILL_POSTGRES_JS =
  "postgres.js 3.4.9 crashes the process (uncaught TypeError in connection.js nextWrite) when a transaction's connection is terminated and sql.begin sends its ROLLBACK: porsager/postgres#1154, fix proposed in #1209";

/** postgres.js: sql.begin, and its savepoints. */
export function postgresJsHarness(sql: postgres.Sql, db: PostgresFixture): Built<postgres.TransactionSql> {
  return {
    transaction: (fn) => sql.begin((tx) => fn(tx)),
    savepoint: (tx, fn) => tx.savepoint((sp) => fn(sp)),
    executor: (tx) => fromPostgresJs(tx),
    insertBusinessRow: (tx, id) => tx`INSERT INTO ${tx(db.schema)}.biz (id) VALUES (${id})`,
    kill: KILL_POSTGRES_JS,
    outside: () => fromPostgresJs(sql),
    ended:
      "postgres.js's transaction sql keeps no state once sql.begin has settled: use it inside the callback only",
    close: () => sql.end(),
  };
}

/** Prisma's interactive transactions over @prisma/adapter-pg, nested as savepoints (Prisma 7). */
export async function prismaHarness(pool: pg.Pool, db: PostgresFixture) {
  const { PrismaClient } = await generatePrismaClient();
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { schema: db.schema }) });
  type Tx = Parameters<Parameters<typeof prisma.$transaction>[0]>[0];
  // Prisma's interactive transactions time out after 5 s by default: too short on a slow machine.
  // A fresh object each time: Prisma writes the parent's id into a nested call's options.
  const limits = () => ({ timeout: 60_000, maxWait: 30_000 });
  return {
    transaction: (fn: (tx: Tx) => unknown) => prisma.$transaction(async (tx) => fn(tx), limits()),
    savepoint: (tx: Tx, fn: (tx: Tx) => unknown) => tx.$transaction(async (sp) => fn(sp), limits()),
    executor: (tx: Tx) => fromPrisma(tx),
    insertBusinessRow: (tx: Tx, id: string) => tx.biz.create({ data: { id } }),
    kill: killOn<Tx>(
      postgresKiller(db),
      (tx, sql) => tx.$queryRawUnsafe(sql),
      (tx, sql) => tx.$executeRawUnsafe(sql),
    ),
    outside: () => fromPrisma(prisma),
    ended:
      "a committed transaction's client is refused by Prisma itself (P2028, transaction already closed), but nothing on it tells before a query is sent",
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  } satisfies Built<Tx>;
}

/** MikroORM's em.transactional on a fork, nested as a savepoint. */
export async function mikroOrmHarness(db: PostgresFixture) {
  const biz = new MikroEntitySchema<{ id: string }>({
    name: 'Biz',
    tableName: 'biz',
    properties: { id: { type: 'string', primary: true } },
  });
  const orm = await MikroORM.init({
    driver: PostgreSqlDriver,
    clientUrl: db.url,
    schema: db.schema,
    entities: [biz],
    pool: { min: 0, max: 4 },
  });
  type Em = typeof orm.em;
  let last: Em | undefined;
  return {
    transaction: (fn: (em: Em) => unknown) =>
      orm.em.fork().transactional(async (em) => {
        last = em;
        return fn(em);
      }),
    savepoint: (em: Em, fn: (em: Em) => unknown) => em.transactional(async (inner) => fn(inner)),
    executor: (em: Em) => fromMikroORM(em),
    insertBusinessRow: (em: Em, id: string) => em.insert(biz, { id }),
    kill: killOn<Em>(postgresKiller(db), (em, sql) => em.execute(sql)),
    outside: () => fromMikroORM(orm.em.fork()),
    async ended() {
      await orm.em.fork().transactional(async (em) => {
        last = em;
      });
      return fromMikroORM(last!);
    },
    close: () => orm.close(true),
  } satisfies Built<Em>;
}
