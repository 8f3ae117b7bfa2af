/**
 * The executor conformance suite's harnesses, one builder per library, each written once for
 * every database the library runs on: test/integration/executors-*.test.ts give each builder what
 * differs there (the dialect or pool, the table, how to kill a connection). A builder gets a
 * database of test/helpers/executor-databases.ts through `onPostgres`, `onMysql` or `onSqlite`.
 * The libraries run on PostgreSQL alone are in executor-harnesses-postgres.ts.
 */
import { sql as drizzleSql } from 'drizzle-orm';
import type { Knex } from 'knex';
import { type ControlledTransaction, type Kysely, sql as kyselySql } from 'kysely';
import type mysql from 'mysql2/promise';
import type pg from 'pg';
import {
  DataSource,
  type DataSourceOptions,
  type EntityManager,
  EntitySchema,
  type QueryRunner,
} from 'typeorm';
import { type DrizzleTransactionLike, fromDrizzle } from '../../src/executors/drizzle.js';
import { fromKnex } from '../../src/executors/knex.js';
import { fromKysely } from '../../src/executors/kysely.js';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { fromPg } from '../../src/executors/pg.js';
import { fromTypeORM } from '../../src/executors/typeorm.js';
import type { ExecutorHarness } from '../conformance/executor.suite.js';
import {
  type DatabaseFixture,
  type MysqlFixture,
  mysqlFixture,
  type PostgresFixture,
  postgresFixture,
  type SqliteFixture,
  sqliteFixture,
} from './executor-databases.js';

/** What a library's builder makes: the harness less what the database fixture gives. */
export type Built<Tx> = Omit<ExecutorHarness<Tx>, 'store' | 'notifyStore' | 'countBusinessRows'>;

