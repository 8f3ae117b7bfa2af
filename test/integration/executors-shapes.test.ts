/**
 * The executors' structural types against the libraries' real types (checked by tsc: a library
 * whose API drifts from what an executor describes breaks `npm run typecheck`), the dialect each
 * executor reads from a real, unconnected instance of its library, and the placeholder rewriting
 * for knex.raw().
 */
import type { EntityManager as MikroEntityManager } from '@mikro-orm/postgresql';
import type { ClientOtherOps, getPrismaClient, ITXClientDenyList } from '@prisma/client/runtime/client';
import Database from 'better-sqlite3';
import { type BetterSQLite3Database, drizzle as drizzleBetterSqlite3 } from 'drizzle-orm/better-sqlite3';
import { drizzle as drizzleMysql2, type MySql2Database } from 'drizzle-orm/mysql2';
import { drizzle as drizzleNodePg, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import knex, { type Knex } from 'knex';
import {
  type ControlledTransaction,
  Kysely,
  MysqlDialect,
  PostgresDialect,
  SqliteDialect,
  type Transaction,
} from 'kysely';
import { createPool } from 'mysql2';
import pg from 'pg';
import type postgres from 'postgres';
import type { EntityManager, QueryRunner } from 'typeorm';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import { type DrizzleTransactionLike, fromDrizzle } from '../../src/executors/drizzle.js';
import { fromKnex, type KnexTransactionLike, toKnexRaw } from '../../src/executors/knex.js';
import { fromKysely, type KyselyTransactionLike } from '../../src/executors/kysely.js';
import type { MikroOrmEntityManagerLike } from '../../src/executors/mikro-orm.js';
import { type PostgresJsSqlLike, portableParam } from '../../src/executors/postgres-js.js';
import { fromPrisma, type PrismaTransactionLike } from '../../src/executors/prisma.js';
import {
  fromTypeORM,
  type TypeOrmEntityManagerLike,
  type TypeOrmQueryRunnerLike,
} from '../../src/executors/typeorm.js';
import { expectOutboxError } from '../helpers/expect-error.js';

/** The `tx` a Drizzle database hands to its `transaction()` callback. */
type Tx<Db> = Db extends { transaction(fn: (tx: infer T) => never): unknown } ? T : never;

describe('executor handle types match the libraries', () => {
  it('every real handle (and the non-transaction one add() refuses) fits its structural type (checked by tsc)', () => {
    expectTypeOf<postgres.TransactionSql>().toExtend<PostgresJsSqlLike>();
    expectTypeOf<postgres.Sql>().toExtend<PostgresJsSqlLike>();

    expectTypeOf<Transaction<{ biz: { id: string } }>>().toExtend<KyselyTransactionLike>();
    expectTypeOf<ControlledTransaction<{ biz: { id: string } }>>().toExtend<KyselyTransactionLike>();
    expectTypeOf<Kysely<{ biz: { id: string } }>>().toExtend<KyselyTransactionLike>();

    expectTypeOf<Tx<NodePgDatabase>>().not.toBeNever();
    expectTypeOf<Tx<NodePgDatabase>>().toExtend<DrizzleTransactionLike>();
    expectTypeOf<Tx<PostgresJsDatabase>>().toExtend<DrizzleTransactionLike>();
    expectTypeOf<Tx<BetterSQLite3Database>>().toExtend<DrizzleTransactionLike>();
    expectTypeOf<Tx<MySql2Database>>().toExtend<DrizzleTransactionLike>();
    expectTypeOf<NodePgDatabase>().toExtend<DrizzleTransactionLike>();

    expectTypeOf<Knex.Transaction>().toExtend<KnexTransactionLike>();
    expectTypeOf<Knex>().toExtend<KnexTransactionLike>();

    expectTypeOf<EntityManager>().toExtend<TypeOrmEntityManagerLike>();
    expectTypeOf<QueryRunner>().toExtend<TypeOrmQueryRunnerLike>();

    // The generated PrismaClient's raw queries are typed by ClientOtherOps; a transaction's
    // client is the client less ITXClientDenyList.
    expectTypeOf<ClientOtherOps>().toExtend<Omit<PrismaTransactionLike, '$disconnect'>>();
    type Client = InstanceType<ReturnType<typeof getPrismaClient>>;
    expectTypeOf<Omit<Client, ITXClientDenyList>>().not.toHaveProperty('$disconnect');
    expectTypeOf<Client>().toHaveProperty('$disconnect');

    expectTypeOf<MikroEntityManager>().toExtend<MikroOrmEntityManagerLike>();
  });
});

describe('executors read the dialect from the library', () => {
  const pgPool = new pg.Pool({ connectionString: 'postgres://unused@127.0.0.1:1/none' });
  const sqlite = new Database(':memory:');
  const mysqlPool = createPool({ uri: 'mysql://unused@127.0.0.1:1/none' });

  it('kysely: from its adapter, or the dialect option; unknown without either', () => {
    expect(fromKysely(new Kysely({ dialect: new PostgresDialect({ pool: pgPool }) })).dialect).toBe(
      'postgres',
    );
    expect(fromKysely(new Kysely({ dialect: new SqliteDialect({ database: sqlite }) })).dialect).toBe(
      'sqlite',
    );
    expect(fromKysely(new Kysely({ dialect: new MysqlDialect({ pool: mysqlPool }) })).dialect).toBe('mysql');
    const opaque = { isTransaction: true, executeQuery: async () => ({ rows: [] }) };
    expect(fromKysely(opaque, { dialect: 'mysql' }).dialect).toBe('mysql');
    expectOutboxError(() => fromKysely(opaque), 'INVALID_EXECUTOR', 'dialect');
  });

  it('drizzle: from its classes, synchronous on better-sqlite3', () => {
    expect(fromDrizzle(drizzleNodePg({ client: pgPool })).dialect).toBe('postgres');
    const onSqlite = fromDrizzle(drizzleBetterSqlite3({ client: sqlite }));
    expect([onSqlite.dialect, onSqlite.sync]).toEqual(['sqlite', true]);
    expect(fromDrizzle(drizzleMysql2({ client: mysqlPool })).dialect).toBe('mysql');
    expectOutboxError(() => fromDrizzle({ execute: async () => [] }), 'INVALID_EXECUTOR');
  });

  it('knex: from its client', async () => {
    const clients = { pg: 'postgres', 'better-sqlite3': 'sqlite', mysql2: 'mysql' } as const;
    for (const [client, dialect] of Object.entries(clients)) {
      const k = knex({
        client,
        connection: client === 'better-sqlite3' ? { filename: ':memory:' } : {},
        useNullAsDefault: true,
      });
      expect(fromKnex(k).dialect).toBe(dialect);
      await k.destroy();
    }
    const redshift = knex({ client: 'redshift', connection: {} });
    expectOutboxError(() => fromKnex(redshift), 'INVALID_EXECUTOR', 'redshift');
    await redshift.destroy();
  });

  it('typeorm and prisma: from the data source type and the client provider', () => {
    const manager = (type: string) => ({ dataSource: { options: { type } } });
    expect(fromTypeORM(manager('mariadb')).dialect).toBe('mysql');
    expect(fromTypeORM(manager('better-sqlite3')).dialect).toBe('sqlite');
    expectOutboxError(() => fromTypeORM(manager('mongodb')), 'INVALID_EXECUTOR', 'mongodb');
    const client = { $executeRawUnsafe: async () => 0 };
    expect(fromPrisma({ ...client, _activeProvider: 'mysql' } as PrismaTransactionLike).dialect).toBe(
      'mysql',
    );
    expectOutboxError(() => fromPrisma(client), 'INVALID_EXECUTOR', 'dialect');
  });

  afterAll(async () => {
    await pgPool.end();
    sqlite.close();
    await new Promise<void>((resolve) => mysqlPool.end(() => resolve()));
  });
});

describe('knex.raw() placeholders', () => {
  it('PostgreSQL: each $n becomes a bound ?, every other ? is escaped, quoted text is kept', () => {
    const sql = `SELECT $1::int, '$2 ?' AS "a?$1", $2::jsonb ? 'k', $1 -- $3 ?\n, $$ ? $$, $tag$ $2 $tag$, a$1, col ?$2 /* ? */`;
    const [text, bindings] = toKnexRaw('postgres', sql, ['one', 'two']);
    expect(text).toBe(
      `SELECT ?::int, '$2 \\?' AS "a\\?$1", ?::jsonb \\? 'k', ? -- $3 \\?\n, $$ \\? $$, $tag$ $2 $tag$, a$1, col \\? ? /* \\? */`,
    );
    expect(bindings).toEqual(['one', 'two', 'one', 'two']);
  });

  it('SQLite and MySQL statements already use ? and go unchanged', () => {
    expect(toKnexRaw('sqlite', 'INSERT INTO t VALUES (?, ?)', [1, 2])).toEqual([
      'INSERT INTO t VALUES (?, ?)',
      [1, 2],
    ]);
    expect(toKnexRaw('mysql', 'SELECT ?', [null])).toEqual(['SELECT ?', [null]]);
  });
});

describe('PostgreSQL parameters any driver takes', () => {
  it('dates as ISO-8601, arrays as array literals with quotes and backslashes escaped', () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    expect(portableParam(at)).toBe('2026-01-02T03:04:05.678Z');
    expect(portableParam([at, null])).toBe('{"2026-01-02T03:04:05.678Z",NULL}');
    expect(portableParam(['a"b', 'c\\d', '{x,y}', 42])).toBe('{"a\\"b","c\\\\d","{x,y}","42"}');
    expect(portableParam([])).toBe('{}');
    expect(portableParam('text')).toBe('text');
    expect(portableParam(7)).toBe(7);
  });
});
