/**
 * Every executor of the add() overhead rows, opened the way test/integration/executors-*.test.ts
 * opens it (one connection each: transactions run one after another): how the library runs a
 * transaction, our executor over its handle, and the same statement through the library's own
 * raw-SQL call on that handle. Libraries load only when the scenario runs.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { Executor, Statement } from '../src/core/ports.js';
import { statementName } from '../src/core/sql.js';
import { fromBetterSqlite3 } from '../src/executors/better-sqlite3.js';
import { fromDrizzle } from '../src/executors/drizzle.js';
import { fromKnex, toKnexRaw } from '../src/executors/knex.js';
import { fromKysely } from '../src/executors/kysely.js';
import { fromMikroORM } from '../src/executors/mikro-orm.js';
import { fromMysql2 } from '../src/executors/mysql2.js';
import { fromPg } from '../src/executors/pg.js';
import { fromPostgresJs } from '../src/executors/postgres-js.js';
import { fromPrisma } from '../src/executors/prisma.js';
import { fromTypeORM } from '../src/executors/typeorm.js';

export type LibraryDatabase = 'postgres' | 'mariadb' | 'sqlite';

/** Where the libraries connect: the run's PostgreSQL and MariaDB databases, a SQLite file. */
export interface LibraryTargets {
  readonly pgUrl: string;
  readonly mariadbUrl: string;
  readonly sqlitePath: string;
  /** A scratch folder for Prisma's generated client (removed by the caller). */
  readonly scratch: string;
}

/**
 * One library on one database. `prepare` is untimed (what the caller has before the call: the
 * SQL text in the library's placeholder syntax); `raw` is the timed call.
 */
export interface Library<Tx, Raw> {
  readonly name: string;
  readonly database: LibraryDatabase;
  /** The raw-SQL call, for the row's note. */
  readonly rawCall: string;
  /** Runs `fn` in a transaction the library's way; a promise unless the library's are synchronous. */
  transaction(fn: (tx: Tx) => unknown): unknown;
  executor(tx: Tx): Executor;
  prepare(statement: Statement): Raw;
  raw(tx: Tx, raw: Raw): unknown;
  close(): Promise<void>;
}

/** A library with its types erased, for a list of them. */
export interface AnyLibrary {
  readonly name: string;
  readonly database: LibraryDatabase;
  readonly open: (targets: LibraryTargets) => Promise<Library<unknown, unknown>>;
}

const erased = <Tx, Raw>(library: Library<Tx, Raw>) => library as unknown as Library<unknown, unknown>;

function entry<Tx, Raw>(
  name: string,
  database: LibraryDatabase,
  open: (targets: LibraryTargets) => Promise<Omit<Library<Tx, Raw>, 'name' | 'database'>>,
): AnyLibrary {
  return { name, database, open: async (targets) => erased({ name, database, ...(await open(targets)) }) };
}

const knexRaw = (dialect: 'postgres' | 'mysql') => (statement: Statement) =>
  toKnexRaw(dialect, statement.sql, statement.params);

/**
 * The statement as a tagged template's parts: its text split at the `$n` placeholders, and the
 * value of each placeholder in order of appearance (a `$n` used twice gets its value twice).
 */
function templateOf(statement: Statement): { strings: TemplateStringsArray; values: unknown[] } {
  const parts = statement.sql.split(/\$\d+/);
  const values = [...statement.sql.matchAll(/\$(\d+)/g)].map((m) => statement.params[Number(m[1]) - 1]);
  return { strings: Object.assign(parts, { raw: parts }) as unknown as TemplateStringsArray, values };
}

