/**
 * Runs the executor conformance suite unchanged for every executor that writes to SQLite, each on
 * its own database file. better-sqlite3's and Drizzle's transactions are synchronous: the suite's
 * steps run without an await inside them, and add() returns the ids synchronously.
 */
import Database from 'better-sqlite3';
import { drizzle as drizzleBetterSqlite3 } from 'drizzle-orm/better-sqlite3';
import { sqliteTable, text } from 'drizzle-orm/sqlite-core';
import knex from 'knex';
import { Kysely, SqliteDialect } from 'kysely';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { describeExecutor } from '../conformance/executor.suite.js';
import {
  type BizTables,
  drizzleHarness,
  knexHarness,
  kyselyHarness,
  onSqlite,
  typeormBiz,
  typeormHarness,
} from '../helpers/executor-harnesses.js';

const NO_KILL = 'SQLite has no connection to kill: the database is a file this process writes itself';
const drizzleBiz = sqliteTable('biz', { id: text('id').primaryKey() });

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
      kill: NO_KILL,
      outside: () => fromBetterSqlite3(app),
      async ended() {
        app.transaction(() => {})();
        return fromBetterSqlite3(app);
      },
      close: async () => void app.close(),
    };
  }),
);

describeExecutor(
  'drizzle (better-sqlite3, synchronous)',
  onSqlite(async (db) => {
    const app = new Database(db.path);
    return drizzleHarness(drizzleBetterSqlite3({ client: app }), {
      insertBusinessRow: (tx, id) => tx.insert(drizzleBiz).values({ id }).run(),
      kill: NO_KILL,
      ended: "Drizzle's tx keeps no state once db.transaction has returned: use it inside the callback only",
      close: async () => void app.close(),
    });
  }),
);

describeExecutor(
  'kysely (SqliteDialect)',
  onSqlite(async (db) => {
    const dialect = new SqliteDialect({ database: new Database(db.path) });
    return kyselyHarness(new Kysely<BizTables>({ dialect }), NO_KILL);
  }),
);

describeExecutor(
  'knex (better-sqlite3)',
  onSqlite(async (db) =>
    knexHarness(
      knex({ client: 'better-sqlite3', connection: { filename: db.path }, useNullAsDefault: true }),
      NO_KILL,
    ),
  ),
);

describeExecutor(
  'typeorm (better-sqlite3, EntityManager)',
  onSqlite((db) => typeormHarness({ type: 'better-sqlite3', database: db.path }, typeormBiz(), NO_KILL)),
);
