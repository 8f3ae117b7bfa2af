/**
 * The MySQL/MariaDB store: every statement outbox runs on MySQL 8.0 or MariaDB 10.6+ (InnoDB;
 * only MariaDB 10.11 is tested here). `insert()` builds the one statement `add()` runs on the
 * caller's transaction; every other method runs on the store's own pool. Claims read by status,
 * per partition in `seq` order, and never mark rows: one relay at a time owns a partition through
 * its lease, and every settle is fenced by the lease epochs, so a relay that lost a partition
 * writes nothing for it. No LISTEN/NOTIFY here: relays poll adaptively.
 *
 * Per-key commit order: `add()`'s INSERT first locks one row of `<table>_locks` per distinct key
 * (slot = key hash mod 65,536) with `SELECT … FOR UPDATE` in a derived table, which MySQL
 * materialises before the INSERT reads a row, and only then takes AUTO_INCREMENT values. A second
 * transaction adding to the same key waits in that derived table until the first commits or rolls
 * back, then gets the higher seq. While it waits it holds no AUTO-INC lock, so other keys' inserts
 * go on (test/integration/mysql-commit-order.test.ts checks both).
 *
 * `mysql2` is loaded lazily (only when the store is given a URL), so importing this file never
 * requires the driver.
 */
import { OutboxError } from '../core/errors.js';
import type {
  ClaimedEvent,
  EventRecord,
  EventStatus,
  Fence,
  InFlight,
  LeaseRecord,
  ListFilter,
  Membership,
  MigrationResult,
  OutboxStats,
  PartitionLease,
  PreparedEvent,
  Settlement,
  SettleResult,
  Statement,
  Store,
} from '../core/ports.js';
import {
  assertIdentifier,
  assertPartitions,
  listConditions,
  listLimit,
  purgeLimit,
  summarizeStats,
} from './common.js';
import {
  checkMysqlSchema,
  KEY_LOCK_SLOTS,
  type MysqlRun,
  type MysqlTables,
  migrateMysql,
} from './mysql-migrations.js';

/** What a mysql2 (promise API) pool or connection answers: `[rows or result header, fields]`. */
export type MysqlResultLike = [unknown, unknown];

/** The statement methods of a mysql2 promise `Connection`, `PoolConnection` or `Pool`. */
export interface MysqlQueryableLike {
  query(sql: string, values?: unknown): Promise<MysqlResultLike>;
  execute(sql: string, values?: unknown): Promise<MysqlResultLike>;
}

/** A connection checked out of a mysql2 promise pool. */
export interface MysqlPoolConnectionLike extends MysqlQueryableLike {
  release(): void;
  /** Closes the connection instead of pooling it (after a failed ROLLBACK). */
  destroy(): void;
}

/** A mysql2 promise `Pool` (`mysql.createPool(…)` from `mysql2/promise`). */
export interface MysqlPoolLike extends MysqlQueryableLike {
  getConnection(): Promise<MysqlPoolConnectionLike>;
  end(): Promise<void>;
}

export interface MysqlStoreOptions {
  /** A pool you own: the store uses it and never ends it. Give exactly one of `pool` and `url`. */
  pool?: MysqlPoolLike;
  /** `mysql://…` or `mariadb://…`: the store creates (on first use) and ends its own pool. */
  url?: string;
  /**
   * The database holding the tables, created by `migrate()` if missing. Default: the URL's
   * database; with a `pool` and no `schema`, the connection's current database, and `add()`
   * then writes to the table of that name in your transaction connection's current database.
   */
  schema?: string;
  /** Default 'outbox'; beside it `<table>_leases`, `<table>_relays`, `<table>_locks` and `<table>_migrations`. */
  table?: string;
  /**
   * Partitions of the table `migrate()` creates (default 64). Given, it must match an existing
   * table's number: `migrate()` refuses a different one (changing it is not supported yet).
   */
  partitions?: number;
  /** Keep published events (status 'published') until `purge()` instead of deleting them. Default false. */
  retainPublished?: boolean;
  /** Size of the pool the store creates from `url`. Default 10. */
  poolSize?: number;
  /** Run the relay's statements as server-side prepared statements (mysql2 `execute`). Default true. */
  prepareStatements?: boolean;
}

type Settings = Required<Omit<MysqlStoreOptions, 'pool' | 'url' | 'partitions' | 'schema'>> & {
  url?: string;
  partitions?: number;
  schema?: string;
  /** Where the tables are: `schema`, else the URL's database, else the connection's (undefined). */
  database?: string;
};

export const MYSQL_STORE_DEFAULTS: Readonly<Omit<Settings, 'url' | 'partitions' | 'schema' | 'database'>> =
  Object.freeze({
    table: 'outbox',
    retainPublished: false,
    poolSize: 10,
    prepareStatements: true,
  });

