/**
 * The SQLite store: the embedded default. WAL mode so the application's writers and the relay's
 * reads do not block each other, a busy timeout so short write collisions wait instead of
 * failing, and the relay's own write transactions kept to one settle each.
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
  assertPartitionCount,
  assertPartitions,
  listConditions,
  listLimit,
  purgeLimit,
  summarizeStats,
} from './common.js';
import { SQLITE_MIGRATIONS } from './sqlite-migrations.js';

/** The part of better-sqlite3's Database the store uses. */
export interface SqliteDatabaseLike {
  prepare(sql: string): {
    all(...params: unknown[]): unknown[];
    get(...params: unknown[]): unknown;
    run(...params: unknown[]): { changes: number };
  };
  exec(sql: string): unknown;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  transaction<F extends (...args: never[]) => unknown>(fn: F): F & { immediate: F };
  close(): unknown;
  readonly open: boolean;
  readonly inTransaction: boolean;
}

export interface SqliteStoreOptions {
  /** A better-sqlite3 database the store uses as is (you close it). */
  readonly database?: SqliteDatabaseLike;
  /** A file path: the store opens (and closes) its own connection, loading better-sqlite3 lazily. */
  readonly path?: string;
  /** Table name (default 'outbox'). */
  readonly table?: string;
  /** Keep published events (status 'published', with published_at) for `purge` to remove later. */
  readonly retainPublished?: boolean;
  /** How long a write waits for a lock held by another connection (default 5000 ms). */
  readonly busyTimeoutMs?: number;
  /**
   * Partitions of the table `migrate()` creates (default 64). Given, it must match an existing
   * table's number: `migrate()` refuses a different one (changing it is not supported yet).
   */
  readonly partitions?: number;
}

const DEFAULT_PARTITIONS = 64;
/** How long a write waits for another connection's lock unless `busyTimeoutMs` says otherwise. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

const COLUMNS = `seq, id, key, key_hash, partition, type, aggregate_type, aggregate_id, destination, payload,
  headers, status, attempts, last_error, history, created_at, available_at, published_at, parked`;

interface Row {
  seq: number;
  id: string;
  key: string;
  key_hash: number;
  partition: number;
  type: string;
  aggregate_type: string | null;
  aggregate_id: string | null;
  destination: string;
  payload: string;
  headers: string;
  status: EventStatus;
  attempts: number;
  last_error: string | null;
  history: string;
  created_at: number;
  available_at: number;
  published_at: number | null;
  parked: number;
}

function toClaimed(r: Row): ClaimedEvent {
  return {
    id: r.id,
    seq: r.seq,
    key: r.key,
    keyHash: r.key_hash,
    partition: r.partition,
    type: r.type,
    aggregateType: r.aggregate_type,
    aggregateId: r.aggregate_id,
    destination: r.destination,
    payload: r.payload,
    headers: JSON.parse(r.headers),
    createdAt: new Date(r.created_at),
    attempts: r.attempts,
    history: JSON.parse(r.history),
  };
}

function toRecord(r: Row): EventRecord {
  return {
    ...toClaimed(r),
    status: r.status,
    availableAt: new Date(r.available_at),
    lastError: r.last_error,
    publishedAt: r.published_at === null ? null : new Date(r.published_at),
    parked: r.parked === 1,
  };
}

/**
 * A store on a SQLite file.
 * @example
 * const store = sqliteStore({ path: './app.db' });
 * await store.migrate();
 */