/** Prisma 7's client for PostgreSQL, generated (offline) and compiled to JavaScript under `scratch`. */
async function generatedPrisma(scratch: string): Promise<{
  PrismaClient: new (options: { adapter: unknown }) => PrismaClientLike;
}> {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const dir = join(scratch, 'prisma');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  // The generated client imports @prisma/client: resolved from the repo's packages.
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(
    join(dir, 'schema.prisma'),
    `generator client {\n  provider = "prisma-client"\n  output = "./client"\n  moduleFormat = "esm"\n}\n` +
      `datasource db {\n  provider = "postgresql"\n}\nmodel Biz {\n  id String @id\n  @@map("biz")\n}\n`,
  );
  const run = promisify(execFile);
  const cli = join(dirname(createRequire(import.meta.url).resolve('prisma/package.json')), 'build/index.js');
  await run(process.execPath, [cli, 'generate', '--schema', join(dir, 'schema.prisma')], {
    env: {
      ...process.env,
      // `prisma generate` only needs a schema engine file to exist (it would download one).
      PRISMA_SCHEMA_ENGINE_BINARY: join(root, 'test/fixtures/prisma/schema-engine.sh'),
      CHECKPOINT_DISABLE: '1',
      PRISMA_HIDE_UPDATE_MESSAGE: '1',
    },
    timeout: 120_000,
  });
  // The generated client is TypeScript: compile it (Node 20 runs no TypeScript).
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2023',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        rewriteRelativeImportExtensions: true,
        noCheck: true,
        skipLibCheck: true,
        types: [],
        rootDir: 'client',
        outDir: 'js',
      },
      include: ['client/**/*.ts'],
    }),
  );
  await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', dir], {
    timeout: 120_000,
  });
  return import(pathToFileURL(join(dir, 'js/client.js')).href);
}

interface PrismaTxLike {
  $executeRawUnsafe(sql: string, ...values: unknown[]): Promise<number>;
}

interface PrismaClientLike extends PrismaTxLike {
  $transaction<T>(
    fn: (tx: PrismaTxLike) => Promise<T>,
    options?: { timeout?: number; maxWait?: number },
  ): Promise<T>;
  $disconnect(): Promise<void>;
}

type PgClient = import('pg').PoolClient;
type PgQuery = { name: string; text: string; values: unknown[] };
type KyselyTransaction = import('kysely').Transaction<unknown>;
type KnexTransaction = import('knex').Knex.Transaction;
type KnexRaw = [string, unknown[]];
type MysqlValues = import('mysql2/promise').ExecuteValues[];
type SqliteRaw = { statement: import('better-sqlite3').Statement; values: readonly unknown[] };

