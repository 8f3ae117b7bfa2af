/**
 * SQLite schema, one numbered migration per step. Never edit a migration that has shipped:
 * add the next one. Timestamps are integer milliseconds since the epoch.
 *
 * Indexes serve the claim exactly: pending rows in seq order, and — by key — the rows that can
 * hold their key back (retrying, or scheduled for later). Happy-path rows never enter that second
 * index (a (key, …) index over every pending row was measured: each settle dirtied a page of it
 * per row, halving the drain).
 */
export interface SqliteMigration {
  readonly version: number;
  readonly name: string;
  sql(table: string, settings: { readonly partitions: number }): string;
}

export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    name: 'create outbox, leases',
    sql: (t) => `
      CREATE TABLE IF NOT EXISTS "${t}" (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        key TEXT NOT NULL,
        key_hash INTEGER NOT NULL,
        type TEXT NOT NULL,
        aggregate_type TEXT,
        aggregate_id TEXT,
        destination TEXT NOT NULL,
        payload TEXT NOT NULL,
        headers TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'published', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        history TEXT NOT NULL DEFAULT '[]',
        created_at INTEGER NOT NULL,
        available_at INTEGER NOT NULL,
        published_at INTEGER
      );
      CREATE INDEX IF NOT EXISTS "${t}_pending_seq" ON "${t}" (seq) WHERE status = 'pending';
      CREATE INDEX IF NOT EXISTS "${t}_pending_held" ON "${t}" (key, available_at)
        WHERE status = 'pending' AND (attempts > 0 OR available_at > created_at);
      CREATE INDEX IF NOT EXISTS "${t}_published_at" ON "${t}" (published_at) WHERE status = 'published';
      CREATE INDEX IF NOT EXISTS "${t}_dead_seq" ON "${t}" (seq) WHERE status = 'dead';
      CREATE TABLE IF NOT EXISTS "${t}_leases" (
        partition INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      );`,
  },
  {
    version: 2,
    name: 'partition leases, relays, parked dead letters',
    // The partition is derived from the stored key hash, so add() never needs to know P.
    // A released or never-owned lease has expires_at -1: free for anyone at once.
    sql: (t, { partitions }) => `
      ALTER TABLE "${t}" ADD COLUMN partition INTEGER GENERATED ALWAYS AS (key_hash % ${partitions}) VIRTUAL;
      ALTER TABLE "${t}" ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
      DROP INDEX IF EXISTS "${t}_pending_seq";
      DROP INDEX IF EXISTS "${t}_pending_held";
      CREATE INDEX "${t}_pending_seq" ON "${t}" (seq, partition) WHERE status = 'pending';
      CREATE INDEX "${t}_pending_held" ON "${t}" (key, seq)
        WHERE (status = 'pending' AND (attempts > 0 OR available_at > created_at)) OR parked;
      DELETE FROM "${t}_leases";
      WITH RECURSIVE p(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM p WHERE n + 1 < ${partitions})
      INSERT INTO "${t}_leases" (partition, owner, epoch, expires_at) SELECT n, '', 0, -1 FROM p;
      CREATE TABLE "${t}_relays" (owner TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);`,
  },
];