/**
 * The `max_allowed_packet` assumed until the store has read the server's: a statement larger than
 * the server's limit makes it drop the connection, and the caller's transaction with it.
 */
export const UNKNOWN_MAX_PACKET_BYTES = 1024 * 1024;
/** Room left in a packet for the protocol's own bytes. */
const PACKET_MARGIN_BYTES = 4096;

/** Re-runs of one claim with grown quotas (×4 each): from an even share of 64 to the whole batch. */
const MAX_CLAIM_ROUNDS = 4;
/** Partitions read by one claim statement (one UNION ALL branch each). */
const BRANCHES_PER_CLAIM = 64;
/** Rows deleted per purge statement, so purging never holds many locks for long. */
const PURGE_CHUNK = 10_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Row = Record<string, unknown>;

/**
 * The database's clock in epoch milliseconds, whatever the session's time zone: every relay
 * compares against one clock. (`UNIX_TIMESTAMP(NOW(3))` would go through the session's time
 * zone, and is off by an hour around a daylight-saving change.)
 */
const NOW_MS = "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)";

/**
 * A store for MySQL 8.0 and MariaDB 10.6 or newer.
 * @example
 * import { mysqlStore } from 'outbox/stores/mysql';
 * const store = mysqlStore({ url: 'mysql://app@127.0.0.1:3306/app' });
 * await store.migrate();
 */
export function mysqlStore(options: MysqlStoreOptions): Store {
  if ((options.pool === undefined) === (options.url === undefined)) {
    throw new OutboxError('INVALID_CONFIG', 'mysqlStore needs exactly one of "pool" and "url"');
  }
  if (options.url !== undefined && !/^(mysql|mariadb):\/\//i.test(options.url)) {
    throw new OutboxError('UNSUPPORTED_URL', 'mysqlStore "url" must start with mysql:// or mariadb://');
  }
  const { pool, ...rest } = options;
  const settings: Settings = {
    ...MYSQL_STORE_DEFAULTS,
    ...(Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) as Partial<Settings>),
  };
  if (settings.schema !== undefined) assertIdentifier(settings.schema, 'schema');
  settings.database = settings.schema ?? databaseOf(settings.url);
  assertIdentifier(settings.table, 'table');
  assertPartitions(settings.partitions);
  if (!Number.isInteger(settings.poolSize) || settings.poolSize < 1) {
    throw new OutboxError('INVALID_CONFIG', 'mysqlStore "poolSize" must be a positive integer');
  }
  return new MysqlStore(settings, pool);
}

class MysqlStore implements Store {
  readonly dialect = 'mysql' as const;
  readonly capabilities = Object.freeze({ listenNotify: false });
  private readonly tables: MysqlTables;
  private readonly sql: ReturnType<typeof buildSql>;
  /** Claim statements by number of partitions (branches). */
  private readonly claims = new Map<number, string>();
  /** Per-partition read quotas of claim() grown for hot partitions (see claim). */
  private readonly quotas = new Map<number, number>();
  private poolPromise: Promise<MysqlPoolLike> | undefined;
  /** The server's max_allowed_packet, once read (on the first call that reaches the database). */
  private maxPacketBytes: number | undefined;
  private closed = false;

  constructor(
    private readonly settings: Settings,
    private readonly userPool: MysqlPoolLike | undefined,
  ) {
    this.tables = tableNames(settings.database, settings.table);
    this.sql = buildSql(this.tables, settings.retainPublished);
  }

  insert(events: readonly PreparedEvent[]): Statement {
    const statement =
      events.length === 1
        ? this.insertOne(events[0]!)
        : { sql: this.sql.insert, params: this.insertMany(events) };
    this.assertFitsPacket(statement);
    return statement;
  }

  async migrate(options: { partitions?: number } = {}): Promise<MigrationResult> {
    const partitions = assertPartitions(options.partitions) ?? this.settings.partitions;
    return this.withConnection(async (run) => {
      await assertUtf8mb4(run);
      if (this.settings.database === undefined) {
        const [row] = await run('SELECT DATABASE() AS db');
        if (row?.db === null || row?.db === undefined) {
          throw new OutboxError(
            'INVALID_CONFIG',
            'the MySQL connection has no database: name one in the URL (mysql://host/db) or give "schema"',
          );
        }
      }
      return migrateMysql(run, this.tables, partitions, this.settings.schema);
    });
  }

  async checkSchema(): Promise<void> {
    await this.withConnection(async (run) => {
      await assertUtf8mb4(run);
      await checkMysqlSchema(run, this.tables, this.settings.database, this.settings.table);
    });
  }