/** Builds a harness on a fresh database of `fixture`, or returns the reason it cannot be had. */
function onDatabase<Db extends DatabaseFixture, Tx>(
  fixture: () => Promise<Db | string>,
  build: (db: Db) => Promise<Built<Tx>>,
): () => Promise<ExecutorHarness<Tx> | string> {
  return async () => {
    const db = await fixture();
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

/** On a fresh PostgreSQL schema. */
export const onPostgres = <Tx>(build: (db: PostgresFixture) => Promise<Built<Tx>>) =>
  onDatabase(postgresFixture, build);
/** On a fresh MariaDB database. */
export const onMysql = <Tx>(build: (db: MysqlFixture) => Promise<Built<Tx>>) =>
  onDatabase(mysqlFixture, build);
/** On a fresh SQLite file. */
export const onSqlite = <Tx>(build: (db: SqliteFixture) => Promise<Built<Tx>>) =>
  onDatabase(sqliteFixture, build);

/** Runs `sql` on a transaction's own handle and resolves to the library's raw result. */
type RawQuery = (sql: string) => PromiseLike<unknown>;

/**
 * Kills the connection `query` runs on, from another connection, while a minute-long sleep runs
 * there (sent with `run`), and rejects with the error the handle saw.
 */
export type Killer = (query: RawQuery, run?: RawQuery) => Promise<never>;

/** The rows of a raw result: node-postgres's result object, mysql2's [rows, fields], or the rows themselves. */
function rowsOf(result: unknown): unknown[] {
  if (!Array.isArray(result)) return (result as { rows: unknown[] }).rows;
  return Array.isArray(result[0]) ? result[0] : result;
}

/** A killer that reads the connection's id with `idSql`, then has the fixture's `kill` end it during `sleepSql`. */
function killerOf(
  idSql: string,
  sleepSql: string,
  kill: (id: number, sleep: () => PromiseLike<unknown>) => Promise<never>,
): Killer {
  return async (query, run = query) => {
    const [row] = rowsOf(await query(idSql)) as { id: number }[];
    return kill(Number(row!.id), () => run(sleepSql));
  };
}

/** pg_terminate_backend on the connection's backend, during a pg_sleep. */
export const postgresKiller = (db: PostgresFixture): Killer =>
  killerOf('SELECT pg_backend_pid() AS id', 'SELECT pg_sleep(60)', (pid, sleep) => db.kill(pid, sleep));
/** KILL CONNECTION on the connection, during a SLEEP(). */
export const mysqlKiller = (db: MysqlFixture): Killer =>
  killerOf('SELECT CONNECTION_ID() AS id', 'SELECT SLEEP(60)', (id, sleep) => db.kill(id, sleep));

/** The harness's kill with `killer` (or why there is none) over the library's raw queries on `tx`. */
export function killOn<Tx>(
  killer: Killer | string,
  query: (tx: Tx, sql: string) => PromiseLike<unknown>,
  run = query,
): ExecutorHarness<Tx>['kill'] {
  if (typeof killer === 'string') return killer;
  return (tx) =>
    killer(
      (sql) => query(tx, sql),
      (sql) => run(tx, sql),
    );
}

/** Runs `fn` in `SAVEPOINT sp`, by hand: released when it returns, rolled back to and rethrown when it throws. */
async function sqlSavepoint<Tx>(tx: Tx, query: RawQuery, fn: (tx: Tx) => unknown): Promise<unknown> {
  await query('SAVEPOINT sp');
  try {
    const result = await fn(tx);
    await query('RELEASE SAVEPOINT sp');
    return result;
  } catch (error) {
    await query('ROLLBACK TO SAVEPOINT sp');
    throw error;
  }
}

/** node-postgres: BEGIN / SAVEPOINT / COMMIT by hand on a pool client. */
export function nodePostgresHarness(pool: pg.Pool, db: PostgresFixture): Built<pg.PoolClient> {
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
    savepoint: (client, fn) => sqlSavepoint(client, (sql) => client.query(sql), fn),
    executor: (client) => fromPg(client),
    insertBusinessRow: (client, id) => client.query(`INSERT INTO "${db.schema}".biz (id) VALUES ($1)`, [id]),
    kill: killOn(postgresKiller(db), (client, sql) => client.query(sql)),
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

/** mysql2's promise API: beginTransaction / SAVEPOINT / commit on a pool connection. */
export function mysql2Harness(pool: mysql.Pool, db: MysqlFixture): Built<mysql.PoolConnection> {
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
    savepoint: (conn, fn) => sqlSavepoint(conn, (sql) => conn.query(sql), fn),
    executor: (conn) => fromMysql2(conn),
    insertBusinessRow: (conn, id) => conn.execute('INSERT INTO biz (id) VALUES (?)', [id]),
    kill: killOn(mysqlKiller(db), (conn, sql) => conn.query(sql)),
    outside: () => fromMysql2(pool),
    ended: 'mysql2 does not record whether its connection is in a transaction',
    close: () => pool.end(),
  };
}

/** The business table as Kysely sees it. */
export interface BizTables {
  biz: { id: string };
}

/** Kysely's controlled transactions and savepoints, whatever its dialect. */
export function kyselyHarness(
  kysely: Kysely<BizTables>,
  killer: Killer | string,
): Built<ControlledTransaction<BizTables>> {
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
    kill: killOn(killer, (trx, sql) => kyselySql.raw(sql).execute(trx)),
    outside: () => fromKysely(kysely),
    async ended() {
      const trx = await kysely.startTransaction().execute();
      await trx.commit().execute();
      return fromKysely(trx);
    },
    close: () => kysely.destroy(),
  };
}

/** Knex's transactions, nested as savepoints, whatever its client; `biz` in `schema` where given. */
export function knexHarness(k: Knex, killer: Killer | string, schema?: string): Built<Knex.Transaction> {
  return {
    transaction: (fn) => k.transaction(async (trx) => fn(trx)),
    savepoint: (trx, fn) => trx.transaction(async (sp) => fn(sp)),
    executor: (trx) => fromKnex(trx),
    insertBusinessRow: (trx, id) =>
      (schema === undefined ? trx.queryBuilder() : trx.withSchema(schema)).insert({ id }).into('biz'),
    kill: killOn(killer, (trx, sql) => trx.raw(sql)),
    outside: () => fromKnex(k),
    async ended() {
      const trx = await k.transaction();
      await trx.commit();
      return fromKnex(trx);
    },
    close: () => k.destroy(),
  };
}

/** A Drizzle transaction of any driver: it nests (a savepoint) and, on a server database, runs raw SQL. */
interface DrizzleTx<Tx> extends DrizzleTransactionLike {
  transaction(fn: (sp: Tx) => never): unknown;
}

export interface DrizzleOptions<Tx> {
  /** Inserts into `biz`: its table is declared per dialect, and SQLite's insert is run synchronously. */
  insertBusinessRow(tx: Tx, id: string): unknown;
  readonly kill: Killer | string;
  readonly ended?: string;
  close(): Promise<void>;
}

/**
 * Drizzle's db.transaction and tx.transaction (a savepoint), whatever its driver. No async
 * wrapper: a synchronous driver (better-sqlite3) needs the callback's value as it is.
 */
export function drizzleHarness<Tx extends DrizzleTx<Tx>>(
  drizzle: { transaction(fn: (tx: Tx) => never): unknown } & DrizzleTransactionLike,
  options: DrizzleOptions<Tx>,
): Built<Tx> {
  return {
    transaction: (fn) => drizzle.transaction((tx) => fn(tx) as never),
    savepoint: (tx, fn) => tx.transaction((sp) => fn(sp) as never),
    executor: (tx) => fromDrizzle(tx),
    insertBusinessRow: options.insertBusinessRow,
    kill: killOn(options.kill, (tx, sql) => tx.execute!(drizzleSql.raw(sql))),
    outside: () => fromDrizzle(drizzle),
    ended:
      options.ended ??
      "Drizzle's tx keeps no state once db.transaction has settled: use it inside the callback only",
    close: options.close,
  };
}

/** `biz` as a TypeORM entity: in `schema` where given, its key `length` long where the database needs one. */
export function typeormBiz(options: { schema?: string; length?: number } = {}) {
  const { schema, length } = options;
  return new EntitySchema<{ id: string }>({
    name: 'Biz',
    tableName: 'biz',
    ...(schema === undefined ? {} : { schema }),
    columns: { id: { type: String, primary: true, ...(length === undefined ? {} : { length }) } },
  });
}

type TypeormBiz = ReturnType<typeof typeormBiz>;

/** A query runner's transaction that has committed: TypeORM says so. */
async function committedQueryRunner(dataSource: DataSource): Promise<QueryRunner> {
  const runner = dataSource.createQueryRunner();
  await runner.startTransaction();
  await runner.commitTransaction();
  await runner.release();
  return runner;
}

/** TypeORM's EntityManager: dataSource.transaction, and manager.transaction as a savepoint. */
export async function typeormHarness(
  options: DataSourceOptions,
  biz: TypeormBiz,
  killer: Killer | string,
): Promise<Built<EntityManager>> {
  const dataSource = await new DataSource({ ...options, entities: [biz] }).initialize();
  return {
    transaction: (fn) => dataSource.transaction(async (manager) => fn(manager)),
    savepoint: (manager, fn) => manager.transaction(async (inner) => fn(inner)),
    executor: (manager) => fromTypeORM(manager),
    insertBusinessRow: (manager, id) => manager.insert(biz, { id }),
    kill: killOn(killer, (manager, sql) => manager.query(sql)),
    outside: () => fromTypeORM(dataSource.manager),
    ended: async () => fromTypeORM((await committedQueryRunner(dataSource)).manager),
    close: () => dataSource.destroy(),
  };
}

/** Runs `fn` in a transaction of `runner` (a savepoint when one is open): committed, or rolled back and rethrown. */
async function inRunnerTransaction(
  runner: QueryRunner,
  fn: (runner: QueryRunner) => unknown,
): Promise<unknown> {
  await runner.startTransaction();
  try {
    const result = await fn(runner);
    await runner.commitTransaction();
    return result;
  } catch (error) {
    await runner.rollbackTransaction();
    throw error;
  }
}

/** TypeORM's QueryRunner: startTransaction by hand, nested as a savepoint. */
export async function typeormQueryRunnerHarness(
  options: DataSourceOptions,
  biz: TypeormBiz,
  killer: Killer | string,
): Promise<Built<QueryRunner>> {
  const dataSource = await new DataSource({ ...options, entities: [biz] }).initialize();
  return {
    async transaction(fn) {
      const runner = dataSource.createQueryRunner();
      try {
        return await inRunnerTransaction(runner, fn);
      } finally {
        await runner.release();
      }
    },
    savepoint: (runner, fn) => inRunnerTransaction(runner, fn),
    executor: (runner) => fromTypeORM(runner),
    insertBusinessRow: (runner, id) => runner.manager.insert(biz, { id }),
    kill: killOn(killer, (runner, sql) => runner.query(sql)),
    outside: () => fromTypeORM(dataSource.createQueryRunner()),
    ended: async () => fromTypeORM(await committedQueryRunner(dataSource)),
    close: () => dataSource.destroy(),
  };
}