export function sqliteStore(options: SqliteStoreOptions): Store {
  const table = assertIdentifier(options.table ?? 'outbox', 'table');
  assertPartitions(options.partitions);
  if (!options.database === !options.path) {
    throw new OutboxError('INVALID_CONFIG', 'sqliteStore needs exactly one of `database` or `path`');
  }
  const t = `"${table}"`;
  const leases = `"${table}_leases"`;
  const relays = `"${table}_relays"`;
  const migrations = `"${table}_migrations"`;
  let db: SqliteDatabaseLike | undefined = options.database;

  async function open(): Promise<SqliteDatabaseLike> {
    if (db) return db;
    let Database: new (path: string, opts?: object) => SqliteDatabaseLike;
    try {
      Database = (await import('better-sqlite3')).default as unknown as typeof Database;
    } catch (cause) {
      throw new OutboxError(
        'DRIVER_MISSING',
        'sqliteStore needs the "better-sqlite3" package: npm install better-sqlite3',
        {
          cause,
        },
      );
    }
    if (db) return db; // another call opened it while we were importing
    const opened = new Database(options.path!, { timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
    opened.pragma('journal_mode = WAL');
    opened.pragma('synchronous = NORMAL');
    db = opened;
    return db;
  }

  const insertSql = `INSERT INTO ${t} (id, key, key_hash, type, aggregate_type, aggregate_id, destination, payload,
      headers, created_at, available_at)
    SELECT e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4, e.value ->> 5, e.value ->> 6,
      e.value ->> 7, e.value ->> 8, ?, coalesce(e.value ->> 9, ?)
    FROM json_each(?) AS e`;

  // Due pending events of the given partitions in seq order, minus those whose key has an earlier
  // event holding it back: pending and not due (retrying or delayed), or a parked dead letter.
  const claimSql = `SELECT ${COLUMNS} FROM ${t} AS o
    WHERE o.status = 'pending' AND o.available_at <= @now
      AND o.partition IN (SELECT value FROM json_each(@partitions))
      AND o.seq NOT IN (SELECT value FROM json_each(@inFlight))
      AND NOT EXISTS (SELECT 1 FROM ${t} AS b
        WHERE ((b.status = 'pending' AND (b.attempts > 0 OR b.available_at > b.created_at)) OR b.parked)
          AND b.key = o.key AND b.seq < o.seq AND (b.parked OR b.available_at > @now))
    ORDER BY o.seq LIMIT @limit`;
  // Rows of the partitions the settle's fence still holds.
  const fenced = `status = 'pending' AND partition IN (SELECT value FROM json_each(@held))`;

  function schemaVersion(conn: SqliteDatabaseLike): number {
    conn.exec(`CREATE TABLE IF NOT EXISTS ${migrations} (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
      applied_at INTEGER NOT NULL)`);
    const row = conn.prepare(`SELECT max(version) AS v FROM ${migrations}`).get() as { v: number | null };
    return row.v ?? 0;
  }

  const latest = SQLITE_MIGRATIONS[SQLITE_MIGRATIONS.length - 1]!.version;

  return {
    dialect: 'sqlite',
    // Calls run one at a time on one connection: claiming ahead would only add work.
    capabilities: { listenNotify: false },

    insert(events: readonly PreparedEvent[]): Statement {
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
      const now = Date.now();
      // Plain `?` placeholders: every SQLite driver binds them positionally.
      return { sql: insertSql, params: [now, now, JSON.stringify(rows)] };
    },

    async migrate(migrateOptions: { partitions?: number } = {}): Promise<MigrationResult> {
      const requested = assertPartitions(migrateOptions.partitions) ?? options.partitions;
      const conn = await open();
      conn.pragma('journal_mode = WAL');
      // BEGIN IMMEDIATE takes the write lock first, so concurrent migrators run one after another.
      const run = conn.transaction(() => {
        const from = schemaVersion(conn);
        const applied: string[] = [];
        for (const m of SQLITE_MIGRATIONS) {
          if (m.version <= from) continue;
          conn.exec(m.sql(table, { partitions: requested ?? DEFAULT_PARTITIONS }));
          conn
            .prepare(`INSERT INTO ${migrations} (version, name, applied_at) VALUES (?, ?, ?)`)
            .run(m.version, m.name, Date.now());
          applied.push(`${m.version} ${m.name}`);
        }
        const { n } = conn.prepare(`SELECT count(*) AS n FROM ${leases}`).get() as { n: number };
        assertPartitionCount(`"${table}"`, n, requested);
        return { from, to: Math.max(from, latest), applied };
      });
      return run.immediate();
    },

    async checkSchema(): Promise<void> {
      const conn = await open();
      const row = conn
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?`)
        .get(`${table}_migrations`);
      const version = row
        ? ((conn.prepare(`SELECT max(version) AS v FROM ${migrations}`).get() as { v: number | null }).v ?? 0)
        : 0;
      if (version < latest) {
        throw new OutboxError(
          'SCHEMA_OUTDATED',
          `outbox schema is at version ${version}, this code needs ${latest}: run \`outbox migrate\``,
          {
            details: { version, latest },
          },
        );
      }
      if (version > latest) {
        throw new OutboxError(
          'SCHEMA_TOO_NEW',
          `outbox schema is at version ${version}, newer than this code knows (${latest}): upgrade outbox`,
          {
            details: { version, latest },
          },
        );
      }
    },

    async claim(
      partitions: readonly number[],
      limit: number,
      inFlight: readonly InFlight[] = [],
    ): Promise<ClaimedEvent[]> {
      if (limit <= 0 || partitions.length === 0) return [];
      const conn = await open();
      // A connection shared with the application sees the application's uncommitted rows while a
      // transaction is open on it: claim nothing then, the next poll comes soon enough.
      if (conn.inTransaction) return [];
      const rows = conn.prepare(claimSql).all({
        now: Date.now(),
        limit,
        partitions: JSON.stringify(partitions),
        inFlight: JSON.stringify(inFlight.map((e) => e.seq)),
      }) as Row[];
      return rows.map(toClaimed);
    },

    async settle(s: Settlement, fence: Fence): Promise<SettleResult> {
      const conn = await open();
      const now = Date.now();
      const run = conn.transaction((): SettleResult => {
        const held = (
          conn
            .prepare(`SELECT l.partition AS p FROM ${leases} AS l
              JOIN json_each(?) AS f ON l.partition = f.value ->> 0 AND l.epoch = f.value ->> 1
              WHERE l.owner = ?`)
            .all(JSON.stringify(fence.leases.map((l) => [l.partition, l.epoch])), fence.owner) as {
            p: number;
          }[]
        ).map((r) => r.p);
        const fencedOut = fence.leases.map((l) => l.partition).filter((p) => !held.includes(p));
        if (held.length === 0) return { fenced: fencedOut };
        const scope = { held: JSON.stringify(held) };
        if (s.published.length > 0) {
          const ids = JSON.stringify(s.published);
          if (options.retainPublished) {
            conn
              .prepare(`UPDATE ${t} SET status = 'published', published_at = @now
                WHERE ${fenced} AND id IN (SELECT value FROM json_each(@ids))`)
              .run({ ...scope, now, ids });
          } else {
            conn
              .prepare(`DELETE FROM ${t} WHERE ${fenced} AND id IN (SELECT value FROM json_each(@ids))`)
              .run({ ...scope, ids });
          }
        }
        const failed = [
          ...s.retry.map((f) => [
            f.id,
            'pending',
            f.attempts,
            f.error,
            JSON.stringify(f.history),
            now + f.delayMs,
            0,
          ]),
          ...s.dead.map((f) => [
            f.id,
            'dead',
            f.attempts,
            f.error,
            JSON.stringify(f.history),
            null,
            f.park ? 1 : 0,
          ]),
        ];
        if (failed.length > 0) {
          conn
            .prepare(`UPDATE ${t} AS o SET status = f.value ->> 1, attempts = f.value ->> 2, last_error = f.value ->> 3,
                history = f.value ->> 4, available_at = coalesce(f.value ->> 5, o.available_at), parked = f.value ->> 6
              FROM json_each(@failed) AS f WHERE o.id = f.value ->> 0 AND o.${fenced}`)
            .run({ ...scope, failed: JSON.stringify(failed) });
        }
        return { fenced: fencedOut };
      });
      return run.immediate();
    },

    async heartbeat(owner: string, ttlMs: number): Promise<Membership> {
      const conn = await open();
      const run = conn.transaction((): Membership => {
        const now = Date.now();
        conn
          .prepare(`INSERT INTO ${relays} (owner, expires_at) VALUES (?, ?)
            ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at`)
          .run(owner, now + ttlMs);
        conn.prepare(`DELETE FROM ${relays} WHERE expires_at < ?`).run(now - 3_600_000);
        const held = conn
          .prepare(`UPDATE ${leases} SET expires_at = ? WHERE owner = ? AND expires_at >= 0
            RETURNING partition, epoch`)
          .all(now + ttlMs, owner) as PartitionLease[];
        const counts = conn
          .prepare(`SELECT (SELECT count(*) FROM ${leases}) AS partitions,
              (SELECT count(*) FROM ${relays} WHERE expires_at > ? AND owner <> ?) + 1 AS relays`)
          .get(now, owner) as { partitions: number; relays: number };
        const mine = held.map((l) => ({ partition: l.partition, epoch: l.epoch }));
        return { ...counts, held: mine.sort((a, b) => a.partition - b.partition) };
      });
      return run.immediate();
    },

    async acquireLeases(owner: string, ttlMs: number): Promise<PartitionLease[]> {
      const conn = await open();
      // How many this relay may take: its fair share ceil(P / live relays) minus what it holds,
      // if anything is free. Read first, so that a relay at its share (the usual case, asked every
      // poll interval) never takes the write lock; the write transaction checks again.
      const wanted = (now: number): number =>
        (
          conn
            .prepare(`SELECT CASE WHEN EXISTS (SELECT 1 FROM ${leases} WHERE expires_at < @now)
                THEN max(0, ((SELECT count(*) FROM ${leases}) + live.n - 1) / live.n
                  - (SELECT count(*) FROM ${leases} WHERE owner = @owner AND expires_at > @now))
                ELSE 0 END AS want
              FROM (SELECT count(*) + 1 AS n FROM ${relays} WHERE expires_at > @now AND owner <> @owner) AS live`)
            .get({ owner, now }) as { want: number }
        ).want;
      if (wanted(Date.now()) <= 0) return [];
      const run = conn.transaction((): PartitionLease[] => {
        const now = Date.now();
        const want = wanted(now);
        if (want <= 0) return [];
        const taken = conn
          .prepare(`UPDATE ${leases} SET owner = @owner, epoch = epoch + 1, expires_at = @expires
            WHERE partition IN (SELECT partition FROM ${leases} WHERE expires_at < @now
              ORDER BY partition LIMIT @want)
            RETURNING partition, epoch`)
          .all({ owner, now, want, expires: now + ttlMs }) as PartitionLease[];
        return taken
          .map((l) => ({ partition: l.partition, epoch: l.epoch }))
          .sort((a, b) => a.partition - b.partition);
      });
      return run.immediate();
    },

    async releaseLeases(owner: string, partitions: readonly number[] | 'all'): Promise<void> {
      const conn = await open();
      if (partitions === 'all') {
        conn.transaction(() => {
          conn.prepare(`UPDATE ${leases} SET expires_at = -1 WHERE owner = ?`).run(owner);
          conn.prepare(`DELETE FROM ${relays} WHERE owner = ?`).run(owner);
        })();
      } else if (partitions.length > 0) {
        conn
          .prepare(`UPDATE ${leases} SET expires_at = -1
            WHERE owner = ? AND partition IN (SELECT value FROM json_each(?))`)
          .run(owner, JSON.stringify(partitions));
      }
    },

    async leases(): Promise<LeaseRecord[]> {
      const conn = await open();
      const rows = conn
        .prepare(`SELECT partition, owner, epoch, expires_at FROM ${leases} ORDER BY partition`)
        .all() as { partition: number; owner: string; epoch: number; expires_at: number }[];
      return rows.map((r) => ({
        partition: r.partition,
        owner: r.owner,
        epoch: r.epoch,
        expiresAt: r.expires_at < 0 ? null : new Date(r.expires_at),
      }));
    },

    async retryDead(ids: readonly string[]): Promise<number> {
      const conn = await open();
      return conn
        .prepare(`UPDATE ${t} SET status = 'pending', attempts = 0, parked = 0, available_at = ?
          WHERE status = 'dead' AND id IN (SELECT value FROM json_each(?))`)
        .run(Date.now(), JSON.stringify(ids)).changes;
    },

    async discardDead(ids: readonly string[]): Promise<number> {
      const conn = await open();
      return conn
        .prepare(`DELETE FROM ${t} WHERE status = 'dead' AND id IN (SELECT value FROM json_each(?))`)
        .run(JSON.stringify(ids)).changes;
    },

    async stats(): Promise<OutboxStats> {
      const conn = await open();
      const rows = conn
        .prepare(`SELECT destination,
            sum(status = 'pending') AS pending,
            sum(status = 'pending' AND attempts > 0) AS retrying,
            sum(status = 'dead') AS dead,
            sum(status = 'published') AS published,
            @now - min(CASE WHEN status = 'pending' AND attempts > 0 THEN created_at
              WHEN status = 'pending' AND available_at <= @now THEN available_at END) AS oldest_pending_age_ms
          FROM ${t} GROUP BY destination ORDER BY destination`)
        .all({ now: Date.now() }) as Array<Record<string, number | string | null>>;
      return summarizeStats(rows);
    },

    async get(id: string): Promise<EventRecord | undefined> {
      const conn = await open();
      const row = conn.prepare(`SELECT ${COLUMNS} FROM ${t} WHERE id = ?`).get(id) as Row | undefined;
      return row && toRecord(row);
    },

    async list(filter: ListFilter = {}): Promise<EventRecord[]> {
      const limit = listLimit(filter);
      const { where, params } = listConditions(
        filter,
        () => '?',
        (date) => date.getTime(),
      );
      const conn = await open();
      const rows = conn
        .prepare(`SELECT ${COLUMNS} FROM ${t} ${where} ORDER BY seq LIMIT ?`)
        .all(...params, limit) as Row[];
      return rows.map(toRecord);
    },

    async purge(olderThanMs: number, limit?: number): Promise<number> {
      const chunk = purgeLimit(limit) ?? 5000;
      const conn = await open();
      const cutoff = Date.now() - olderThanMs;
      let total = 0;
      // Bounded chunks: each delete is a short write transaction, so the relay never waits long.
      for (;;) {
        const { changes } = conn
          .prepare(`DELETE FROM ${t} WHERE seq IN (SELECT seq FROM ${t}
            WHERE status = 'published' AND published_at < ? LIMIT ?)`)
          .run(cutoff, chunk);
        total += changes;
        if (limit !== undefined || changes < chunk) return total;
      }
    },

    async close(): Promise<void> {
      if (options.path && db?.open) db.close();
      db = options.database;
    },
  };
}