  async claim(
    partitions: readonly number[],
    limit: number,
    inFlight: readonly InFlight[] = [],
  ): Promise<ClaimedEvent[]> {
    if (limit <= 0 || partitions.length === 0) return [];
    const skip = new Map<number, number[]>();
    for (const { partition, seq } of inFlight) skip.set(partition, [...(skip.get(partition) ?? []), seq]);
    // Each partition reads at most its quota: an even share of the batch plus slack to start
    // with. A partition that fills its quota while the batch comes back short (the load is
    // uneven: a few hot keys) gets a bigger quota and the claim runs again; quotas are kept for
    // the next claims and fall back to the even share once a partition runs short.
    const even = Math.ceil(limit / partitions.length) + 1;
    for (let attempt = 0; ; attempt++) {
      const quotas = partitions.map((p) => Math.min(limit, Math.max(even, this.quotas.get(p) ?? even)));
      const rows: ClaimedEvent[] = [];
      for (let from = 0; from < partitions.length; from += BRANCHES_PER_CLAIM) {
        const chunk = partitions.slice(from, from + BRANCHES_PER_CLAIM);
        const params = chunk.flatMap((p, i) => [p, JSON.stringify(skip.get(p) ?? []), quotas[from + i]!]);
        for (const row of await this.rows(this.claimSql(chunk.length), params)) rows.push(toClaimed(row));
      }
      rows.sort((a, b) => a.seq - b.seq);
      const taken = new Map<number, number>();
      for (const row of rows) taken.set(row.partition, (taken.get(row.partition) ?? 0) + 1);
      let grown = false;
      partitions.forEach((p, i) => {
        const quota = quotas[i]!;
        const full = (taken.get(p) ?? 0) >= quota;
        if (full && rows.length < limit && quota < limit) {
          this.quotas.set(p, Math.min(limit, quota * 4));
          grown = true;
        } else if (!full) {
          this.quotas.delete(p);
        }
      });
      if (!grown || attempt === MAX_CLAIM_ROUNDS) return rows.slice(0, limit);
    }
  }

  async settle(settlement: Settlement, fence: Fence): Promise<SettleResult> {
    const leases = [...fence.leases].sort((a, b) => a.partition - b.partition);
    if (leases.length === 0) return { fenced: [] };
    const failed = [
      ...settlement.retry.map((f) => [
        f.id,
        'pending',
        f.attempts,
        f.error,
        JSON.stringify(f.history),
        delay(f.delayMs),
        0,
      ]),
      ...settlement.dead.map((f) => [
        f.id,
        'dead',
        f.attempts,
        f.error,
        JSON.stringify(f.history),
        0,
        f.park ? 1 : 0,
      ]),
    ];
    return this.transaction(async (run) => {
      // LOCK IN SHARE MODE holds the fence until COMMIT: a takeover (an UPDATE of a lease row)
      // waits for this transaction, or this one sees the new epoch and leaves that partition alone.
      // Rows are locked in partition order, as every statement on the lease table does.
      const pairs = JSON.stringify(leases.map((l) => [l.partition, l.epoch]));
      const held = new Set((await run(this.sql.fence, [pairs, fence.owner])).map((r) => Number(r.partition)));
      const fenced = leases.map((l) => l.partition).filter((p) => !held.has(p));
      if (held.size === 0) return { fenced };
      const scope = [...held].join(',');
      if (settlement.published.length > 0) {
        await run(this.sql.published, [JSON.stringify(settlement.published), scope]);
      }
      if (failed.length > 0) await run(this.sql.failed, [JSON.stringify(failed), scope]);
      return { fenced };
    });
  }

  async heartbeat(owner: string, ttlMs: number): Promise<Membership> {
    // Separate autocommit statements: none waits while holding another's lock, so relays
    // heartbeating together never deadlock.
    await this.rows(this.sql.register, [owner, ttlMs, ttlMs]);
    await this.rows(this.sql.forgetGone);
    await this.rows(this.sql.renew, [ttlMs, owner]);
    const [row] = await this.rows(this.sql.membership, [owner, owner]);
    const held = parseJson(row?.held) as [unknown, unknown][] | null;
    return {
      partitions: Number(row?.partitions),
      relays: Number(row?.relays),
      held: byPartition((held ?? []).map(toLease)),
    };
  }

  async acquireLeases(owner: string, ttlMs: number): Promise<PartitionLease[]> {
    // Read first, so that a relay at its fair share (the usual case, asked every poll interval)
    // opens no transaction; SKIP LOCKED then lets relays starting together split the free ones.
    const [row] = await this.rows(this.sql.share, [owner, owner]);
    const want =
      Number(row?.free) === 1
        ? Math.max(0, Math.ceil(Number(row?.partitions) / Number(row?.live)) - Number(row?.mine))
        : 0;
    if (want === 0) return [];
    return this.transaction(async (run) => {
      const free = await run(this.sql.pick, [want]);
      if (free.length === 0) return [];
      await run(this.sql.take, [JSON.stringify(free.map((r) => Number(r.partition))), owner, ttlMs]);
      return byPartition(free.map((r) => toLease([r.partition, Number(r.epoch) + 1])));
    });
  }

