/**
 * Write overhead on MariaDB and SQLite, as write.ts measures it on PostgreSQL: business
 * transactions per second, each one business INSERT and [the event], committed. Variants: the
 * business INSERT alone; with `outbox.add`; with the reference's plain INSERT into its own table
 * (what a hand-written outbox row costs). MariaDB with 8 concurrent clients (mysql2 connections,
 * prepared statements as mysql2's `execute` sends them, as add() does); SQLite with its one
 * writer (better-sqlite3, WAL, synchronous = NORMAL, the usual settings of an application), in a
 * scratch file removed afterwards. No relay runs: only the writers' cost is measured.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { createOutbox, type Outbox, type OutboxEvent, type Publisher } from '../../src/index.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { onCleanup } from '../env.js';
import { MARIADB_BUSINESS_TABLE, MARIADB_REFERENCE_TABLE, type MariadbEnv } from '../mariadb-env.js';
import { progress, type ResultRow } from '../report.js';
import { businessRow } from '../tables.js';
import { AGGREGATE_TYPE, EVENT_TYPE, orderPayload } from '../workload.js';

export interface DbWriteSettings {
  readonly seconds: number;
  /** The time of each variant is split into this many rounds; the best round counts. */
  readonly rounds: number;
}

const VARIANTS = ['business', 'ours', 'reference'] as const;
type Variant = (typeof VARIANTS)[number];
type Rates = Record<Variant, number>;

const MARIADB_CLIENTS = 8;
const WARMUP_MS = 1_000;
const KEYS = 1_000;
type MysqlValues = mysql.ExecuteValues[];
const DESTINATION = `bench.write.ref.${EVENT_TYPE}`;

/** add() only renders the destination with the route: this publisher never publishes. */
const routingOnly: Publisher = { kind: 'nats', capabilities: { dedupeById: true }, publish: async () => [] };

function event(n: number): OutboxEvent {
  const aggregateId = `o-${n % KEYS}`;
  return {
    type: EVENT_TYPE,
    aggregateType: AGGREGATE_TYPE,
    aggregateId,
    payload: orderPayload(n, aggregateId),
  };
}

function referenceRow(n: number): string[] {
  const e = event(n);
  return [`${e.aggregateType}:${e.aggregateId}`, e.type, DESTINATION, JSON.stringify(e.payload)];
}

/** Runs every variant `rounds` times, alternating the order; the best round of each counts. */
async function bestRounds(
  rounds: number,
  measure: (variant: Variant, round: number) => Promise<number>,
): Promise<Rates> {
  const rates: Rates = { business: 0, ours: 0, reference: 0 };
  for (let round = 0; round < rounds; round++) {
    for (const v of round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
      rates[v] = Math.max(rates[v], await measure(v, round));
    }
  }
  return rates;
}

const LABELS: Record<Variant, string> = {
  business: 'business INSERT only',
  ours: '+ add()',
  reference: '+ reference INSERT',
};

