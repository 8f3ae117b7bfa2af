/**
 * Runs the executor conformance suite unchanged for every executor that writes to MySQL/MariaDB
 * (MariaDB 10.11 here), each on its own database, through the library's own transactions and
 * savepoints. Prisma and MikroORM on MySQL need packages not installed here
 * (@prisma/adapter-mariadb, @mikro-orm/mariadb): see their docs pages.
 */
import { mysqlTable, varchar } from 'drizzle-orm/mysql-core';
import { drizzle as drizzleMysql2 } from 'drizzle-orm/mysql2';
import knex from 'knex';
import { Kysely, MysqlDialect } from 'kysely';
import mysqlCallback from 'mysql2';
import mysql from 'mysql2/promise';
import { describeExecutor } from '../conformance/executor.suite.js';
import {
  type BizTables,
  drizzleHarness,
  knexHarness,
  kyselyHarness,
  mysql2Harness,
  mysqlKiller,
  onMysql,
  typeormBiz,
  typeormHarness,
} from '../helpers/executor-harnesses.js';

const drizzleBiz = mysqlTable('biz', { id: varchar('id', { length: 64 }).primaryKey() });

describeExecutor(
  'mysql2 (promise connection)',
  onMysql(async (db) => mysql2Harness(mysql.createPool({ uri: db.url, connectionLimit: 4 }), db)),
);

describeExecutor(
  'kysely (MysqlDialect)',
  onMysql(async (db) => {
    const dialect = new MysqlDialect({ pool: mysqlCallback.createPool({ uri: db.url, connectionLimit: 4 }) });
    return kyselyHarness(new Kysely<BizTables>({ dialect }), mysqlKiller(db));
  }),
);

describeExecutor(
  'knex (mysql2)',
  onMysql(async (db) =>
    knexHarness(knex({ client: 'mysql2', connection: db.url, pool: { min: 0, max: 4 } }), mysqlKiller(db)),
  ),
);

describeExecutor(
  'drizzle (mysql2)',
  onMysql(async (db) => {
    const pool = mysql.createPool({ uri: db.url, connectionLimit: 4 });
    return drizzleHarness(drizzleMysql2({ client: pool }), {
      insertBusinessRow: (tx, id) => tx.insert(drizzleBiz).values({ id }),
      kill: mysqlKiller(db),
      close: () => pool.end(),
    });
  }),
);

describeExecutor(
  'typeorm (mariadb, EntityManager)',
  onMysql((db) =>
    typeormHarness(
      { type: 'mariadb', url: db.url, poolSize: 4 },
      typeormBiz({ length: 64 }),
      mysqlKiller(db),
    ),
  ),
);