  async releaseLeases(owner: string, partitions: readonly number[] | 'all'): Promise<void> {
    if (partitions === 'all') {
      // Together: a relay that saw the leases free while this one still counted as alive would
      // take a share too small to include them, and leave them free until its next try.
      await this.transaction(async (run) => {
        await run(this.sql.releaseAll, [owner]);
        await run(this.sql.unregister, [owner]);
      });
    } else if (partitions.length > 0) {
      await this.rows(this.sql.release, [owner, partitions.join(',')]);
    }
  }

  async leases(): Promise<LeaseRecord[]> {
    return (await this.rows(this.sql.leases)).map((r) => ({
      partition: Number(r.partition),
      owner: String(r.owner),
      epoch: Number(r.epoch),
      expiresAt: r.expires_at === null ? null : new Date(Number(r.expires_at)),
    }));
  }

  async retryDead(ids: readonly string[]): Promise<number> {
    const valid = ids.filter((id) => UUID.test(id));
    if (valid.length === 0) return 0;
    return this.affected(this.sql.retryDead, [JSON.stringify(valid)]);
  }

  async discardDead(ids: readonly string[]): Promise<number> {
    const valid = ids.filter((id) => UUID.test(id));
    if (valid.length === 0) return 0;
    return this.affected(this.sql.discardDead, [JSON.stringify(valid)]);
  }

  async stats(): Promise<OutboxStats> {
    return summarizeStats(await this.rows(this.sql.stats));
  }

  async get(id: string): Promise<EventRecord | undefined> {
    if (!UUID.test(id)) return undefined;
    const [row] = await this.rows(this.sql.get, [id]);
    return row ? toRecord(row) : undefined;
  }

  async list(filter: ListFilter = {}): Promise<EventRecord[]> {
    const limit = listLimit(filter);
    const { where, params } = listConditions(
      filter,
      () => '?',
      (date) => date.getTime(),
      'o.',
    );
    return (await this.rows(this.sql.list(where), [...params, limit])).map(toRecord);
  }

  async purge(olderThanMs: number, limit?: number): Promise<number> {
    const chunk = purgeLimit(limit) ?? PURGE_CHUNK;
    let total = 0;
    for (;;) {
      // READ COMMITTED (in transaction()): no gap locks, so purging never blocks add()'s inserts.
      const deleted = await this.transaction(async (_run, conn) =>
        affectedRows(await conn.query(this.sql.purge, [olderThanMs, chunk])),
      );
      total += deleted;
      if (limit !== undefined || deleted < chunk) return total;
    }
  }

  /** Ends the pool the store created (never a pool it was given). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.userPool === undefined && this.poolPromise) {
      await (await this.poolPromise.catch(() => undefined))?.end();
    }
  }

  private insertOne(e: PreparedEvent): Statement {
    const params = [e.id, e.key, e.keyHash, e.type, e.aggregateType, e.aggregateId, e.destination, e.payload];
    params.push(
      e.headers,
      e.availableAt === null ? null : e.availableAt.getTime(),
      e.keyHash % KEY_LOCK_SLOTS,
    );
    return { sql: this.sql.insertOne, params };
  }

  private insertMany(events: readonly PreparedEvent[]): unknown[] {
    // Distinct slots in ascending order: two batches never lock the same slots in opposite orders.
    const slots = [...new Set(events.map((e) => e.keyHash % KEY_LOCK_SLOTS))].sort((a, b) => a - b);
    const rows = events.map((e) => [
      e.id,
      e.key,
      e.keyHash,
      e.type,
      e.aggregateType,
      e.aggregateId,
      e.destination,
      e.payload,
      e.headers,
      e.availableAt === null ? null : e.availableAt.getTime(),
    ]);
    return [JSON.stringify(slots), JSON.stringify(rows)];
  }

  /**
   * Refuses, before any SQL, a statement the server would refuse for its size: over
   * `max_allowed_packet` MySQL and MariaDB drop the connection, and the caller's transaction is
   * lost with it. Sized as the text protocol sends it (escaped), which is never smaller than the
   * binary protocol's.
   */
  private assertFitsPacket(statement: Statement): void {
    const limit = (this.maxPacketBytes ?? UNKNOWN_MAX_PACKET_BYTES) - PACKET_MARGIN_BYTES;
    let upper = Buffer.byteLength(statement.sql);
    for (const p of statement.params) upper += typeof p === 'string' ? 2 * Buffer.byteLength(p) + 2 : 24;
    if (upper <= limit) return;
    let bytes = Buffer.byteLength(statement.sql);
    for (const p of statement.params) bytes += typeof p === 'string' ? escapedBytes(p) + 2 : 24;
    if (bytes <= limit) return;
    const known = this.maxPacketBytes !== undefined;
    throw new OutboxError(
      'PAYLOAD_TOO_LARGE',
      known
        ? `the events make a ${bytes}-byte statement, over the server's max_allowed_packet (${this.maxPacketBytes} bytes, less ${PACKET_MARGIN_BYTES} of margin)`
        : `the events make a ${bytes}-byte statement, over the ${UNKNOWN_MAX_PACKET_BYTES} bytes assumed until the store has read the server's max_allowed_packet (call await outbox.store.checkSchema() at startup)`,
      { details: { bytes, limit, maxAllowedPacket: this.maxPacketBytes ?? null } },
    );
  }