async function mariadbThroughput(env: MariadbEnv, outbox: Outbox, variant: Variant, seconds: number) {
  await env.reset();
  const business = `INSERT INTO ${MARIADB_BUSINESS_TABLE} (id, customer_id, total, details) VALUES (?, ?, ?, ?)`;
  const reference = `INSERT INTO ${MARIADB_REFERENCE_TABLE} (\`key\`, type, destination, payload) VALUES (?, ?, ?, ?)`;
  const clients = await Promise.all(
    Array.from({ length: MARIADB_CLIENTS }, () => mysql.createConnection({ uri: env.url })),
  );
  const line = progress(`MariaDB ${LABELS[variant]}`);
  const countFrom = performance.now() + WARMUP_MS;
  const endAt = countFrom + seconds * 1_000;
  let n = 0;
  let counted = 0;
  try {
    await Promise.all(
      clients.map(async (conn) => {
        while (performance.now() < endAt) {
          const i = n++;
          await conn.beginTransaction();
          await conn.execute(business, businessRow(i) as MysqlValues);
          if (variant === 'ours') await outbox.add(fromMysql2(conn), event(i));
          else if (variant === 'reference') await conn.execute(reference, referenceRow(i));
          await conn.commit();
          const now = performance.now();
          if (now >= countFrom && now < endAt) counted++;
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
  const rate = counted / seconds;
  line.done(`${Math.round(rate)} tx/s`);
  return rate;
}

export async function writeMariadb(env: MariadbEnv, s: DbWriteSettings): Promise<ResultRow[]> {
  const store = mysqlStore({ url: env.url, poolSize: 1 });
  const outbox = createOutbox({
    database: store,
    publishers: { bench: routingOnly },
    routes: [{ destination: 'bench.write.ours.{type}' }],
  });
  try {
    // The store reads max_allowed_packet on its first query: before the clock runs.
    await store.stats();
    const rates = await bestRounds(s.rounds, (v) => mariadbThroughput(env, outbox, v, s.seconds / s.rounds));
    return rows(`${MARIADB_CLIENTS} clients, MariaDB`, rates, 'reference: + plain INSERT into its own table');
  } finally {
    await outbox.close();
    await store.close();
  }
}

function sqliteThroughput(db: Database.Database, outbox: Outbox, variant: Variant, seconds: number): number {
  for (const t of ['outbox', 'ref_outbox', 'orders']) db.exec(`DELETE FROM ${t}`);
  db.pragma('wal_checkpoint(TRUNCATE)');
  const business = db.prepare('INSERT INTO orders (id, customer_id, total, details) VALUES (?, ?, ?, ?)');
  const reference = db.prepare(
    'INSERT INTO ref_outbox (key, type, destination, payload) VALUES (?, ?, ?, ?)',
  );
  const transaction = db.transaction((i: number) => {
    business.run(...businessRow(i));
    if (variant === 'ours') outbox.add(fromBetterSqlite3(db), event(i));
    else if (variant === 'reference') reference.run(...referenceRow(i));
  });
  const countFrom = performance.now() + WARMUP_MS;
  const endAt = countFrom + seconds * 1_000;
  let counted = 0;
  for (let i = 0, now = performance.now(); now < endAt; i++) {
    transaction(i);
    now = performance.now();
    if (now >= countFrom && now < endAt) counted++;
  }
  const rate = counted / seconds;
  progress(`SQLite ${LABELS[variant]}`).done(`${Math.round(rate)} tx/s`);
  return rate;
}

export async function writeSqlite(s: DbWriteSettings): Promise<ResultRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-bench-write-'));
  const remove = async () => rmSync(dir, { recursive: true, force: true });
  const unhook = onCleanup(remove);
  const path = join(dir, 'app.db');
  const store = sqliteStore({ path });
  const outbox = createOutbox({
    database: store,
    publishers: { bench: routingOnly },
    routes: [{ destination: 'bench.write.ours.{type}' }],
  });
  const db = new Database(path, { timeout: 5_000 });
  try {
    await outbox.migrate();
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(`CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, total REAL NOT NULL,
      details TEXT NOT NULL, created_at INTEGER NOT NULL DEFAULT (unixepoch()))`);
    db.exec(`CREATE TABLE ref_outbox (id INTEGER PRIMARY KEY, key TEXT NOT NULL, type TEXT NOT NULL,
      destination TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL DEFAULT (unixepoch()))`);
    const rates = await bestRounds(s.rounds, async (v) =>
      sqliteThroughput(db, outbox, v, s.seconds / s.rounds),
    );
    return rows(
      '1 writer, SQLite',
      rates,
      'reference: + plain INSERT into its own table (INTEGER PRIMARY KEY)',
    );
  } finally {
    db.close();
    await outbox.close();
    unhook();
    await remove();
  }
}

function rows(where: string, rates: Rates, referenceNote: string): ResultRow[] {
  const share = (v: Variant) => `${(rates[v] / rates.business).toFixed(2)}×`;
  const name = `write: business tx/s, ${where}`;
  return [
    {
      scenario: `${name}, business INSERT only`,
      unit: 'tx/s',
      ours: rates.business,
      reference: rates.business,
      better: 'higher',
      note: 'baseline, same for both',
    },
    {
      scenario: `${name}, + add()`,
      unit: 'tx/s',
      ours: rates.ours,
      reference: rates.reference,
      better: 'higher',
      note: `of business-only: ours ${share('ours')}, reference ${share('reference')}; ${referenceNote}`,
    },
  ];
}
