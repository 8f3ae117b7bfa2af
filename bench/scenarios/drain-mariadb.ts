/**
 * Backlog drain on MariaDB to an in-process handler, one relay: N events pre-inserted (ours with
 * `outbox.add` in arrays of 1,000 per transaction, the reference with the equivalent multi-row
 * INSERT), then the relay is timed from start() until it has deleted the last one. Per-key order
 * of ours is checked against the table's rows in seq order, read before the drain.
 *
 * The reference is the plain MariaDB relay (no NOTIFY on MariaDB, so it polls): in one
 * transaction, `SELECT … ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED`, hand the batch to the
 * handler, `DELETE` it by id, `COMMIT`; again at once while batches come back full.
 */
import mysql from 'mysql2/promise';
import { fromMysql2 } from '../../src/executors/mysql2.js';
import { type BatchReport, createOutbox, type OutboxEvent } from '../../src/index.js';
import { mysqlStore } from '../../src/stores/mysql.js';
import type { DeliveryResult, LedgerEntry } from '../../src/testing/index.js';
import { MARIADB_OURS_TABLE, MARIADB_REFERENCE_TABLE, type MariadbEnv } from '../mariadb-env.js';
import { checkOrder, describeDelivery } from '../order.js';
import type { ResultRow } from '../report.js';
import { inProcessPublisher } from '../targets.js';
import { check, sidesInOrder, timeDrain } from '../timed-drain.js';
import { describeTiming, newTiming, timed } from '../timing.js';
import { EVENT_TYPE, type Workload, workload } from '../workload.js';
import type { DrainSettings } from './drain.js';

const CHUNK = 1_000;
/** The reference's sleep after a batch that was not full (it has no NOTIFY to wake it). */
const REFERENCE_POLL_MS = 100;

async function inChunks(
  env: MariadbEnv,
  count: number,
  write: (conn: mysql.PoolConnection, from: number, to: number) => Promise<unknown>,
): Promise<void> {
  const conn = await env.admin.getConnection();
  try {
    for (let from = 0; from < count; from += CHUNK) {
      await conn.beginTransaction();
      await write(conn, from, Math.min(count, from + CHUNK));
      await conn.commit();
    }
  } finally {
    conn.release();
  }
}

async function drainOurs(
  env: MariadbEnv,
  w: Workload,
  s: DrainSettings,
): Promise<{ ms: number; delivery: DeliveryResult }> {
  const timing = newTiming();
  const store = mysqlStore({ url: env.url });
  const received: string[] = [];
  const publisher = inProcessPublisher((messages) => {
    for (const m of messages) received.push(m.id);
  });
  const outbox = createOutbox({
    database: timed(store, { claim: timing.claim, settle: timing.settle }),
    publishers: { bench: timed(publisher, { publish: timing.publish }) },
    routes: [{ destination: 'bench.mariadb.ours.{type}' }],
  });
  try {
    await inChunks(env, s.events, (conn, from, to) => {
      const events: OutboxEvent[] = [];
      for (let i = from; i < to; i++) events.push(w.event(i));
      return outbox.add(fromMysql2(conn), events);
    });
    const [rows] = await env.admin.query(`SELECT id, \`key\` FROM ${MARIADB_OURS_TABLE} ORDER BY seq`);
    const ledger: LedgerEntry[] = (rows as { id: string; key: string }[]).map((r) => ({
      id: r.id,
      key: r.key,
      committedAt: 0,
    }));
    await env.analyze();
    const relay = outbox.relay({ batchSize: s.batchSize });
    let errors = 0;
    relay.on('error', () => errors++);
    const ms = await timeDrain('ours → in-process', s.events, {
      start: () => relay.start(),
      stop: () => relay.stop(),
      onPublished: (listener) => relay.on('batch', (r: BatchReport) => listener(r.published.length)),
    });
    check(errors === 0, `our relay on MariaDB reported ${errors} loop errors`);
    process.stderr.write(`    ours: ${describeTiming(timing)}\n`);
    return { ms, delivery: checkOrder(ledger, received) };
  } finally {
    await outbox.close();
    await store.close();
  }
}

async function drainReference(env: MariadbEnv, w: Workload, s: DrainSettings): Promise<number> {
  const t = MARIADB_REFERENCE_TABLE;
  await inChunks(env, s.events, (conn, from, to) => {
    const rows: string[][] = [];
    for (let i = from; i < to; i++) {
      const e = w.event(i);
      const key = `${e.aggregateType}:${e.aggregateId}`;
      rows.push([key, e.type, `bench.mariadb.ref.${EVENT_TYPE}`, JSON.stringify(e.payload)]);
    }
    return conn.query(`INSERT INTO ${t} (\`key\`, type, destination, payload) VALUES ?`, [rows]);
  });
  await env.analyze();
  const conn = await mysql.createConnection({ uri: env.url });
  const handler = async (_row: unknown) => {};
  let stopping = false;
  let loop: Promise<void> | undefined;
  let onBatch: (n: number) => void = () => {};
  try {
    return await timeDrain('reference → in-process', s.events, {
      start: async () => {
        loop = (async () => {
          while (!stopping) {
            await conn.beginTransaction();
            const [rows] = await conn.query(
              `SELECT id, \`key\`, type, destination, payload FROM ${t} ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`,
              [s.batchSize],
            );
            const batch = rows as { id: number }[];
            await Promise.all(batch.map(handler));
            if (batch.length > 0)
              await conn.query(`DELETE FROM ${t} WHERE id IN (?)`, [batch.map((r) => r.id)]);
            await conn.commit();
            onBatch(batch.length);
            if (batch.length < s.batchSize) await new Promise((r) => setTimeout(r, REFERENCE_POLL_MS));
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
    await conn.end();
  }
}

export async function drainMariadb(env: MariadbEnv, s: DrainSettings): Promise<ResultRow> {
  const w = workload(s.keys, s.events);
  const best = { ours: Number.POSITIVE_INFINITY, reference: Number.POSITIVE_INFINITY };
  const deliveries: DeliveryResult[] = [];
  for (const side of sidesInOrder(s.repeats)) {
    await env.reset();
    if (side === 'ours') {
      const drained = await drainOurs(env, w, s);
      process.stderr.write(`    ours: ${describeDelivery(drained.delivery)}\n`);
      deliveries.push(drained.delivery);
      best.ours = Math.min(best.ours, drained.ms);
    } else {
      best.reference = Math.min(best.reference, await drainReference(env, w, s));
    }
    const table = side === 'ours' ? MARIADB_OURS_TABLE : MARIADB_REFERENCE_TABLE;
    check((await env.count(table)) === 0, `${side}: the ${table} table is not empty after the drain`);
  }
  const rate = (ms: number) => s.events / (ms / 1_000);
  const violations = Math.max(...deliveries.map((d) => d.orderViolations));
  const lost = Math.max(...deliveries.map((d) => d.lost));
  return {
    scenario: `drain ${s.events.toLocaleString('en-US')} events (${s.keys} keys), 1 relay, MariaDB → in-process handler`,
    unit: 'events/s',
    ours: rate(best.ours),
    reference: rate(best.reference),
    better: 'higher',
    note:
      `per-key order violations: ours ${violations}${lost > 0 ? `, ${lost} lost` : ''}; ` +
      'reference: SELECT … LIMIT n FOR UPDATE SKIP LOCKED, DELETE, COMMIT in one transaction (it does not keep order across relays)',
  };
}