  private claimSql(branches: number): string {
    let sql = this.claims.get(branches);
    if (!sql) {
      sql = Array.from({ length: branches }, () => `(${this.sql.claimBranch})`).join(' UNION ALL ');
      this.claims.set(branches, sql);
    }
    return sql;
  }

  /** The pool, created on first use; the server's max_allowed_packet is read then, once. */
  private async pool(): Promise<MysqlPoolLike> {
    this.poolPromise ??= this.userPool
      ? Promise.resolve(this.userPool)
      : createPool(this.settings.url!, this.settings.poolSize);
    const pool = await this.poolPromise;
    if (this.maxPacketBytes === undefined) {
      // Until a first read succeeds (the database may be down), every call tries again.
      const [rows] = await pool.query('SELECT @@max_allowed_packet AS bytes');
      this.maxPacketBytes = Number((rows as Row[])[0]?.bytes);
    }
    return pool;
  }

  private async rows(sql: string, params: unknown[] = []): Promise<Row[]> {
    return resultRows(await run(await this.pool(), this.settings.prepareStatements, sql, params));
  }

  private async affected(sql: string, params: unknown[]): Promise<number> {
    return affectedRows(await run(await this.pool(), this.settings.prepareStatements, sql, params));
  }

  /** Runs `fn` on one connection of the pool (migrations need one session for GET_LOCK). */
  private async withConnection<T>(fn: (run: MysqlRun) => Promise<T>): Promise<T> {
    const conn = await (await this.pool()).getConnection();
    try {
      return await fn(async (sql, params = []) => resultRows(await conn.query(sql, params)));
    } finally {
      conn.release();
    }
  }

  /**
   * Runs `fn` in a READ COMMITTED transaction on one connection: locking reads and writes then lock
   * only the rows they match (no gap locks). The store's own pool sets it per session; on a pool
   * it was given, per transaction (the application's sessions keep their own level).
   */
  private async transaction<T>(fn: (run: MysqlRun, conn: MysqlPoolConnectionLike) => Promise<T>): Promise<T> {
    const conn = await (await this.pool()).getConnection();
    const prepare = this.settings.prepareStatements;
    try {
      if (this.userPool) await conn.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
      await conn.query('START TRANSACTION');
      const result = await fn(
        async (sql, params = []) => resultRows(await run(conn, prepare, sql, params)),
        conn,
      );
      await conn.query('COMMIT');
      conn.release();
      return result;
    } catch (error) {
      // A failed ROLLBACK means the connection is broken: close it rather than pool it.
      await conn.query('ROLLBACK').then(
        () => conn.release(),
        () => conn.destroy(),
      );
      throw error;
    }
  }
}

function run(
  on: MysqlQueryableLike,
  prepare: boolean,
  sql: string,
  params: unknown[],
): Promise<MysqlResultLike> {
  return prepare ? on.execute(sql, params) : on.query(sql, params);
}

function resultRows(result: MysqlResultLike): Row[] {
  return Array.isArray(result[0]) ? (result[0] as Row[]) : [];
}

function affectedRows(result: MysqlResultLike): number {
  return Number((result[0] as { affectedRows?: number }).affectedRows ?? 0);
}

async function createPool(url: string, max: number): Promise<MysqlPoolLike> {
  let mysql: typeof import('mysql2/promise');
  try {
    mysql = await import('mysql2/promise');
  } catch (cause) {
    throw new OutboxError('DRIVER_MISSING', 'mysqlStore needs the "mysql2" package: npm install mysql2', {
      cause,
    });
  }
  const pool = mysql.createPool({
    // mysql2 reads host, port, user, password, database and options from a mysql:// URL.
    uri: url.replace(/^mariadb:/i, 'mysql:'),
    connectionLimit: max,
    // A bounded wait for a connection: during a database outage the relay's calls fail (and are
    // retried) instead of queueing forever.
    connectTimeout: 10_000,
    enableKeepAlive: true,
    supportBigNumbers: true,
  });
  // Every session of the store's own pool works at READ COMMITTED (see transaction()). The event
  // hands over the callback-API connection, before any statement of ours runs on it.
  pool.on('connection', (connection) => {
    const raw = connection as unknown as { query(sql: string, done: () => void): void };
    raw.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED', () => undefined);
  });
  return pool as unknown as MysqlPoolLike;
}

