/**
 * Runs the executor conformance suite unchanged for every executor that writes to SQLite, each on
 * its own database file. better-sqlite3's and Drizzle's transactions are synchronous: the suite's
 * steps run without an await inside them, and add() returns the ids synchronously.
 */
import Database from 'better-sqlite3';
import { drizzle as drizzleBetterSqlite3 } from 'drizzle-orm/better-sqlite3';
import { sqliteTable, text } from 'drizzle-orm/sqlite-core';
import knex from 'knex';
import { type ControlledTransaction, Kysely, SqliteDialect } from 'kysely';
import { DataSource, type EntityManager, EntitySchema } from 'typeorm';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromDrizzle } from '../../src/executors/drizzle.js';
import { fromKnex } from '../../src/executors/knex.js';
import { fromKysely } from '../../src/executors/kysely.js';
import { fromTypeORM } from '../../src/executors/typeorm.js';
import { describeExecutor, type ExecutorHarness } from '../conformance/executor.suite.js';
import { type SqliteFixture, sqliteFixture } from '../helpers/executor-databases.js';

const NO_KILL = 'SQLite has no connection to kill: the database is a file this process writes itself';

type Built<Tx> = Omit<ExecutorHarness<Tx>, 'store' | 'notifyStore' | 'countBusinessRows' | 'kill'>;

/** Builds a harness on a fresh database file. */
function onSqlite<Tx>(build: (db: SqliteFixture) => Promise<Built<Tx>>): () => Promise<ExecutorHarness<Tx>> {
  return async () => {
    const db = await sqliteFixture();
    const harness = await build(db).catch(async (error: unknown) => {
      await db.close();
      throw error;
    });
    return {
      ...harness,
      store: db.store,
      notifyStore: db.notifyStore,
      countBusinessRows: (id) => db.countBusinessRows(id),
      kill: NO_KILL,
      async close() {
        await harness.close();
        await db.close();
      },
    };
  };
}

describeExecutor(
  'better-sqlite3 (synchronous)',
  onSqlite<Database.Database>(async (db) => {
    const app = new Database(db.path);
    return {
      transaction: (fn) => app.transaction(() => fn(app))(),
      // better-sqlite3 runs a transaction function called inside another as a savepoint.
      savepoint: (tx, fn) => app.transaction(() => fn(tx))(),
      executor: (tx) => fromBetterSqlite3(tx),
      insertBusinessRow: (tx, id) => tx.prepare('INSERT INTO biz (id) VALUES (?)').run(id),
      outside: () => fromBetterSqlite3(app),
      async ended() {
        app.transaction(() => {})();
        return fromBetterSqlite3(app);
      },
      close: async () => void app.close(),
    };
  }),
);

const drizzleBiz = sqliteTable('biz', { id: text('id').primaryKey() });

describeExecutor(
  'drizzle (better-sqlite3, synchronous)',
  onSqlite(async (db) => {
    const app = new Database(db.path);
    const drizzle = drizzleBetterSqlite3({ client: app });
    type Tx = Parameters<Parameters<typeof drizzle.transaction>[0]>[0];
    return {
      transaction: (fn: (tx: Tx) => unknown) => drizzle.transaction((tx) => fn(tx)),
      savepoint: (tx: Tx, fn: (tx: Tx) => unknown) => tx.transaction((sp) => fn(sp)),
      executor: (tx: Tx) => fromDrizzle(tx),
      insertBusinessRow: (tx: Tx, id: string) => tx.insert(drizzleBiz).values({ id }).run(),
      outside: () => fromDrizzle(drizzle),
      ended: "Drizzle's tx keeps no state once db.transaction has returned: use it inside the callback only",
      close: async () => void app.close(),
    };
  }),
);

interface KyselyDb {
  biz: { id: string };
}

describeExecutor(
  'kysely (SqliteDialect)',
  onSqlite<ControlledTransaction<KyselyDb>>(async (db) => {
    const kysely = new Kysely<KyselyDb>({ dialect: new SqliteDialect({ database: new Database(db.path) }) });
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
  'knex (better-sqlite3)',
  onSqlite<knex.Knex.Transaction>(async (db) => {
    const k = knex({ client: 'better-sqlite3', connection: { filename: db.path }, useNullAsDefault: true });
    return {
      transaction: (fn) => k.transaction(async (trx) => fn(trx)),
      savepoint: (trx, fn) => trx.transaction(async (sp) => fn(sp)),
      executor: (trx) => fromKnex(trx),
      insertBusinessRow: (trx, id) => trx.insert({ id }).into('biz'),
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

describeExecutor(
  'typeorm (better-sqlite3, EntityManager)',
  onSqlite<EntityManager>(async (db) => {
    const biz = new EntitySchema<{ id: string }>({
      name: 'Biz',
      tableName: 'biz',
      columns: { id: { type: String, primary: true } },
    });
    const dataSource = await new DataSource({
      type: 'better-sqlite3',
      database: db.path,
      entities: [biz],
    }).initialize();
    return {
      transaction: (fn) => dataSource.transaction(async (manager) => fn(manager)),
      savepoint: (manager, fn) => manager.transaction(async (inner) => fn(inner)),
      executor: (manager) => fromTypeORM(manager),
      insertBusinessRow: (manager, id) => manager.insert(biz, { id }),
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
