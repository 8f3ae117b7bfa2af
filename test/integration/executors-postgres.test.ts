/**
 * Runs the executor conformance suite unchanged for every executor that writes to PostgreSQL,
 * each on its own schema, through the library's own transactions and savepoints.
 */

import { EntitySchema as MikroEntitySchema, MikroORM, PostgreSqlDriver } from '@mikro-orm/postgresql';
import { PrismaPg } from '@prisma/adapter-pg';
import { sql as drizzleSql } from 'drizzle-orm';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import { pgSchema, text } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import knex from 'knex';
import { type ControlledTransaction, Kysely, sql as kyselySql, PostgresDialect } from 'kysely';
import pg from 'pg';
import postgres from 'postgres';
import { DataSource, type EntityManager, EntitySchema, type QueryRunner } from 'typeorm';
import { fromDrizzle } from '../../src/executors/drizzle.js';
import { fromKnex } from '../../src/executors/knex.js';
import { fromKysely } from '../../src/executors/kysely.js';
import { fromMikroORM } from '../../src/executors/mikro-orm.js';
import { fromPg } from '../../src/executors/pg.js';
import { fromPostgresJs } from '../../src/executors/postgres-js.js';
import { fromPrisma } from '../../src/executors/prisma.js';
import { fromTypeORM } from '../../src/executors/typeorm.js';
import { describeExecutor, type ExecutorHarness } from '../conformance/executor.suite.js';
import { ignoreClientErrors, type PostgresFixture, postgresFixture } from '../helpers/executor-databases.js';
import { generatePrismaClient } from '../helpers/prisma-client.js';

const SLEEP = 'SELECT pg_sleep(60)';
const PID = 'SELECT pg_backend_pid() AS pid';
type Pid = { pid: number };
/** Seen here with a plain postgres.js script too, without outbox: an upstream defect. */
const KILL_POSTGRES_JS =
  "postgres.js 3.4.9 crashes the process (uncaught TypeError in connection.js nextWrite) when a transaction's connection is terminated and sql.begin sends its ROLLBACK: porsager/postgres#1154, fix proposed in #1209";
const ENDED_POSTGRES_JS =
  "postgres.js's transaction sql keeps no state once sql.begin has settled: use it inside the callback only";
const ENDED_DRIZZLE =
  "Drizzle's tx keeps no state once db.transaction has settled: use it inside the callback only";

/** Builds a harness on a fresh schema, or returns the reason PostgreSQL cannot be used. */
type Built<Tx> = Omit<ExecutorHarness<Tx>, 'store' | 'notifyStore' | 'countBusinessRows'>;

function onPostgres<Tx>(
  build: (db: PostgresFixture) => Promise<Built<Tx>>,
): () => Promise<ExecutorHarness<Tx> | string> {
  return async () => {
    const db = await postgresFixture();
    if (typeof db === 'string') return db;
    const harness = await build(db).catch(async (error: unknown) => {
      await db.close();
      throw error;
    });
    return {
      ...harness,
      store: db.store,
      notifyStore: db.notifyStore,
      countBusinessRows: (id) => db.countBusinessRows(id),
      async close() {
        await harness.close();
        await db.close();
      },
    };
  };
}

/** node-postgres: BEGIN / SAVEPOINT / COMMIT by hand on a pool client. */
async function nodePostgresHarness(db: PostgresFixture, pool: pg.Pool): Promise<Built<pg.PoolClient>> {
  const biz = `"${db.schema}".biz`;
  return {
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        client.release();
        return result;
      } catch (error) {
        await client.query('ROLLBACK').then(
          () => client.release(),
          (e: Error) => client.release(e),
        );
        throw error;
      }
    },
    async savepoint(client, fn) {
      await client.query('SAVEPOINT sp');
      try {
        const result = await fn(client);
        await client.query('RELEASE SAVEPOINT sp');
        return result;
      } catch (error) {
        await client.query('ROLLBACK TO SAVEPOINT sp');
        throw error;
      }
    },
    executor: (client) => fromPg(client),
    insertBusinessRow: (client, id) => client.query(`INSERT INTO ${biz} (id) VALUES ($1)`, [id]),
    kill: async (client) => db.kill((await client.query<Pid>(PID)).rows[0]!.pid, () => client.query(SLEEP)),
    outside: () => fromPg(pool),
    async ended() {
      const client = await pool.connect();
      await client.query('BEGIN');
      await client.query('COMMIT');
      client.release();
      return fromPg(client);
    },
    close: () => pool.end(),
  };
}