/** The connection must talk utf8mb4, or text beyond the BMP (emoji) is refused or garbled. */
async function assertUtf8mb4(runOn: MysqlRun): Promise<void> {
  const [row] = await runOn(
    'SELECT @@character_set_client AS client, @@character_set_connection AS connection, @@character_set_results AS results',
  );
  const wrong = Object.entries(row ?? {}).filter(([name, value]) =>
    name === 'results' ? value !== null && value !== 'utf8mb4' : value !== 'utf8mb4',
  );
  if (wrong.length > 0) {
    throw new OutboxError(
      'UNSUPPORTED_CHARSET',
      `the MySQL connection uses ${wrong.map(([name, value]) => `character_set_${name} = ${String(value)}`).join(', ')}: outbox needs utf8mb4 (mysql2's default; set charset: 'utf8mb4' on the pool or ?charset=utf8mb4 in the URL)`,
      { details: Object.fromEntries(wrong) },
    );
  }
}

/** Bytes of a string as the text protocol sends it, quoted and escaped (mysql2's escaping). */
function escapedBytes(value: string): number {
  let escapes = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    // \0 \b \t \n \r \x1a " ' \
    if (c === 0 || c === 8 || c === 9 || c === 10 || c === 13 || c === 26 || c === 34 || c === 39 || c === 92)
      escapes++;
  }
  return Buffer.byteLength(value) + escapes;
}

/** Retry delays: whole milliseconds, and never beyond what a BIGINT column sum can hold. */
function delay(ms: number): number {
  return Number.isFinite(ms) ? Math.max(0, Math.round(ms)) : 2 ** 52;
}

function parseJson(value: unknown): unknown {
  // MariaDB returns JSON functions' results as text, MySQL as JSON (which mysql2 parses).
  return typeof value === 'string' ? JSON.parse(value) : (value ?? null);
}

/**
 * The database a mysql:// URL names (its path). It is written into SQL, backquoted: only letters,
 * digits, `_`, `$` and `-` are taken.
 */
function databaseOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  let name: string;
  try {
    name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  } catch (cause) {
    throw new OutboxError('UNSUPPORTED_URL', 'mysqlStore "url" is not a valid URL', { cause });
  }
  if (name === '') return undefined;
  if (!/^[A-Za-z0-9_$-]{1,64}$/.test(name)) {
    throw new OutboxError(
      'INVALID_IDENTIFIER',
      `the database "${name}" of the URL is not a plain name (letters, digits, _, $ and -, at most 64 characters): give "schema" instead`,
      { details: { option: 'url' } },
    );
  }
  return name;
}

function tableNames(schema: string | undefined, table: string): MysqlTables {
  const q = (name: string) => (schema === undefined ? `\`${name}\`` : `\`${schema}\`.\`${name}\``);
  return {
    outbox: q(table),
    leases: q(`${table}_leases`),
    relays: q(`${table}_relays`),
    locks: q(`${table}_locks`),
    migrations: q(`${table}_migrations`),
    label: schema === undefined ? table : `${schema}.${table}`,
  };
}

