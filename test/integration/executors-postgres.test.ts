/**
 * Runs the executor conformance suite unchanged for every executor that writes to PostgreSQL,
 * each on its own schema, through the library's own transactions and savepoints.
 */

import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import { pgSchema, text } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import knex from 'knex';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import postgres from 'postgres';
import { fromPg } from '../../src/executors/pg.js';
import { describeExecutor } from '../conformance/executor.suite.js';
import { ignoreClientErrors, type PostgresFixture } from '../helpers/executor-databases.js';
import {
  type BizTables,
  drizzleHarness,
  knexHarness,
  kyselyHarness,
  nodePostgresHarness,
  onPostgres,
  postgresKiller,
  typeormBiz,
  typeormHarness,
  typeormQueryRunnerHarness,
} from '../helpers/executor-harnesses.js';
import {
  KILL_POSTGRES_JS,
  mikroOrmHarness,
  postgresJsHarness,
  prismaHarness,
} from '../helpers/executor-harnesses-postgres.js';

const pool = (db: PostgresFixture) => ignoreClientErrors(new pg.Pool({ connectionString: db.url, max: 4 }));
const drizzleBiz = (db: PostgresFixture) => pgSchema(db.schema).table('biz', { id: text('id').primaryKey() });
const typeormOptions = (db: PostgresFixture) => ({ type: 'postgres' as const, url: db.url, poolSize: 4 });

describeExecutor(
  'pg (node-postgres client)',
  onPostgres(async (db) => nodePostgresHarness(pool(db), db)),
);

// The suite must see an executor that writes outside the caller's transaction: this one runs
// each statement on a pool connection of its own, and claims to be in the transaction.
describeExecutor(
  'a deliberately broken executor (autocommit on its own connection)',
  onPostgres(async (db) => {
    const autocommit = pool(db);
    const harness = nodePostgresHarness(autocommit, db);
    return {
      ...harness,
      executor: () => ({ ...fromPg(autocommit), transactionState: () => 'active' as const }),
    };
  }),
  { mustFail: ['rollback', 'savepoint', 'kill'] },
);

describeExecutor(
  'postgres.js',
  onPostgres(async (db) => postgresJsHarness(postgres(db.url, { max: 4, onnotice: () => {} }), db)),
);

describeExecutor(
  'kysely (PostgresDialect)',
  onPostgres(async (db) => {
    const dialect = new PostgresDialect({ pool: pool(db) });
    return kyselyHarness(new Kysely<BizTables>({ dialect }).withSchema(db.schema), postgresKiller(db));
  }),
);

describeExecutor(
  'drizzle (node-postgres)',
  onPostgres(async (db) => {
    const client = pool(db);
    const biz = drizzleBiz(db);
    return drizzleHarness(drizzleNodePg({ client }), {
      insertBusinessRow: (tx, id) => tx.insert(biz).values({ id }),
      kill: postgresKiller(db),
      close: () => client.end(),
    });
  }),
);

describeExecutor(
  'drizzle (postgres.js)',
  onPostgres(async (db) => {
    const client = postgres(db.url, { max: 4, onnotice: () => {} });
    const biz = drizzleBiz(db);
    return drizzleHarness(drizzlePostgresJs({ client }), {
      insertBusinessRow: (tx, id) => tx.insert(biz).values({ id }),
      kill: KILL_POSTGRES_JS,
      close: () => client.end(),
    });
  }),
);

describeExecutor(
  'knex (pg)',
  onPostgres(async (db) =>
    knexHarness(
      knex({ client: 'pg', connection: db.url, pool: { min: 0, max: 4 } }),
      postgresKiller(db),
      db.schema,
    ),
  ),
);

describeExecutor(
  'typeorm (EntityManager)',
  onPostgres((db) =>
    typeormHarness(typeormOptions(db), typeormBiz({ schema: db.schema }), postgresKiller(db)),
  ),
);

describeExecutor(
  'typeorm (QueryRunner)',
  onPostgres((db) =>
    typeormQueryRunnerHarness(typeormOptions(db), typeormBiz({ schema: db.schema }), postgresKiller(db)),
  ),
);

describeExecutor(
  'prisma (@prisma/adapter-pg)',
  onPostgres((db) => prismaHarness(pool(db), db)),
);

describeExecutor('mikro-orm (@mikro-orm/postgresql)', onPostgres(mikroOrmHarness));