describeExecutor(
  'pg (node-postgres client)',
  onPostgres((db) =>
    nodePostgresHarness(db, ignoreClientErrors(new pg.Pool({ connectionString: db.url, max: 4 }))),
  ),
);

// The suite must see an executor that writes outside the caller's transaction: this one runs
// each statement on a pool connection of its own, and claims to be in the transaction.
describeExecutor(
  'a deliberately broken executor (autocommit on its own connection)',
  onPostgres<pg.PoolClient>(async (db) => {
    const pool = ignoreClientErrors(new pg.Pool({ connectionString: db.url, max: 4 }));
    const harness = await nodePostgresHarness(db, pool);
    return { ...harness, executor: () => ({ ...fromPg(pool), transactionState: () => 'active' as const }) };
  }),
  { mustFail: ['rollback', 'savepoint', 'kill'] },
);

describeExecutor(
  'postgres.js',
  onPostgres<postgres.TransactionSql>(async (db) => {
    const sql = postgres(db.url, { max: 4, onnotice: () => {} });
    return {
      transaction: (fn) => sql.begin((tx) => fn(tx)),
      savepoint: (tx, fn) => tx.savepoint((sp) => fn(sp)),
      executor: (tx) => fromPostgresJs(tx),
      insertBusinessRow: (tx, id) => tx`INSERT INTO ${tx(db.schema)}.biz (id) VALUES (${id})`,
      kill: KILL_POSTGRES_JS,
      outside: () => fromPostgresJs(sql),
      ended: ENDED_POSTGRES_JS,
      close: () => sql.end(),
    };
  }),
);

interface KyselyDb {
  biz: { id: string };
}

describeExecutor(
  'kysely (PostgresDialect)',
  onPostgres<ControlledTransaction<KyselyDb>>(async (db) => {
    const pool = ignoreClientErrors(new pg.Pool({ connectionString: db.url, max: 4 }));
    const kysely = new Kysely<KyselyDb>({ dialect: new PostgresDialect({ pool }) }).withSchema(db.schema);
    return {
      async transaction(fn) {
        const trx = await kysely.startTransaction().execute();
        try {
          const result = await fn(trx);
          await trx.commit().execute();
          return result;
        } catch (error) {
          await trx.rollback().execute();
          throw error;
        }
      },
      async savepoint(trx, fn) {
        const sp = await trx.savepoint('sp').execute();
        try {
          const result = await fn(sp);
          await sp.releaseSavepoint('sp').execute();
          return result;
        } catch (error) {
          await sp.rollbackToSavepoint('sp').execute();
          throw error;
        }
      },
      executor: (trx) => fromKysely(trx),
      insertBusinessRow: (trx, id) => trx.insertInto('biz').values({ id }).execute(),
      async kill(trx) {
        const { rows } = await kyselySql<Pid>`SELECT pg_backend_pid() AS pid`.execute(trx);
        return db.kill(rows[0]!.pid, () => kyselySql.raw(SLEEP).execute(trx));
      },
      outside: () => fromKysely(kysely),
      async ended() {
        const trx = await kysely.startTransaction().execute();
        await trx.commit().execute();
        return fromKysely(trx);
      },
      close: () => kysely.destroy(),
    };
  }),
);

const drizzleBiz = (schema: string) => pgSchema(schema).table('biz', { id: text('id').primaryKey() });

