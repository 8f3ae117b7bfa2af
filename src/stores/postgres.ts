/**
 * The PostgreSQL store: every statement outbox runs on PostgreSQL. `insert()` builds the one
 * statement `add()` runs on the caller's transaction (taking a per-key transaction lock, and with
 * `notify` a commit-time `pg_notify`); every other method runs on the store's own pool. Claims
 * read by status, per partition in `seq` order, and never mark rows: one relay at a time owns a
 * partition through its lease, and every settle is fenced by the lease epochs, so a relay that
 * lost a partition writes nothing for it.
 *
 * `pg` is loaded lazily (only when the store is given a URL), so importing this file never
 * requires the driver.
 */
import { createHash } from 'node:crypto';
import { OutboxError } from '../core/errors.js';
import type {
  ClaimedEvent,
  EventRecord,
  EventStatus,
  FailedAttempt,
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
  StoreCapabilities,
} from '../core/ports.js';
import { statementName } from '../core/sql.js';
import {
  assertIdentifier,
  assertPartitions,
  listConditions,
  listLimit,
  purgeLimit,
  summarizeStats,
} from './common.js';
import { checkPostgresSchema, migratePostgres } from './postgres-migrations.js';

/** The part of a node-postgres query result the store reads. */
export interface PgQueryResultLike {
  rows: Record<string, unknown>[];
}

/** A client checked out of a pool (node-postgres `PoolClient`), used for migrations and LISTEN. */
export interface PgPoolClientLike {
  query(sql: string, params?: unknown[]): Promise<PgQueryResultLike>;
  /** `release(true)` or `release(error)` destroys the connection instead of returning it. */
  release(destroy?: Error | boolean): void;
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
}

/** A named (prepared) statement, as node-postgres takes it. */
export interface PgQueryConfigLike {
  name?: string;
  text: string;
  values?: unknown[];
}

/** A node-postgres `Pool` (or anything shaped like it). */
export interface PgPoolLike {
  query(sql: string, params?: unknown[]): Promise<PgQueryResultLike>;
  query(config: PgQueryConfigLike): Promise<PgQueryResultLike>;
  connect(): Promise<PgPoolClientLike>;
  end(): Promise<void>;
}

export interface PostgresStoreOptions {
  /** A pool you own: the store uses it and never ends it. Give exactly one of `pool` and `url`. */
  pool?: PgPoolLike;
  /** `postgres://…`: the store creates (on first use) and ends its own `pg.Pool`. */
  url?: string;
  /** Default 'public'. */
  schema?: string;
  /** Default 'outbox'; beside it `<table>_leases`, `<table>_relays` and `<table>_migrations`. */
  table?: string;
  /**
   * Wake the relay with NOTIFY when a transaction that added events commits. Default false: a
   * NOTIFY takes a database-wide lock at commit, serialising every committing writer, so the
   * relay polls adaptively instead (at once while events flow, backing off to its poll interval).
   */
  notify?: boolean;
  /**
   * Partitions of the table `migrate()` creates (default 64). Given, it must match an existing
   * table's number: `migrate()` refuses a different one (changing it is not supported yet).
   */
  partitions?: number;
  /** Keep published events (status 'published') until `purge()` instead of deleting them. Default false. */
  retainPublished?: boolean;
  /** Size of the pool the store creates from `url`. Default 10. */
  poolSize?: number;
  /**
   * Run the relay's statements as named prepared statements (about 3× cheaper claims). Turn off
   * behind a pooler that cannot keep them, such as pgbouncer in transaction mode before 1.21.
   * Default true.
   */
  prepareStatements?: boolean;
}

type Settings = Required<Omit<PostgresStoreOptions, 'pool' | 'url' | 'partitions'>> & {
  url?: string;
  partitions?: number;
};