function buildSql(t: MysqlTables, retainPublished: boolean) {
  const claimed = `o.id, o.seq, o.\`key\`, o.key_hash, o.\`partition\`, o.type, o.aggregate_type, o.aggregate_id,
    o.destination, o.payload, o.headers, o.created_at, o.attempts, o.history`;
  const record = `${claimed}, o.status, o.available_at, o.last_error, o.published_at, o.parked`;
  const columns = `(id, \`key\`, key_hash, type, aggregate_type, aggregate_id, destination, payload, headers, history,
    created_at, available_at)`;
  // Per-key commit order (see the head comment): the lock rows are taken in a derived table,
  // materialised before the INSERT takes its first AUTO_INCREMENT value.
  const lockSlots = (slots: string) => `(SELECT count(*) AS n FROM (SELECT l.slot FROM ${slots}
      STRAIGHT_JOIN ${t.locks} AS l ON l.slot = s.slot FOR UPDATE) AS taken) AS locked`;
  const text = 'LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin';
  const ids = `JSON_TABLE(?, '$[*]' COLUMNS (id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin PATH '$')) AS j`;
  // Rows of the partitions the settle's fence still holds (a comma-separated list).
  const fenced = `o.status = 'pending' AND FIND_IN_SET(o.\`partition\`, ?)`;
  return {
    insertOne: `INSERT INTO ${t.outbox} ${columns}
      SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', ${NOW_MS}, COALESCE(?, ${NOW_MS})
      FROM ${lockSlots(`(SELECT ? AS slot) AS s`)}`,
    insert: `INSERT INTO ${t.outbox} ${columns}
      SELECT e.id, e.k, e.h, e.type, e.aggregate_type, e.aggregate_id, e.destination, e.payload, e.headers, '[]',
        ${NOW_MS}, COALESCE(e.available_at, ${NOW_MS})
      FROM ${lockSlots(`JSON_TABLE(?, '$[*]' COLUMNS (slot INT UNSIGNED PATH '$')) AS s`)},
        JSON_TABLE(?, '$[*]' COLUMNS (n FOR ORDINALITY, id CHAR(36) CHARACTER SET ascii PATH '$[0]',
          k ${text} PATH '$[1]', h INT UNSIGNED PATH '$[2]', type ${text} PATH '$[3]',
          aggregate_type ${text} PATH '$[4]', aggregate_id ${text} PATH '$[5]', destination ${text} PATH '$[6]',
          payload ${text} PATH '$[7]', headers ${text} PATH '$[8]', available_at BIGINT PATH '$[9]')) AS e
      ORDER BY e.n`,
    // One partition's due pending events in seq order, minus those in flight and those whose
    // key has an earlier event holding it back (pending and not due, or a parked dead letter):
    // one ordered range of the pending index, and per row one probe of the held index.
    claimBranch: `SELECT ${claimed} FROM ${t.outbox} AS o FORCE INDEX (pend_idx)
      WHERE o.status = 'pending' AND o.\`partition\` = ? AND o.available_at <= ${NOW_MS}
        AND o.seq NOT IN (SELECT f.seq FROM JSON_TABLE(?, '$[*]' COLUMNS (seq BIGINT UNSIGNED PATH '$')) AS f)
        AND NOT EXISTS (SELECT 1 FROM ${t.outbox} AS b FORCE INDEX (held_idx)
          WHERE b.held_hash = o.key_hash AND b.seq < o.seq AND b.\`key\` = o.\`key\`
            AND (b.parked OR b.available_at > ${NOW_MS}))
      ORDER BY o.seq LIMIT ?`,
    fence: `SELECT l.\`partition\` FROM JSON_TABLE(?, '$[*]' COLUMNS (p INT PATH '$[0]', epoch BIGINT PATH '$[1]')) AS f
      STRAIGHT_JOIN ${t.leases} AS l ON l.\`partition\` = f.p
      WHERE l.epoch = f.epoch AND l.owner = ? LOCK IN SHARE MODE`,
    published: retainPublished
      ? `UPDATE ${ids} STRAIGHT_JOIN ${t.outbox} AS o ON o.id = j.id
          SET o.status = 'published', o.published_at = ${NOW_MS} WHERE ${fenced}`
      : `DELETE o FROM ${ids} STRAIGHT_JOIN ${t.outbox} AS o ON o.id = j.id WHERE ${fenced}`,
    failed: `UPDATE JSON_TABLE(?, '$[*]' COLUMNS (id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin PATH '$[0]',
        status VARCHAR(9) CHARACTER SET ascii PATH '$[1]', attempts INT PATH '$[2]', error ${text} PATH '$[3]',
        history ${text} PATH '$[4]', delay_ms BIGINT PATH '$[5]', park INT PATH '$[6]')) AS f
      STRAIGHT_JOIN ${t.outbox} AS o ON o.id = f.id
      SET o.status = f.status, o.attempts = f.attempts, o.last_error = f.error, o.history = f.history,
        o.available_at = CASE WHEN f.status = 'pending' THEN ${NOW_MS} + f.delay_ms ELSE o.available_at END,
        o.parked = f.park
      WHERE ${fenced}`,
    register: `INSERT INTO ${t.relays} (owner, expires_at) VALUES (?, ${NOW_MS} + ?)
      ON DUPLICATE KEY UPDATE expires_at = ${NOW_MS} + ?`,
    // Registrations long dead are cleaned up on the way.
    forgetGone: `DELETE FROM ${t.relays} WHERE expires_at < ${NOW_MS} - 3600000`,
    // Renews every lease the relay holds (a released one excepted). Renew, release and releaseAll
    // scan the table, which is its primary key: partition order. No ORDER BY: with one, InnoDB
    // reads through the key, without semi-consistent reads, and waits on every row another relay
    // has locked (each settle's fence) instead of skipping the rows that are not this relay's.
    renew: `UPDATE ${t.leases} SET expires_at = ${NOW_MS} + ? WHERE owner = ? AND expires_at IS NOT NULL`,
    membership: `SELECT (SELECT count(*) FROM ${t.leases}) AS partitions,
        (SELECT count(*) FROM ${t.relays} WHERE expires_at > ${NOW_MS} AND owner <> ?) + 1 AS relays,
        (SELECT JSON_ARRAYAGG(JSON_ARRAY(\`partition\`, epoch)) FROM ${t.leases}
          WHERE owner = ? AND expires_at IS NOT NULL) AS held`,
    // The fair share ceil(P / live relays) is worked out by the caller from these.
    share: `SELECT (SELECT count(*) FROM ${t.leases}) AS partitions,
        (SELECT count(*) FROM ${t.relays} WHERE expires_at > ${NOW_MS} AND owner <> ?) + 1 AS live,
        (SELECT count(*) FROM ${t.leases} WHERE owner = ? AND expires_at > ${NOW_MS}) AS mine,
        EXISTS (SELECT 1 FROM ${t.leases} WHERE expires_at IS NULL OR expires_at < ${NOW_MS}) AS free`,
    pick: `SELECT \`partition\`, epoch FROM ${t.leases} WHERE expires_at IS NULL OR expires_at < ${NOW_MS}
      ORDER BY \`partition\` LIMIT ? FOR UPDATE SKIP LOCKED`,
    // Only the rows pick locked, looked up by key: a scan would wait on other relays' lease rows
    // while holding the picked ones, out of partition order (a heartbeat's renew, which holds a
    // lower row and wants a picked one, deadlocked with it).
    take: `UPDATE JSON_TABLE(?, '$[*]' COLUMNS (p INT PATH '$')) AS f STRAIGHT_JOIN ${t.leases} AS l
        ON l.\`partition\` = f.p
      SET l.owner = ?, l.epoch = l.epoch + 1, l.expires_at = ${NOW_MS} + ?`,
    // NULL marks a released lease: free for anyone at once, and no longer renewable.
    release: `UPDATE ${t.leases} SET expires_at = NULL WHERE owner = ? AND FIND_IN_SET(\`partition\`, ?)`,
    releaseAll: `UPDATE ${t.leases} SET expires_at = NULL WHERE owner = ? AND expires_at IS NOT NULL`,
    unregister: `DELETE FROM ${t.relays} WHERE owner = ?`,
    leases: `SELECT \`partition\`, owner, epoch, expires_at FROM ${t.leases} ORDER BY \`partition\``,
    retryDead: `UPDATE ${ids} STRAIGHT_JOIN ${t.outbox} AS o ON o.id = j.id
      SET o.status = 'pending', o.attempts = 0, o.parked = FALSE, o.available_at = ${NOW_MS}
      WHERE o.status = 'dead'`,
    discardDead: `DELETE o FROM ${ids} STRAIGHT_JOIN ${t.outbox} AS o ON o.id = j.id WHERE o.status = 'dead'`,
    stats: `SELECT destination,
        SUM(status = 'pending') AS pending,
        SUM(status = 'pending' AND attempts > 0) AS retrying,
        SUM(status = 'dead') AS dead,
        SUM(status = 'published') AS published,
        GREATEST(0, ${NOW_MS} - MIN(CASE WHEN status = 'pending' AND attempts > 0 THEN created_at
          WHEN status = 'pending' AND available_at <= ${NOW_MS} THEN available_at END)) AS oldest_pending_age_ms
      FROM ${t.outbox} GROUP BY destination ORDER BY destination`,
    get: `SELECT ${record} FROM ${t.outbox} AS o WHERE o.id = ?`,
    list: (where: string) => `SELECT ${record} FROM ${t.outbox} AS o ${where} ORDER BY o.seq LIMIT ?`,
    purge: `DELETE FROM ${t.outbox} WHERE status = 'published' AND published_at < ${NOW_MS} - ? LIMIT ?`,
  };
}