describeExecutor(
  'drizzle (node-postgres)',
  onPostgres(async (db) => {
    const pool = ignoreClientErrors(new pg.Pool({ connectionString: db.url, max: 4 }));
    const drizzle = drizzleNodePg({ client: pool });
    type Tx = Parameters<Parameters<typeof drizzle.transaction>[0]>[0];
    const biz = drizzleBiz(db.schema);
    return {
      transaction: (fn: (tx: Tx) => unknown) => drizzle.transaction(async (tx) => fn(tx)),
      savepoint: (tx: Tx, fn: (tx: Tx) => unknown) => tx.transaction(async (sp) => fn(sp)),
      executor: (tx: Tx) => fromDrizzle(tx),
      insertBusinessRow: (tx: Tx, id: string) => tx.insert(biz).values({ id }),
      async kill(tx: Tx) {
        const { rows } = await tx.execute<Pid>(drizzleSql.raw(PID));
        return db.kill(rows[0]!.pid, () => tx.execute(drizzleSql.raw(SLEEP)));
      },
      outside: () => fromDrizzle(drizzle),
      ended: ENDED_DRIZZLE,
      close: () => pool.end(),
    };
  }),
);

describeExecutor(
  'drizzle (postgres.js)',
  onPostgres(async (db) => {
    const client = postgres(db.url, { max: 4, onnotice: () => {} });
    const drizzle = drizzlePostgresJs({ client });
    type Tx = Parameters<Parameters<typeof drizzle.transaction>[0]>[0];
    const biz = drizzleBiz(db.schema);
    return {
      transaction: (fn: (tx: Tx) => unknown) => drizzle.transaction(async (tx) => fn(tx)),
      savepoint: (tx: Tx, fn: (tx: Tx) => unknown) => tx.transaction(async (sp) => fn(sp)),
      executor: (tx: Tx) => fromDrizzle(tx),
      insertBusinessRow: (tx: Tx, id: string) => tx.insert(biz).values({ id }),
      kill: KILL_POSTGRES_JS,
      outside: () => fromDrizzle(drizzle),
      ended: ENDED_DRIZZLE,
      close: () => client.end(),
    };
  }),
);

describeExecutor(
  'knex (pg)',
  onPostgres<knex.Knex.Transaction>(async (db) => {
    const k = knex({ client: 'pg', connection: db.url, pool: { min: 0, max: 4 } });
    return {
      transaction: (fn) => k.transaction(async (trx) => fn(trx)),
      savepoint: (trx, fn) => trx.transaction(async (sp) => fn(sp)),
      executor: (trx) => fromKnex(trx),
      insertBusinessRow: (trx, id) => trx.withSchema(db.schema).insert({ id }).into('biz'),
      async kill(trx) {
        const { rows } = await trx.raw<{ rows: Pid[] }>(PID);
        return db.kill(rows[0]!.pid, () => trx.raw(SLEEP));
      },
      outside: () => fromKnex(k),
      async ended() {
        const trx = await k.transaction();
        await trx.commit();
        return fromKnex(trx);
      },
      close: () => k.destroy(),
    };
  }),
);

const typeormBiz = (schema?: string) =>
  new EntitySchema<{ id: string }>({
    name: 'Biz',
    tableName: 'biz',
    schema,
    columns: { id: { type: String, primary: true } },
  });

async function typeormDataSource(db: PostgresFixture) {
  const biz = typeormBiz(db.schema);
  const dataSource = await new DataSource({
    type: 'postgres',
    url: db.url,
    entities: [biz],
    poolSize: 4,
  }).initialize();
  return { dataSource, biz };
}

/** A query runner's transaction that has committed: TypeORM says so. */
async function committedQueryRunner(dataSource: DataSource): Promise<QueryRunner> {
  const runner = dataSource.createQueryRunner();
  await runner.startTransaction();
  await runner.commitTransaction();
  await runner.release();
  return runner;
}

