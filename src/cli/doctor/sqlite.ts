/**
 * `outbox doctor` on SQLite: the file, WAL mode, indexes against what the migrations create and
 * stale leases. Opens the file without the store's own connection settings (which would switch
 * it to WAL and hide the problem) and changes nothing.
 */
import { existsSync } from 'node:fs';
import type { DatabaseConfig } from '../../core/config.js';
import { OutboxError } from '../../core/errors.js';
import { DEFAULT_BUSY_TIMEOUT_MS, type SqliteDatabaseLike, sqliteStore } from '../../stores/sqlite.js';
import { SQLITE_MIGRATIONS } from '../../stores/sqlite-migrations.js';
import {
  attempt,
  type Check,
  connectionFailed,
  type ExpectedIndex,
  indexCheck,
  leaseCheck,
  ok,
  oneLine,
  schemaCheck,
} from './checks.js';

/** The indexes the migrations leave, in order (a later migration may drop and recreate one). */
export function sqliteIndexes(table: string): ExpectedIndex[] {
  const indexes = new Map<string, ExpectedIndex>();
  for (const migration of SQLITE_MIGRATIONS) {
    const sql = migration.sql(table, { partitions: 64 }); // no index depends on the count
    for (const m of sql.matchAll(
      /DROP INDEX (?:IF EXISTS )?"([^"]+)";|(CREATE INDEX (?:IF NOT EXISTS )?"([^"]+)" ON [^;]+);/g,
    )) {
      if (m[1]) indexes.delete(m[1]);
      else indexes.set(m[3]!, { table, name: m[3]!, create: oneLine(m[2]!) });
    }
  }
  return [...indexes.values()];
}

export async function sqliteChecks(database: DatabaseConfig): Promise<Check[]> {
  const path = database.url.replace(/^sqlite:(\/\/)?/i, '');
  if (!existsSync(path)) {
    return [
      {
        id: 'connection',
        status: 'fail',
        summary: `no database file at ${path}`,
        fix: 'check --db / OUTBOX_DATABASE_URL, or create the schema there with `outbox migrate`',
      },
    ];
  }
  let Database: new (path: string, options?: object) => SqliteDatabaseLike;
  try {
    Database = (await import('better-sqlite3')).default as unknown as typeof Database;
  } catch (cause) {
    throw new OutboxError(
      'DRIVER_MISSING',
      'outbox doctor needs the "better-sqlite3" package: npm install better-sqlite3',
      {
        cause,
      },
    );
  }
  let db: SqliteDatabaseLike;
  try {
    db = new Database(path, {
      fileMustExist: true,
      timeout: database.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
    });
  } catch (error) {
    return [connectionFailed(error)];
  }
  try {
    const table = database.table ?? 'outbox';
    const store = sqliteStore({ database: db, table });
    const latest = SQLITE_MIGRATIONS.at(-1)!.version;
    const { check, tables } = await schemaCheck(() => store.checkSchema(), latest);
    const checks = [check, journalMode(db, path)];
    if (check.status === 'ok') {
      const present = db
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?`)
        .all(table) as {
        name: string;
      }[];
      checks.push(indexCheck(sqliteIndexes(table), new Set(present.map((r) => r.name))));
    }
    if (tables) {
      checks.push(
        ...(await attempt('leases', async () =>
          leaseCheck(leaseRows(db, table, Date.now()), await store.stats()),
        )),
      );
    }
    return checks;
  } finally {
    db.close();
  }
}

function journalMode(db: SqliteDatabaseLike, path: string): Check {
  const mode = String(db.pragma('journal_mode', { simple: true }));
  if (mode.toLowerCase() === 'wal')
    return ok('journal-mode', 'WAL: the relay reads while your transactions write');
  return {
    id: 'journal-mode',
    status: 'warn',
    summary: `journal_mode is ${mode}, not WAL: the relay's reads and your transactions block each other, and writers meet SQLITE_BUSY under load`,
    fix: `sqlite3 ${path} 'PRAGMA journal_mode = WAL' (it stays set in the file; outbox migrate and the relay set it when they open it)`,
    details: { journalMode: mode },
  };
}

/** SQLite has no server clock: relays write their own Date.now(), which this process shares. */
function leaseRows(db: SqliteDatabaseLike, table: string, now: number) {
  const stale = db
    .prepare(`SELECT owner, json_group_array(partition) AS partitions, ? - max(expires_at) AS expired_ms
      FROM (SELECT owner, partition, expires_at FROM "${table}_leases"
        WHERE owner <> '' AND expires_at >= 0 AND expires_at <= ? ORDER BY partition)
      GROUP BY owner ORDER BY owner`)
    .all(now, now) as { owner: string; partitions: string; expired_ms: number }[];
  const counts = db
    .prepare(`SELECT (SELECT count(*) FROM "${table}_relays" WHERE expires_at > @now) AS live,
        (SELECT count(*) FROM "${table}_leases" WHERE expires_at > @now) AS held,
        (SELECT count(*) FROM "${table}_leases") AS partitions`)
    .get({ now }) as { live: number; held: number; partitions: number };
  return {
    stale: stale.map((r) => ({
      owner: r.owner,
      partitions: JSON.parse(r.partitions) as number[],
      expiredMs: r.expired_ms,
    })),
    liveRelays: counts.live,
    heldPartitions: counts.held,
    partitions: counts.partitions,
  };
}