export const LIBRARIES: readonly AnyLibrary[] = [
  entry<PgClient, PgQuery>('pg (node-postgres)', 'postgres', async ({ pgUrl }) => {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: pgUrl, max: 1 });
    return {
      rawCall: 'client.query({ name, text, values }), the statement prepared as add() prepares it',
      async transaction(fn) {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await fn(client);
          await client.query('COMMIT');
          client.release();
        } catch (error) {
          client.release(true); // a failure ends the run: never pool a connection left in a transaction
          throw error;
        }
      },
      executor: (client) => fromPg(client),
      prepare: (s) => ({ name: statementName(s.sql), text: s.sql, values: [...s.params] }),
      raw: (client, query) => client.query(query),
      close: () => pool.end(),
    };
  }),
  entry<import('postgres').TransactionSql, Statement>('postgres.js', 'postgres', async ({ pgUrl }) => {
    const { default: postgres } = await import('postgres');
    const sql = postgres(pgUrl, { max: 1, onnotice: () => {} });
    return {
      rawCall: 'sql.unsafe(text, values, { prepare: true }), as add() sends it',
      transaction: (fn) => sql.begin((tx) => fn(tx)),
      executor: (tx) => fromPostgresJs(tx),
      prepare: (s) => s,
      raw: (tx, s) => tx.unsafe(s.sql, s.params as never[], { prepare: true }),
      close: () => sql.end(),
    };
  }),
  entry<KyselyTransaction, Statement>('kysely (PostgresDialect)', 'postgres', async ({ pgUrl }) => {
    const { default: pg } = await import('pg');
    const { CompiledQuery, Kysely, PostgresDialect } = await import('kysely');
    const db = new Kysely<unknown>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: pgUrl, max: 1 }) }),
    });
    return {
      rawCall: 'trx.executeQuery(CompiledQuery.raw(sql, parameters))',
      transaction: (fn) => db.transaction().execute(async (trx) => fn(trx)),
      executor: (trx) => fromKysely(trx),
      prepare: (s) => s,
      raw: (trx, s) => trx.executeQuery(CompiledQuery.raw(s.sql, [...s.params])),
      close: () => db.destroy(),
    };
  }),
  entry('drizzle (node-postgres)', 'postgres', async ({ pgUrl }) => {
    const { default: pg } = await import('pg');
    const { sql } = await import('drizzle-orm');
    const { drizzle } = await import('drizzle-orm/node-postgres');
    const pool = new pg.Pool({ connectionString: pgUrl, max: 1 });
    const db = drizzle({ client: pool });
    type Tx = Parameters<Parameters<typeof db.transaction>[0]>[0];
    return {
      rawCall: 'tx.execute(sql`…`), the statement as a tagged template of its values',
      transaction: (fn: (tx: Tx) => unknown) => db.transaction(async (tx) => fn(tx)),
      executor: (tx: Tx) => fromDrizzle(tx),
      prepare: templateOf,
      raw: (tx: Tx, r: { strings: TemplateStringsArray; values: readonly unknown[] }) =>
        tx.execute(sql(r.strings, ...r.values)),
      close: () => pool.end(),
    };
  }),
  entry<KnexTransaction, KnexRaw>('knex (pg)', 'postgres', async ({ pgUrl }) => {
    const { default: knex } = await import('knex');
    const k = knex({ client: 'pg', connection: pgUrl, pool: { min: 1, max: 1 } });
    return {
      rawCall: "trx.raw(sql, bindings), the statement in knex's ? placeholders",
      transaction: (fn: (trx: import('knex').Knex.Transaction) => unknown) =>
        k.transaction(async (trx) => fn(trx)),
      executor: (trx) => fromKnex(trx),
      prepare: knexRaw('postgres'),
      raw: (trx, [text, bindings]) => trx.raw(text, bindings as never[]),
      close: () => k.destroy(),
    };
  }),
  entry<import('typeorm').EntityManager, Statement>(
    'typeorm (EntityManager)',
    'postgres',
    async ({ pgUrl }) => {
      const { DataSource } = await import('typeorm');
      const dataSource = await new DataSource({ type: 'postgres', url: pgUrl, poolSize: 1 }).initialize();
      return {
        rawCall: 'manager.query(sql, parameters)',
        transaction: (fn) => dataSource.transaction(async (manager) => fn(manager)),
        executor: (manager) => fromTypeORM(manager),
        prepare: (s) => s,
        raw: (manager, s) => manager.query(s.sql, [...s.params]),
        close: () => dataSource.destroy(),
      };
    },
  ),
  entry<PrismaTxLike, Statement>('prisma (@prisma/adapter-pg)', 'postgres', async ({ pgUrl, scratch }) => {
    const { default: pg } = await import('pg');
    const { PrismaPg } = await import('@prisma/adapter-pg');
    const { PrismaClient } = await generatedPrisma(scratch);
    const pool = new pg.Pool({ connectionString: pgUrl, max: 1 });
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
    return {
      rawCall: 'tx.$executeRawUnsafe(sql, ...values)',
      transaction: (fn) => prisma.$transaction(async (tx) => fn(tx), { timeout: 60_000, maxWait: 30_000 }),
      executor: (tx) => fromPrisma(tx, { dialect: 'postgres' }),
      prepare: (s) => s,
      raw: (tx, s) => tx.$executeRawUnsafe(s.sql, ...s.params),
      async close() {
        await prisma.$disconnect();
        await pool.end();
      },
    };
  }),
  entry('mikro-orm (@mikro-orm/postgresql)', 'postgres', async ({ pgUrl }) => {
    const { EntitySchema, MikroORM, PostgreSqlDriver } = await import('@mikro-orm/postgresql');
    const biz = new EntitySchema<{ id: string }>({
      name: 'Biz',
      tableName: 'biz',
      properties: { id: { type: 'string', primary: true } },
    });
    const orm = await MikroORM.init({
      driver: PostgreSqlDriver,
      clientUrl: pgUrl,
      entities: [biz],
      pool: { min: 1, max: 1 },
    });
    type Em = typeof orm.em;
    return {
      rawCall:
        "em.execute(sql, params, 'run'), which inlines the values into the SQL text (add() binds them)",
      transaction: (fn: (em: Em) => unknown) => orm.em.fork().transactional(async (em) => fn(em)),
      executor: (em: Em) => fromMikroORM(em),
      prepare: knexRaw('postgres'),
      raw: (em: Em, [text, bindings]: [string, unknown[]]) => em.execute(text, bindings, 'run'),
      close: () => orm.close(true),
    };
  }),
  entry<import('mysql2/promise').Connection, Statement>(
    'mysql2 (promise connection)',
    'mariadb',
    async ({ mariadbUrl }) => {
      const { default: mysql } = await import('mysql2/promise');
      const conn = await mysql.createConnection({ uri: mariadbUrl });
      return {
        rawCall: 'conn.execute(sql, values), prepared as add() sends it',
        async transaction(fn) {
          await conn.beginTransaction();
          await fn(conn);
          await conn.commit();
        },
        executor: (c) => fromMysql2(c),
        prepare: (s) => s,
        raw: (c, s) => c.execute(s.sql, s.params as MysqlValues),
        close: () => conn.end(),
      };
    },
  ),
  entry<KnexTransaction, KnexRaw>('knex (mysql2)', 'mariadb', async ({ mariadbUrl }) => {
    const { default: knex } = await import('knex');
    const k = knex({ client: 'mysql2', connection: mariadbUrl, pool: { min: 1, max: 1 } });
    return {
      rawCall: 'trx.raw(sql, bindings)',
      transaction: (fn: (trx: import('knex').Knex.Transaction) => unknown) =>
        k.transaction(async (trx) => fn(trx)),
      executor: (trx) => fromKnex(trx),
      prepare: knexRaw('mysql'),
      raw: (trx, [text, bindings]) => trx.raw(text, bindings as never[]),
      close: () => k.destroy(),
    };
  }),
  entry<KyselyTransaction, Statement>('kysely (MysqlDialect)', 'mariadb', async ({ mariadbUrl }) => {
    const { createPool } = await import('mysql2');
    const { CompiledQuery, Kysely, MysqlDialect } = await import('kysely');
    const db = new Kysely<unknown>({
      dialect: new MysqlDialect({ pool: createPool({ uri: mariadbUrl, connectionLimit: 1 }) }),
    });
    return {
      rawCall: 'trx.executeQuery(CompiledQuery.raw(sql, parameters))',
      transaction: (fn) => db.transaction().execute(async (trx) => fn(trx)),
      executor: (trx) => fromKysely(trx),
      prepare: (s) => s,
      raw: (trx, s) => trx.executeQuery(CompiledQuery.raw(s.sql, [...s.params])),
      close: () => db.destroy(),
    };
  }),
  entry<import('better-sqlite3').Database, SqliteRaw>('better-sqlite3', 'sqlite', async ({ sqlitePath }) => {
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(sqlitePath, { timeout: 5_000 });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    const statements = new Map<string, import('better-sqlite3').Statement>();
    return {
      rawCall: 'statement.run(...values), the statement prepared once (as add() caches it)',
      // Synchronous: the callback runs inside db.transaction and nothing in it is awaited.
      transaction: (fn) => db.transaction(() => fn(db))(),
      executor: (tx) => fromBetterSqlite3(tx),
      prepare(s) {
        let statement = statements.get(s.sql);
        if (!statement) {
          statement = db.prepare(s.sql);
          statements.set(s.sql, statement);
        }
        return { statement, values: s.params };
      },
      raw: (_tx, r) => r.statement.run(...r.values),
      close: async () => void db.close(),
    };
  }),
];