export const POSTGRES_STORE_DEFAULTS: Readonly<Settings> = Object.freeze({
  schema: 'public',
  table: 'outbox',
  notify: false,
  retainPublished: false,
  poolSize: 10,
  prepareStatements: true,
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Re-runs of one claim with grown quotas (×4 each): from an even share of 64 to the whole batch. */
const MAX_CLAIM_ROUNDS = 4;
/** Rows deleted per purge statement, so purging never holds many locks for long. */
const PURGE_CHUNK = 10_000;
const LISTEN_RETRY_INITIAL_MS = 100;
const LISTEN_RETRY_MAX_MS = 30_000;
/** PostgreSQL channel names are identifiers: at most 63 bytes. */
const MAX_CHANNEL_LENGTH = 63;

type Row = Record<string, unknown>;

const q = (name: string): string => `"${name}"`;

/**
 * A store for PostgreSQL 12 or newer.
 * @example
 * import { postgresStore } from 'outbox/stores/postgres';
 * const store = postgresStore({ url: process.env.DATABASE_URL });
 * await store.migrate();
 */
export function postgresStore(options: PostgresStoreOptions): Store {
  if ((options.pool === undefined) === (options.url === undefined)) {
    throw new OutboxError('INVALID_CONFIG', 'postgresStore needs exactly one of "pool" and "url"');
  }
  if (options.url !== undefined && !/^postgres(ql)?:\/\//.test(options.url)) {
    throw new OutboxError(
      'UNSUPPORTED_URL',
      'postgresStore "url" must start with postgres:// or postgresql://',
    );
  }
  const { pool, ...rest } = options;
  const settings: Settings = { ...POSTGRES_STORE_DEFAULTS, ...definedOnly(rest) };
  assertIdentifier(settings.schema, 'schema');
  assertIdentifier(settings.table, 'table');
  assertPartitions(settings.partitions);
  if (!Number.isInteger(settings.poolSize) || settings.poolSize < 1) {
    throw new OutboxError('INVALID_CONFIG', 'postgresStore "poolSize" must be a positive integer');
  }
  return new PostgresStore(settings, pool);
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

class PostgresStore implements Store {
  readonly dialect = 'postgres' as const;
  readonly capabilities: StoreCapabilities;
  private readonly sql: ReturnType<typeof buildSql>;
  private readonly channel: string;
  private readonly listeners = new Set<() => void>();
  /** Per-partition read quotas of claim() grown for hot partitions (see claim). */
  private readonly quotas = new Map<number, number>();
  private poolPromise: Promise<PgPoolLike> | undefined;
  private closed = false;

  constructor(
    private readonly settings: Settings,
    private readonly userPool: PgPoolLike | undefined,
  ) {
    this.capabilities = Object.freeze({ listenNotify: settings.notify });
    this.channel = channelName(settings.schema, settings.table);
    this.sql = buildSql(settings.schema, settings.table, settings);
    if (userPool) this.poolPromise = Promise.resolve(userPool);
  }

  insert(events: readonly PreparedEvent[]): Statement {
    if (events.length === 1) {
      // One event: plain VALUES, a third cheaper than unnest for the single-event transaction.
      const e = events[0]!;
      const params = [
        e.id,
        e.key,
        e.keyHash,
        e.type,
        e.aggregateType,
        e.aggregateId,
        e.destination,
        e.payload,
        e.headers,
        e.availableAt,
      ];
      return { sql: this.sql.insertOne, params: this.settings.notify ? [...params, this.channel] : params };
    }
    // One array per column, unnested by the statement: constant SQL text and parameter count.
    const columns: unknown[][] = Array.from({ length: 10 }, () => []);
    for (const e of events) {
      const row: unknown[] = [e.id, e.key, e.keyHash, e.type, e.aggregateType, e.aggregateId, e.destination];
      row.push(e.payload, e.headers, e.availableAt);
      for (let i = 0; i < row.length; i++) columns[i]!.push(row[i]);
    }
    return { sql: this.sql.insert, params: this.settings.notify ? [...columns, this.channel] : columns };
  }

  async migrate(options: { partitions?: number } = {}): Promise<MigrationResult> {
    const partitions = assertPartitions(options.partitions) ?? this.settings.partitions;
    const client = await (await this.pool()).connect();
    try {
      const result = await migratePostgres(client, this.settings.schema, this.settings.table, partitions);
      client.release();
      return result;
    } catch (error) {
      // A failed ROLLBACK means the connection is broken: destroy it rather than pool it.
      await client.query('ROLLBACK').then(
        () => client.release(),
        (rollbackError: Error) => client.release(rollbackError),
      );
      throw error;
    }
  }

  async checkSchema(): Promise<void> {
    await checkPostgresSchema(await this.pool(), this.settings.schema, this.settings.table);
  }

  async claim(
    partitions: readonly number[],
    limit: number,
    inFlight: readonly InFlight[] = [],
  ): Promise<ClaimedEvent[]> {
    if (limit <= 0 || partitions.length === 0) return [];
    const skip = skipGroups(partitions, inFlight);
    // Each partition reads at most its quota: an even share of the batch plus slack to start
    // with. A partition that fills its quota while the batch comes back short (the load is
    // uneven: a few hot keys) gets a bigger quota and the claim runs again; quotas are kept for
    // the next claims and fall back to the even share once a partition runs short.
    const even = Math.ceil(limit / partitions.length) + 1;
    for (let attempt = 0; ; attempt++) {
      const quotas = partitions.map((p) => Math.min(limit, Math.max(even, this.quotas.get(p) ?? even)));
      const rows = (await this.rows(this.sql.claim, [partitions, quotas, limit, ...skip])).map(toClaimed);
      rows.sort((a, b) => a.seq - b.seq); // the function's order, made explicit (cheaper here than in SQL)
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
      if (!grown || attempt === MAX_CLAIM_ROUNDS) return rows;
    }
  }

  async settle(settlement: Settlement, fence: Fence): Promise<SettleResult> {
    const { published, retry, dead } = settlement;
    const failed = (list: readonly FailedAttempt[]) => [
      list.map((f) => f.id),
      list.map((f) => f.attempts),
      list.map((f) => f.error),
      list.map((f) => JSON.stringify(f.history)),
    ];
    const [row] = await this.rows(this.sql.settle, [
      fence.owner,
      fence.leases.map((l) => l.partition),
      fence.leases.map((l) => l.epoch),
      published,
      ...failed(retry),
      retry.map((r) => r.delayMs),
      ...failed(dead),
      dead.map((d) => d.park === true),
    ]);
    const held = new Set((row?.held as number[] | undefined) ?? []);
    return { fenced: fence.leases.map((l) => l.partition).filter((p) => !held.has(p)) };
  }

  async heartbeat(owner: string, ttlMs: number): Promise<Membership> {
    const [row] = await this.rows(this.sql.heartbeat, [owner, ttlMs]);
    return {
      partitions: Number(row?.partitions),
      relays: Number(row?.relays),
      held: byPartition(((row?.held as [number, string][] | null) ?? []).map(toLease)),
    };
  }

  async acquireLeases(owner: string, ttlMs: number): Promise<PartitionLease[]> {
    return byPartition(
      (await this.rows(this.sql.acquireLeases, [owner, ttlMs])).map((r) => toLease([r.partition, r.epoch])),
    );
  }

  async releaseLeases(owner: string, partitions: readonly number[] | 'all'): Promise<void> {
    if (partitions === 'all') await this.rows(this.sql.leave, [owner]);
    else if (partitions.length > 0) await this.rows(this.sql.releaseLeases, [owner, partitions]);
  }

  async leases(): Promise<LeaseRecord[]> {
    return (await this.rows(this.sql.leases)).map((r) => ({
      partition: Number(r.partition),
      owner: String(r.owner),
      epoch: Number(r.epoch),
      expiresAt: r.expires_at === null ? null : toDate(r.expires_at),
    }));
  }

  async retryDead(ids: readonly string[]): Promise<number> {
    const valid = ids.filter((id) => UUID.test(id));
    if (valid.length === 0) return 0;
    return Number((await this.rows(this.sql.retryDead, [valid]))[0]?.n ?? 0);
  }

  async discardDead(ids: readonly string[]): Promise<number> {
    const valid = ids.filter((id) => UUID.test(id));
    if (valid.length === 0) return 0;
    return Number((await this.rows(this.sql.discardDead, [valid]))[0]?.n ?? 0);
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
      (n) => `$${n}`,
      (date) => date,
    );
    return (await this.rows(this.sql.list(where, params.length + 1), [...params, limit])).map(toRecord);
  }

  async purge(olderThanMs: number, limit?: number): Promise<number> {
    const chunk = purgeLimit(limit) ?? PURGE_CHUNK;
    let total = 0;
    for (;;) {
      const [row] = await this.rows(this.sql.purge, [olderThanMs, chunk]);
      const deleted = Number(row?.deleted ?? 0);
      total += deleted;
      if (limit !== undefined || deleted < chunk) return total;
    }
  }

  async listen(onWake: () => void): Promise<{ close(): Promise<void> }> {
    const stop = await listenOn(await this.pool(), this.channel, onWake);
    this.listeners.add(stop);
    return {
      close: async () => {
        this.listeners.delete(stop);
        stop();
      },
    };
  }

  /** Stops every listener and ends the pool the store created (never a pool it was given). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.listeners) stop();
    this.listeners.clear();
    if (this.userPool === undefined && this.poolPromise) {
      await (await this.poolPromise.catch(() => undefined))?.end();
    }
  }

  private pool(): Promise<PgPoolLike> {
    this.poolPromise ??= createPool(this.settings.url!, this.settings.poolSize);
    return this.poolPromise;
  }

  private async rows(sql: string, params: unknown[] = []): Promise<Row[]> {
    const pool = await this.pool();
    if (!this.settings.prepareStatements) return (await pool.query(sql, params)).rows;
    return (await pool.query({ name: statementName(sql), text: sql, values: params })).rows;
  }
}

async function createPool(url: string, max: number): Promise<PgPoolLike> {
  let pg: typeof import('pg');
  try {
    pg = await import('pg');
  } catch (cause) {
    throw new OutboxError('DRIVER_MISSING', 'postgresStore needs the "pg" package: npm install pg', {
      cause,
    });
  }
  const Pool = pg.Pool ?? pg.default.Pool;
  // A bounded wait for a connection: during a database outage the relay's calls fail (and are
  // retried) instead of queueing forever, and stop() stays within its budget.
  const pool = new Pool({ connectionString: url, max, connectionTimeoutMillis: 10_000 });
  // An idle connection dropped by the server must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  return pool;
}

/**
 * The NOTIFY channel of one outbox table: readable when it fits in 63 bytes, hashed when not.
 * @example
 * channelName('public', 'outbox') // 'outbox:public.outbox' (LISTEN "outbox:public.outbox")
 */
export function channelName(schema: string, table: string): string {
  const name = `outbox:${schema}.${table}`;
  if (name.length <= MAX_CHANNEL_LENGTH) return name;
  return `outbox:${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
}

/**
 * The base of a table's per-key advisory locks: 32 bits from the table's name in the high half,
 * the key hash added in the low half, so two outbox tables never share a key lock.
 */
function keyLockBase(schema: string, table: string): string {
  const high = createHash('sha256').update(`outbox-key:${schema}.${table}`).digest().readUInt32BE(0);
  return BigInt.asIntN(64, BigInt(high) << 32n).toString();
}

function buildSql(schema: string, table: string, options: { notify: boolean; retainPublished: boolean }) {
  const t = `${q(schema)}.${q(table)}`;
  const leases = `${q(schema)}.${q(`${table}_leases`)}`;
  const relays = `${q(schema)}.${q(`${table}_relays`)}`;
  const claimed = `id, seq, key, key_hash, "partition", type, aggregate_type, aggregate_id, destination,
    payload::text AS payload, headers::text AS headers, date_part('epoch', created_at) * 1000 AS created_at,
    attempts, history::text AS history`;
  const record = `${claimed}, status, available_at, last_error, published_at, parked`;
  const ms = (param: string) => `${param}::float8 * interval '1 millisecond'`;
  const keyLock = (hash: string) => `pg_advisory_xact_lock(${keyLockBase(schema, table)}::bigint + ${hash})`;
  // Per-key commit order: add() takes a transaction-scoped lock on each of its keys *before* the
  // rows get their seq, so a second transaction adding to the same key waits until the first
  // commits (or rolls back) and always gets the higher seq. Keys are locked in hash order, so two
  // batches never take the same keys in opposite orders.
  const insertRows = `INSERT INTO ${t}
    (id, key, key_hash, type, aggregate_type, aggregate_id, destination, payload, headers, available_at)
  SELECT e.id, e.key, e.key_hash, e.type, e.aggregate_type, e.aggregate_id, e.destination,
    e.payload::json, e.headers::json, coalesce(e.available_at, now())
  FROM (SELECT count(*) FROM (SELECT ${keyLock('k.h')} FROM
      (SELECT DISTINCT h FROM unnest($3::bigint[]) AS u(h) ORDER BY h) AS k) AS taken) AS locked,
    unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::timestamptz[])
    WITH ORDINALITY AS e(id, key, key_hash, type, aggregate_type, aggregate_id, destination, payload,
      headers, available_at, n)
  ORDER BY e.n`;
  const insertOne = `INSERT INTO ${t}
    (id, key, key_hash, type, aggregate_type, aggregate_id, destination, payload, headers, available_at)
  SELECT $1::uuid, $2::text, $3::bigint, $4::text, $5::text, $6::text, $7::text, $8::text::json, $9::text::json,
    coalesce($10::timestamptz, now())
  FROM (SELECT ${keyLock('$3::bigint')}) AS locked`;
  const notifying = (insert: string) =>
    options.notify
      ? `WITH ins AS (${insert} RETURNING 1) SELECT pg_notify($11, '') WHERE EXISTS (SELECT 1 FROM ins)`
      : insert;
  // The held partitions as one array, computed once: a per-row IN over the lease CTE made the
  // DELETE a nested loop of partitions × ids (27 ms for 500 events, against 0.6 ms).
  // ("partition" + 0: not indexable, so that under the statistics of an empty table the planner
  // still finds the rows by id instead of scanning every pending row of the held partitions.)
  const fenced = `status = 'pending' AND ("partition" + 0) = ANY ((SELECT held FROM fence)::int[])`;
  // Lease rows are always locked in partition order, so a relay's settle, heartbeat and release,
  // running on different connections, never deadlock on them.
  const ownedRows = (condition: string) =>
    `"partition" IN (SELECT "partition" FROM ${leases} WHERE ${condition} ORDER BY "partition" FOR UPDATE)`;
  const changed = (statement: string) =>
    `WITH changed AS (${statement} RETURNING 1) SELECT count(*) AS n FROM changed`;
  return {
    // With notify on, the notification is queued inside the caller's transaction: delivered at
    // COMMIT, never after a ROLLBACK, one per transaction.
    insert: notifying(insertRows),
    insertOne: notifying(insertOne),
    // The claim query lives in a function the migration creates (postgres-migrations.ts says why).
    claim: `SELECT ${claimed} FROM ${q(schema)}.${q(`${table}_claim`)}($1::int[], $2::int[], $3::int,
      $4::bigint[], $5::int[], $6::int[])`,
    // FOR SHARE makes the fence hold until commit: a takeover (UPDATE of a lease row) waits for
    // this statement, or this statement sees the new epoch and leaves that partition's rows alone.
    // The settle commits asynchronously (synchronous_commit off for its own transaction only):
    // a database crash can forget the last settles, and their events are published again, in
    // order (WAL is replayed in order, so what is forgotten is always the latest settles).
    settle: `WITH commit_mode AS (SELECT set_config('synchronous_commit', 'off', true)), lease AS (
        SELECT l."partition" FROM ${leases} l
          JOIN unnest($2::int[], $3::bigint[]) AS f(p, epoch) ON l."partition" = f.p AND l.epoch = f.epoch
        WHERE l.owner = $1 ORDER BY l."partition" FOR SHARE OF l
      ), fence AS (
        SELECT coalesce(array_agg("partition"), '{}') AS held FROM lease
      ), published AS (
        ${
          options.retainPublished
            ? `UPDATE ${t} SET status = 'published', published_at = now()`
            : `DELETE FROM ${t}`
        } WHERE id = ANY($4::uuid[]) AND ${fenced} RETURNING 1
      ), retried AS (
        UPDATE ${t} SET attempts = r.attempts, last_error = r.error, history = r.history::json,
          available_at = now() + ${ms('r.delay_ms')}
        FROM unnest($5::uuid[], $6::int[], $7::text[], $8::text[], $9::float8[])
          AS r(id, attempts, error, history, delay_ms)
        WHERE ${t}.id = r.id AND ${fenced} RETURNING 1
      ), dead AS (
        UPDATE ${t} SET status = 'dead', attempts = d.attempts, last_error = d.error,
          history = d.history::json, parked = d.park
        FROM unnest($10::uuid[], $11::int[], $12::text[], $13::text[], $14::bool[])
          AS d(id, attempts, error, history, park)
        WHERE ${t}.id = d.id AND ${fenced} RETURNING 1
      )
      SELECT held FROM fence, commit_mode`,
    // Registers the relay, renews every lease it holds (a released one excepted) and counts the
    // live relays; registrations long dead are cleaned up on the way.
    heartbeat: `WITH me AS (
        INSERT INTO ${relays} (owner, expires_at) VALUES ($1, now() + ${ms('$2')})
        ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at RETURNING 1
      ), gone AS (
        DELETE FROM ${relays} WHERE expires_at < now() - interval '1 hour' RETURNING 1
      ), renewed AS (
        UPDATE ${leases} SET expires_at = now() + ${ms('$2')}
        WHERE ${ownedRows(`owner = $1 AND expires_at > '-infinity'`)} RETURNING "partition", epoch
      )
      SELECT (SELECT count(*) FROM ${leases}) AS partitions,
        (SELECT count(*) FROM ${relays} WHERE expires_at > now() AND owner <> $1) + 1 AS relays,
        (SELECT json_agg(json_build_array("partition", epoch::text)) FROM renewed) AS held`,
    // Free or expired partitions, up to the fair share ceil(P / live relays) minus what this relay
    // holds; SKIP LOCKED so relays starting together split them instead of queueing.
    acquireLeases: `WITH live AS (
        SELECT count(*) + 1 AS n FROM ${relays} WHERE expires_at > now() AND owner <> $1
      ), share AS (
        SELECT greatest(0, ceil((SELECT count(*) FROM ${leases})::numeric / live.n)
          - (SELECT count(*) FROM ${leases} WHERE owner = $1 AND expires_at > now()))::int AS n FROM live
      ), free AS (
        SELECT "partition" FROM ${leases} WHERE expires_at < now()
        ORDER BY "partition" LIMIT (SELECT n FROM share) FOR UPDATE SKIP LOCKED
      )
      UPDATE ${leases} l SET owner = $1, epoch = l.epoch + 1, expires_at = now() + ${ms('$2')}
      FROM free WHERE l."partition" = free."partition"
      RETURNING l."partition", l.epoch::text AS epoch`,
    // '-infinity' marks a released lease: free for anyone at once, and no longer renewable.
    releaseLeases: `UPDATE ${leases} SET expires_at = '-infinity'
      WHERE ${ownedRows(`owner = $1 AND "partition" = ANY($2::int[])`)}`,
    leave: `WITH released AS (
        UPDATE ${leases} SET expires_at = '-infinity'
        WHERE ${ownedRows(`owner = $1 AND expires_at > '-infinity'`)} RETURNING 1
      ), gone AS (DELETE FROM ${relays} WHERE owner = $1 RETURNING 1)
      SELECT (SELECT count(*) FROM released) AS released`,
    leases: `SELECT "partition", owner, epoch::text AS epoch,
        CASE WHEN expires_at = '-infinity' THEN NULL ELSE expires_at END AS expires_at
      FROM ${leases} ORDER BY "partition"`,
    retryDead: changed(`UPDATE ${t} SET status = 'pending', attempts = 0, parked = false, available_at = now()
      WHERE id = ANY($1::uuid[]) AND status = 'dead'`),
    discardDead: changed(`DELETE FROM ${t} WHERE id = ANY($1::uuid[]) AND status = 'dead'`),
    stats: `SELECT destination,
        count(*) FILTER (WHERE status = 'pending') AS pending,
        count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
        count(*) FILTER (WHERE status = 'dead') AS dead,
        count(*) FILTER (WHERE status = 'published') AS published,
        -- GREATEST skips NULL: a destination with nothing pending would read 0 instead of no age.
        CASE WHEN count(*) FILTER (WHERE status = 'pending' AND (attempts > 0 OR available_at <= now())) > 0
          THEN greatest(0, floor(extract(epoch FROM now() - min(CASE WHEN attempts > 0 THEN created_at ELSE available_at END)
            FILTER (WHERE status = 'pending' AND (attempts > 0 OR available_at <= now()))) * 1000)) END AS oldest_pending_age_ms
      FROM ${t} GROUP BY destination ORDER BY destination`,
    get: `SELECT ${record} FROM ${t} WHERE id = $1`,
    list: (where: string, limit: number) =>
      `SELECT ${record} FROM ${t} ${where} ORDER BY seq LIMIT $${limit}`,
    purge: `WITH gone AS (
        DELETE FROM ${t} WHERE id IN (
          SELECT id FROM ${t} WHERE status = 'published' AND published_at < now() - ${ms('$1')}
          LIMIT $2 FOR UPDATE SKIP LOCKED)
        RETURNING 1)
      SELECT count(*) AS deleted FROM gone`,
  };
}

function byPartition(leases: PartitionLease[]): PartitionLease[] {
  return leases.sort((a, b) => a.partition - b.partition);
}

function toLease([partition, epoch]: readonly [unknown, unknown]): PartitionLease {
  return { partition: Number(partition), epoch: Number(epoch) };
}

/** A timestamp column: milliseconds since the epoch (cheaper to read than a timestamptz), or a Date. */
function toDate(value: unknown): Date {
  if (value instanceof Date) return value;
  return new Date(typeof value === 'number' ? value : String(value));
}

/**
 * The claim function's skip list: the seqs in flight grouped by partition, and for the i-th
 * partition the 1-based bounds of its group (from > to: none).
 */
function skipGroups(
  partitions: readonly number[],
  inFlight: readonly InFlight[],
): [number[], number[], number[]] {
  const byPartition = new Map<number, number[]>();
  for (const { partition, seq } of inFlight) {
    const group = byPartition.get(partition);
    if (group) group.push(seq);
    else byPartition.set(partition, [seq]);
  }
  const seqs: number[] = [];
  const from: number[] = [];
  const to: number[] = [];
  for (const partition of partitions) {
    from.push(seqs.length + 1);
    for (const seq of byPartition.get(partition) ?? []) seqs.push(seq);
    to.push(seqs.length);
  }
  return [seqs, from, to];
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
    createdAt: toDate(row.created_at),
    attempts: Number(row.attempts),
    history: JSON.parse(String(row.history)),
  };
}

function toRecord(row: Row): EventRecord {
  return {
    ...toClaimed(row),
    status: row.status as EventStatus,
    availableAt: toDate(row.available_at),
    lastError: (row.last_error as string | null) ?? null,
    publishedAt: row.published_at === null ? null : toDate(row.published_at),
    parked: row.parked === true,
  };
}

/**
 * One LISTEN connection, checked out of the pool for as long as it lives. A lost connection is
 * replaced with capped exponential backoff; the relay keeps polling meanwhile, so a lost LISTEN
 * costs latency only. After a reconnect it wakes the relay once for anything missed. Resolves to
 * a function that stops listening; rejects when the first LISTEN fails.
 */
async function listenOn(pool: PgPoolLike, channel: string, onWake: () => void): Promise<() => void> {
  let closed = false;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let dropCurrent: (() => void) | undefined;
  const stop = () => {
    closed = true;
    clearTimeout(timer);
    dropCurrent?.();
  };
  const reconnectLater = () => {
    if (closed || timer !== undefined) return;
    const ceilingMs = Math.min(LISTEN_RETRY_MAX_MS, LISTEN_RETRY_INITIAL_MS * 2 ** failures++);
    timer = setTimeout(
      () => {
        timer = undefined;
        if (!closed) connect().then(() => closed || onWake(), reconnectLater);
      },
      ceilingMs / 2 + (Math.random() * ceilingMs) / 2,
    );
    timer.unref();
  };
  const connect = async () => {
    const client = await pool.connect();
    let live = true;
    const drop = (error?: Error) => {
      if (!live) return;
      live = false;
      if (dropCurrent === drop) dropCurrent = undefined;
      client.release(error ?? true);
      reconnectLater();
    };
    client.on('error', drop);
    client.on('end', () => drop());
    client.on('notification', (message) => live && message.channel === channel && onWake());
    dropCurrent = drop;
    try {
      await client.query(`LISTEN ${q(channel)}`);
    } catch (error) {
      drop(error as Error);
      throw error;
    }
    if (closed) drop();
    failures = 0;
  };
  try {
    await connect();
  } catch (error) {
    stop();
    throw error;
  }
  return stop;
}