function byPartition(leases: PartitionLease[]): PartitionLease[] {
  return leases.sort((a, b) => a.partition - b.partition);
}

function toLease([partition, epoch]: readonly [unknown, unknown]): PartitionLease {
  return { partition: Number(partition), epoch: Number(epoch) };
}

function toClaimed(row: Row): ClaimedEvent {
  return {
    id: String(row.id),
    seq: Number(row.seq),
    key: String(row.key),
    keyHash: Number(row.key_hash),
    partition: Number(row.partition),
    type: String(row.type),
    aggregateType: (row.aggregate_type as string | null) ?? null,
    aggregateId: (row.aggregate_id as string | null) ?? null,
    destination: String(row.destination),
    payload: String(row.payload),
    headers: JSON.parse(String(row.headers)) as Record<string, string>,
    createdAt: new Date(Number(row.created_at)),
    attempts: Number(row.attempts),
    history: JSON.parse(String(row.history)),
  };
}

function toRecord(row: Row): EventRecord {
  return {
    ...toClaimed(row),
    status: row.status as EventStatus,
    availableAt: new Date(Number(row.available_at)),
    lastError: (row.last_error as string | null) ?? null,
    publishedAt: row.published_at === null ? null : new Date(Number(row.published_at)),
    parked: Number(row.parked) === 1,
  };
}