describeExecutor(
  'typeorm (EntityManager)',
  onPostgres<EntityManager>(async (db) => {
    const { dataSource, biz } = await typeormDataSource(db);
    return {
      transaction: (fn) => dataSource.transaction(async (manager) => fn(manager)),
      savepoint: (manager, fn) => manager.transaction(async (inner) => fn(inner)),
      executor: (manager) => fromTypeORM(manager),
      insertBusinessRow: (manager, id) => manager.insert(biz, { id }),
      async kill(manager) {
        const [row] = (await manager.query(PID)) as Pid[];
        return db.kill(row!.pid, () => manager.query(SLEEP));
      },
      outside: () => fromTypeORM(dataSource.manager),
      ended: async () => fromTypeORM((await committedQueryRunner(dataSource)).manager),
      close: () => dataSource.destroy(),
    };
  }),
);

describeExecutor(
  'typeorm (QueryRunner)',
  onPostgres<QueryRunner>(async (db) => {
    const { dataSource, biz } = await typeormDataSource(db);
    return {
      async transaction(fn) {
        const runner = dataSource.createQueryRunner();
        await runner.startTransaction();
        try {
          const result = await fn(runner);
          await runner.commitTransaction();
          return result;
        } catch (error) {
          await runner.rollbackTransaction();
          throw error;
        } finally {
          await runner.release();
        }
      },
      async savepoint(runner, fn) {
        await runner.startTransaction();
        try {
          const result = await fn(runner);
          await runner.commitTransaction();
          return result;
        } catch (error) {
          await runner.rollbackTransaction();
          throw error;
        }
      },
      executor: (runner) => fromTypeORM(runner),
      insertBusinessRow: (runner, id) => runner.manager.insert(biz, { id }),
      async kill(runner) {
        const [row] = (await runner.query(PID)) as Pid[];
        return db.kill(row!.pid, () => runner.query(SLEEP));
      },
      outside: () => fromTypeORM(dataSource.createQueryRunner()),
      ended: async () => fromTypeORM(await committedQueryRunner(dataSource)),
      close: () => dataSource.destroy(),
    };
  }),
);

describeExecutor(
  'prisma (@prisma/adapter-pg)',
  onPostgres(async (db) => {
    const { PrismaClient } = await generatePrismaClient();
    const pool = ignoreClientErrors(new pg.Pool({ connectionString: db.url, max: 4 }));
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { schema: db.schema }) });
    type Tx = Parameters<Parameters<typeof prisma.$transaction>[0]>[0];
    // Prisma's interactive transactions time out after 5 s by default: too short on a slow machine.
    // A fresh object each time: Prisma writes the parent's id into a nested call's options.
    const limits = () => ({ timeout: 60_000, maxWait: 30_000 });
    return {
      transaction: (fn: (tx: Tx) => unknown) => prisma.$transaction(async (tx) => fn(tx), limits()),
      // Prisma 7 nests an interactive transaction in another as a savepoint.
      savepoint: (tx: Tx, fn: (tx: Tx) => unknown) => tx.$transaction(async (sp) => fn(sp), limits()),
      executor: (tx: Tx) => fromPrisma(tx),
      insertBusinessRow: (tx: Tx, id: string) => tx.biz.create({ data: { id } }),
      async kill(tx: Tx) {
        const [row] = await tx.$queryRawUnsafe<Pid[]>(PID);
        return db.kill(row!.pid, () => tx.$executeRawUnsafe(SLEEP));
      },
      outside: () => fromPrisma(prisma),
      ended:
        "a committed transaction's client is refused by Prisma itself (P2028, transaction already closed), but nothing on it tells before a query is sent",
      async close() {
        await prisma.$disconnect();
        await pool.end();
      },
    };
  }),
);

describeExecutor(
  'mikro-orm (@mikro-orm/postgresql)',
  onPostgres(async (db) => {
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
      async kill(em: Em) {
        const [row] = await em.execute<Pid[]>(PID);
        return db.kill(row!.pid, () => em.execute(SLEEP));
      },
      outside: () => fromMikroORM(orm.em.fork()),
      async ended() {
        await orm.em.fork().transactional(async (em) => {
          last = em;
        });
        return fromMikroORM(last!);
      },
      close: () => orm.close(true),
    };
  }),
);
