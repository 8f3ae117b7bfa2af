/**
 * Backlog drain on SQLite (the embedded default) to an in-process handler, in a scratch file
 * removed afterwards. The reference here is the simplest SQLite relay (no SKIP LOCKED, no
 * NOTIFY on SQLite): SELECT a batch in id order, handle it concurrently, DELETE it by id.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { type BatchReport, createOutbox, type OutboxEvent } from '../../src/index.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { onCleanup } from '../env.js';
import type { ResultRow } from '../report.js';
import { inProcessPublisher } from '../targets.js';
import { sidesInOrder, timeDrain } from '../timed-drain.js';
import { describeTiming, newTiming, timed } from '../timing.js';
import { EVENT_TYPE, type Workload, workload } from '../workload.js';
import type { DrainSettings } from './drain.js';

const CHUNK = 1_000;

function openDb(path: string): Database.Database {
  const db = new Database(path, { timeout: 5_000 });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  return db;
}

async function drainOurs(path: string, w: Workload, s: DrainSettings): Promise<number> {
  const timing = newTiming();
  const store = sqliteStore({ path });
  const outbox = createOutbox({
    database: timed(store, { claim: timing.claim, settle: timing.settle }),
    publishers: { bench: timed(inProcessPublisher(), { publish: timing.publish }) },
    routes: [{ destination: 'bench.sqlite.ours.{type}' }],
  });
  await outbox.migrate();
  const db = openDb(path);
  try {
    for (let from = 0; from < s.events; from += CHUNK) {
      const events: OutboxEvent[] = [];
      for (let i = from; i < Math.min(s.events, from + CHUNK); i++) events.push(w.event(i));
      db.transaction(() => outbox.add(fromBetterSqlite3(db), events))();
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.exec('ANALYZE');
    const relay = outbox.relay({ batchSize: s.batchSize });
    relay.on('error', () => {});
    const ms = await timeDrain('ours → in-process', s.events, {
      start: () => relay.start(),
      stop: () => relay.stop(),
      onPublished: (listener) => relay.on('batch', (r: BatchReport) => listener(r.published.length)),
    });
    const left = db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number };
    if (left.n !== 0) throw new Error(`ours on SQLite left ${left.n} events`);
    process.stderr.write(`    ours: ${describeTiming(timing)}\n`);
    return ms;
  } finally {
    db.close();
    await outbox.close();
    await store.close();
  }
}

async function drainReference(path: string, w: Workload, s: DrainSettings): Promise<number> {
  const db = openDb(path);
  try {
    db.exec(`CREATE TABLE ref_outbox (id INTEGER PRIMARY KEY, key TEXT NOT NULL, type TEXT NOT NULL,
      destination TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL)`);
    const insert = db.prepare(
      'INSERT INTO ref_outbox (key, type, destination, payload, created_at) VALUES (?, ?, ?, ?, ?)',
    );
    for (let from = 0; from < s.events; from += CHUNK) {
      db.transaction(() => {
        for (let i = from; i < Math.min(s.events, from + CHUNK); i++) {
          const e = w.event(i);
          const key = `${e.aggregateType}:${e.aggregateId}`;
          insert.run(key, e.type, `bench.sqlite.ref.${EVENT_TYPE}`, JSON.stringify(e.payload), Date.now());
        }
      })();
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
    const claim = db.prepare(
      'SELECT id, key, type, destination, payload FROM ref_outbox ORDER BY id LIMIT ?',
    );
    const remove = db.prepare('DELETE FROM ref_outbox WHERE id IN (SELECT value FROM json_each(?))');
    const handler = async (_row: unknown) => {};
    let stopping = false;
    let loop: Promise<void> | undefined;
    let onBatch: (n: number) => void = () => {};
    return await timeDrain('reference → in-process', s.events, {
      start: async () => {
        loop = (async () => {
          while (!stopping) {
            const rows = claim.all(s.batchSize) as { id: number }[];
            await Promise.all(rows.map(handler));
            remove.run(JSON.stringify(rows.map((r) => r.id)));
            onBatch(rows.length);
            if (rows.length < s.batchSize) await new Promise((r) => setTimeout(r, 250));
          }
        })();
      },
      stop: async () => {
        stopping = true;
        await loop;
      },
      onPublished: (listener) => {
        onBatch = listener;
      },
    });
  } finally {
    db.close();
  }
}

export async function drainSqlite(s: DrainSettings): Promise<ResultRow> {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-bench-'));
  const remove = async () => rmSync(dir, { recursive: true, force: true });
  const unhook = onCleanup(remove);
  try {
    const w = workload(s.keys, s.events);
    const best = { ours: Number.POSITIVE_INFINITY, reference: Number.POSITIVE_INFINITY };
    for (const [i, side] of sidesInOrder(s.repeats).entries()) {
      const path = join(dir, `${side}-${i}.db`);
      const ms = side === 'ours' ? await drainOurs(path, w, s) : await drainReference(path, w, s);
      best[side] = Math.min(best[side], ms);
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
    }
    const { ours, reference } = best;
    const rate = (ms: number) => s.events / (ms / 1_000);
    return {
      scenario: `drain ${s.events.toLocaleString('en-US')} events (${s.keys} keys), SQLite → in-process handler`,
      unit: 'events/s',
      ours: rate(ours),
      reference: rate(reference),
      better: 'higher',
      note: 'reference: plain SELECT … LIMIT n, DELETE (SQLite has no SKIP LOCKED)',
    };
  } finally {
    unhook();
    await remove();
  }
}
