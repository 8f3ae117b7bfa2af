/**
 * Runs the executor conformance suite unchanged for every executor that writes to MySQL/MariaDB
 * (MariaDB 10.11 here), each on its own database, through the library's own transactions and
 * savepoints. Prisma and MikroORM on MySQL need packages not installed here
 * (@prisma/adapter-mariadb, @mikro-orm/mariadb): see their docs pages.
 */
import { sql as drizzleSql } from 'drizzle-orm';
import { mysqlTable, varchar } from 'drizzle-orm/mysql-core';
import { drizzle as drizzleMysql2 } from 'drizzle-orm/mysql2';
import knex from 'knex';
import { type ControlledTransaction, Kysely, sql as kyselySql, MysqlDialect } from 'kysely';
import mysqlCallback from 'mysql2';
import mysql from 'mysql2/promise';
import { DataSource, type EntityManager, EntitySchema } from 'typeorm';
import { fromDrizzle } from '../../src/executors/drizzle.js';
import { fromKnex } from '../../src/executors/knex.js';
import { fromKysely } from '../../src/executors/kysely.js';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { fromTypeORM } from '../../src/executors/typeorm.js';
import { describeExecutor, type ExecutorHarness } from '../conformance/executor.suite.js';
import { type MysqlFixture, mysqlFixture } from '../helpers/executor-databases.js';

const SLEEP = 'SELECT SLEEP(60)';
const ID = 'SELECT CONNECTION_ID() AS id';
type Id = { id: number };

type Built<Tx> = Omit<ExecutorHarness<Tx>, 'store' | 'notifyStore' | 'countBusinessRows'>;

/** Builds a harness on a fresh database, or returns the reason MariaDB cannot be used. */
function onMysql<Tx>(
  build: (db: MysqlFixture) => Promise<Built<Tx>>,
): () => Promise<ExecutorHarness<Tx> | string> {
  return async () => {
    const db = await mysqlFixture();
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

describeExecutor(
  'mysql2 (promise connection)',
  onMysql<mysql.PoolConnection>(async (db) => {
    const pool = mysql.createPool({ uri: db.url, connectionLimit: 4 });
    return {
      async transaction(fn) {
        const conn = await pool.getConnection();
        try {
          await conn.beginTransaction();
          const result = await fn(conn);
          await conn.commit();
          conn.release();
          return result;
        } catch (error) {
          await conn.rollback().then(
            () => conn.release(),
            () => conn.destroy(),
          );
          throw error;
        }
      },
      async savepoint(conn, fn) {
        await conn.query('SAVEPOINT sp');
        try {
          const result = await fn(conn);
          await conn.query('RELEASE SAVEPOINT sp');
          return result;
        } catch (error) {
          await conn.query('ROLLBACK TO SAVEPOINT sp');
          throw error;
        }
      },
      executor: (conn) => fromMysql2(conn),
      insertBusinessRow: (conn, id) => conn.execute('INSERT INTO biz (id) VALUES (?)', [id]),
      async kill(conn) {
        const [rows] = await conn.query(ID);
        return db.kill((rows as Id[])[0]!.id, () => conn.query(SLEEP));
      },
      outside: () => fromMysql2(pool),
      ended: 'mysql2 does not record whether its connection is in a transaction',
      close: () => pool.end(),
    };
  }),
);

interface KyselyDb {
  biz: { id: string };
}

describeExecutor(
  'kysely (MysqlDialect)',
  onMysql<ControlledTransaction<KyselyDb>>(async (db) => {
    const pool = mysqlCallback.createPool({ uri: db.url, connectionLimit: 4 });
    const kysely = new Kysely<KyselyDb>({ dialect: new MysqlDialect({ pool }) });
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
        const { rows } = await kyselySql<Id>`SELECT CONNECTION_ID() AS id`.execute(trx);
        return db.kill(rows[0]!.id, () => kyselySql.raw(SLEEP).execute(trx));
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

describeExecutor(
  'knex (mysql2)',
  onMysql<knex.Knex.Transaction>(async (db) => {
    const k = knex({ client: 'mysql2', connection: db.url, pool: { min: 0, max: 4 } });
    return {
      transaction: (fn) => k.transaction(async (trx) => fn(trx)),
      savepoint: (trx, fn) => trx.transaction(async (sp) => fn(sp)),
      executor: (trx) => fromKnex(trx),
      insertBusinessRow: (trx, id) => trx.insert({ id }).into('biz'),
      async kill(trx) {
        const [rows] = (await trx.raw(ID)) as [Id[]];
        return db.kill(rows[0]!.id, () => trx.raw(SLEEP));
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

const drizzleBiz = mysqlTable('biz', { id: varchar('id', { length: 64 }).primaryKey() });

describeExecutor(
  'drizzle (mysql2)',
  onMysql(async (db) => {
    const pool = mysql.createPool({ uri: db.url, connectionLimit: 4 });
    const drizzle = drizzleMysql2({ client: pool });
    type Tx = Parameters<Parameters<typeof drizzle.transaction>[0]>[0];
    return {
      transaction: (fn: (tx: Tx) => unknown) => drizzle.transaction(async (tx) => fn(tx)),
      savepoint: (tx: Tx, fn: (tx: Tx) => unknown) => tx.transaction(async (sp) => fn(sp)),
      executor: (tx: Tx) => fromDrizzle(tx),
      insertBusinessRow: (tx: Tx, id: string) => tx.insert(drizzleBiz).values({ id }),
      async kill(tx: Tx) {
        const [rows] = await tx.execute(drizzleSql.raw(ID));
        return db.kill((rows as unknown as Id[])[0]!.id, () => tx.execute(drizzleSql.raw(SLEEP)));
      },
      outside: () => fromDrizzle(drizzle),
      ended: "Drizzle's tx keeps no state once db.transaction has settled: use it inside the callback only",
      close: () => pool.end(),
    };
  }),
);

describeExecutor(
  'typeorm (mariadb, EntityManager)',
  onMysql<EntityManager>(async (db) => {
    const biz = new EntitySchema<{ id: string }>({
      name: 'Biz',
      tableName: 'biz',
      columns: { id: { type: String, primary: true, length: 64 } },
    });
    const dataSource = await new DataSource({
      type: 'mariadb',
      url: db.url,
      entities: [biz],
      poolSize: 4,
    }).initialize();
    return {
      transaction: (fn) => dataSource.transaction(async (manager) => fn(manager)),
      savepoint: (manager, fn) => manager.transaction(async (inner) => fn(inner)),
      executor: (manager) => fromTypeORM(manager),
      insertBusinessRow: (manager, id) => manager.insert(biz, { id }),
      async kill(manager) {
        const [row] = (await manager.query(ID)) as Id[];
        return db.kill(row!.id, () => manager.query(SLEEP));
      },
      outside: () => fromTypeORM(dataSource.manager),
      async ended() {
        const runner = dataSource.createQueryRunner();
        await runner.startTransaction();
        await runner.commitTransaction();
        await runner.release();
        return fromTypeORM(runner.manager);
      },
      close: () => dataSource.destroy(),
    };
  }),
);
