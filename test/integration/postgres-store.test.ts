/**
 * What only PostgreSQL does, against the machine's real PostgreSQL (one schema per file):
 * commit-time NOTIFY, concurrent migrations, schema checks, lease fencing, the pg executor's
 * transaction state, large single-statement batches. The shared store conformance suite runs
 * against this store too.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fence, PreparedEvent, Statement, Store } from '../../src/core/ports.js';
import { fromPg } from '../../src/executors/pg.js';
import { channelName, type PostgresStoreOptions, postgresStore } from '../../src/stores/postgres.js';
import { POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION } from '../../src/stores/postgres-migrations.js';
import { expectCode } from '../helpers/expect-code.js';
import { PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const skip = await pgSkip();
const schema = uniqueName('outbox_pg');
let pool: pg.Pool;
let tables = 0;
const opened: Store[] = [];
const ALL = Array.from({ length: 64 }, (_, i) => i);

function event(over: Partial<PreparedEvent> = {}): PreparedEvent {
  return {
    id: randomUUID(),
    key: 'order:1',
    keyHash: 123456,
    type: 'order.created',
    aggregateType: 'order',
    aggregateId: '1',
    destination: 'orders',
    payload: '{"total":  12.50, "note": "grüße"}',
    headers: '{"traceparent":"00-abc-def-01"}',
    availableAt: null,
    ...over,
  };
}

async function newStore(options: Partial<PostgresStoreOptions> = {}, migrate = true) {
  const table = `t${++tables}`;
  // NOTIFY on unless a test says otherwise: several tests here are about it.
  const store = postgresStore({ pool, schema, table, notify: true, ...options });
  opened.push(store);
  if (migrate) await store.migrate();
  return { store, table, qualified: `"${schema}"."${table}"` };
}

const run = (statement: Statement, on: pg.Pool | pg.PoolClient = pool) =>
  on.query(statement.sql, [...statement.params]);

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A raw LISTEN connection recording every payload, in delivery (= commit) order. */
async function rawListener(channel: string) {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  const payloads: string[] = [];
  client.on('notification', (m) => payloads.push(m.payload ?? ''));
  await client.query(`LISTEN "${channel}"`);
  return { payloads, end: () => client.end() };
}

/** Sends a marker on the channel and waits for it: everything committed before has arrived by then. */
async function mark(channel: string, payloads: string[], marker: string): Promise<string[]> {
  await pool.query('SELECT pg_notify($1, $2)', [channel, marker]);
  await waitFor(() => payloads.includes(marker), marker);
  return payloads.slice(0, payloads.indexOf(marker));
}

describe.skipIf(skip)('postgresStore (real PostgreSQL)', () => {
  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: PG_URL, max: 10 });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });

  afterAll(async () => {
    for (const store of opened) await store.close();
    await pool?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool?.end();
  });

  it('validates its options', async () => {
    for (const bad of ['bad-name', '1abc', 'x'.repeat(52), 'a"b', '']) {
      const error = await expectCode(() => postgresStore({ pool, table: bad }), 'INVALID_IDENTIFIER');
      expect(error.details?.option).toBe('table');
    }
    const error = await expectCode(
      () => postgresStore({ pool, schema: 'public; drop' }),
      'INVALID_IDENTIFIER',
    );
    expect(error.details?.option).toBe('schema');
    await expectCode(() => postgresStore({}), 'INVALID_CONFIG');
    await expectCode(() => postgresStore({ pool, url: PG_URL }), 'INVALID_CONFIG');
    await expectCode(() => postgresStore({ url: 'mysql://localhost/x' }), 'UNSUPPORTED_URL');
  });

  it('NOTIFY reaches listeners only when the adding transaction commits', async () => {
    const { store, table } = await newStore();
    const channel = channelName(schema, table);
    const raw = await rawListener(channel);
    let wakes = 0;
    const listening = await store.listen!(() => wakes++);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const insert = store.insert([event(), event()]);
      await fromPg(client).query(insert.sql, insert.params);
      expect(await mark(channel, raw.payloads, 'while-open')).toEqual([]);

      await client.query('COMMIT');
      await waitFor(() => raw.payloads.includes(''), 'the commit notification');
      expect(await mark(channel, raw.payloads, 'after-commit')).toEqual(['while-open', '']);
      await waitFor(() => wakes >= 3, 'store.listen wake-ups');

      await client.query('BEGIN');
      await run(store.insert([event()]), client);
      await client.query('ROLLBACK');
      expect(await mark(channel, raw.payloads, 'after-rollback')).toEqual(['while-open', '', 'after-commit']);
    } finally {
      client.release(true); // never pool a connection a failed test may have left in a transaction
      await listening.close();
      await raw.end();
    }
  });

  it('notify: false adds without notifying', async () => {
    const { table } = await newStore();
    const quiet = postgresStore({ pool, schema, table, notify: false });
    expect(quiet.capabilities.listenNotify).toBe(false);
    const statement = quiet.insert([event()]);
    expect(statement.sql).not.toMatch(/notify/i);
    const channel = channelName(schema, table);
    const raw = await rawListener(channel);
    try {
      await run(statement);
      expect(await mark(channel, raw.payloads, 'marker')).toEqual([]);
      expect((await quiet.list()).length).toBe(1);
    } finally {
      await raw.end();
    }
  });

  it('migrates once when five processes migrate at the same time', async () => {
    const table = `t${++tables}`;
    const stores = Array.from({ length: 5 }, () =>
      postgresStore({ url: PG_URL, schema, table, poolSize: 2 }),
    );
    try {
      const results = await Promise.all(stores.map((s) => s.migrate()));
      expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
      for (const r of results) expect(r.to).toBe(POSTGRES_SCHEMA_VERSION);
      const { rows } = await pool.query(
        `SELECT version, name FROM "${schema}"."${table}_migrations" ORDER BY version`,
      );
      expect(rows).toEqual(POSTGRES_MIGRATIONS.map(({ version, name }) => ({ version, name })));
      const leases = await pool.query(`SELECT count(*)::int AS n FROM "${schema}"."${table}_leases"`);
      expect(leases.rows).toEqual([{ n: 64 }]);
      const latest = POSTGRES_SCHEMA_VERSION;
      expect(await stores[0]!.migrate()).toEqual({ from: latest, to: latest, applied: [] });
      await stores[0]!.checkSchema();
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('migrate creates a missing schema', async () => {
    const other = uniqueName('outbox_pg_new');
    const store = postgresStore({ pool, schema: other });
    try {
      expect((await store.migrate()).applied).toEqual([
        '1 create outbox, leases',
        '2 partition leases, relays, parked dead letters',
        '3 claim skips the events a relay has in flight',
      ]);
      await store.checkSchema();
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS "${other}" CASCADE`);
    }
  });

  it('checkSchema names what is wrong', async () => {
    const missingSchema = postgresStore({ pool, schema: uniqueName('nowhere') });
    const outdated = await expectCode(missingSchema.checkSchema(), 'SCHEMA_OUTDATED');
    expect(outdated.message).toMatch(/run outbox migrate/);

    const { store, table } = await newStore({}, false);
    await expectCode(store.checkSchema(), 'SCHEMA_OUTDATED');
    await store.migrate();
    await store.checkSchema();

    const migrations = `"${schema}"."${table}_migrations"`;
    await pool.query(`INSERT INTO ${migrations} (version, name) VALUES (999, 'from the future')`);
    await expectCode(store.checkSchema(), 'SCHEMA_TOO_NEW');
    await expectCode(store.migrate(), 'SCHEMA_TOO_NEW');
    await pool.query(`DELETE FROM ${migrations}`);
    await expectCode(store.checkSchema(), 'SCHEMA_OUTDATED');
  });

  /** A lone relay's fence over every partition. */
  async function takeAll(store: Store, owner: string): Promise<Fence> {
    await store.heartbeat(owner, 60_000);
    return { owner, leases: await store.acquireLeases(owner, 60_000) };
  }

  it('fences settle by lease owner and epoch, per partition', async () => {
    const { store, table } = await newStore();
    const events = [event({ key: 'a' }), event({ key: 'b' }), event({ key: 'c' })];
    await run(store.insert(events));
    const [published, retried, dead] = events.map((e) => e.id) as [string, string, string];

    const a = await takeAll(store, 'relay-a');
    expect(a.leases).toHaveLength(64);
    expect(a.leases.every((l) => l.epoch === 1)).toBe(true);
    expect(await store.acquireLeases('relay-b', 60_000)).toEqual([]);
    expect((await store.claim(ALL, 10)).map((e) => e.id)).toEqual([published, retried, dead]);

    // relay-a stalls past its leases and its registration; relay-b takes over with newer epochs.
    await pool.query(`UPDATE "${schema}"."${table}_leases" SET expires_at = now() - interval '1 second'`);
    await pool.query(`UPDATE "${schema}"."${table}_relays" SET expires_at = now() - interval '1 second'`);
    const b = await takeAll(store, 'relay-b');
    expect(b.leases.every((l) => l.epoch === 2)).toBe(true);

    const history = [{ at: new Date().toISOString(), error: 'broker down', relay: 'relay-a' }];
    const settlement = {
      published: [published],
      retry: [{ id: retried, attempts: 1, error: 'broker down', history, delayMs: 60_000 }],
      dead: [{ id: dead, attempts: 5, error: 'rejected', history, delayMs: 0 }],
    };
    const fencedOut = await store.settle(settlement, a);
    expect(fencedOut.fenced).toHaveLength(64);
    const untouched = await store.list();
    expect(untouched.map((e) => [e.status, e.attempts, e.lastError])).toEqual([
      ['pending', 0, null],
      ['pending', 0, null],
      ['pending', 0, null],
    ]);
    expect((await store.heartbeat('relay-a', 60_000)).held).toEqual([]);
    expect((await store.heartbeat('relay-b', 60_000)).held).toHaveLength(64);

    expect(await store.settle(settlement, b)).toEqual({ fenced: [] });
    expect(await store.get(published)).toBeUndefined();
    const r = await store.get(retried);
    expect(r).toMatchObject({ status: 'pending', attempts: 1, lastError: 'broker down', history });
    expect(r!.availableAt.getTime()).toBeGreaterThan(Date.now() + 50_000);
    expect(await store.get(dead)).toMatchObject({ status: 'dead', attempts: 5, lastError: 'rejected' });

    // Released leases are free at once, and their former owner's heartbeat no longer renews them.
    await store.releaseLeases('relay-b', 'all');
    expect((await store.heartbeat('relay-b', 60_000)).held).toEqual([]);
    const c = await store.acquireLeases('relay-c', 60_000);
    expect(c.every((l) => l.epoch === 3)).toBe(true);
  });

  it('a settle racing a takeover waits for it and then writes nothing for that partition', async () => {
    const { store, table } = await newStore();
    const e = event();
    await run(store.insert([e]));
    const a = await takeAll(store, 'relay-a');
    const taker = await pool.connect();
    try {
      // relay-b's takeover is in flight (row updated, not yet committed) when relay-a settles.
      await taker.query('BEGIN');
      await taker.query(`UPDATE "${schema}"."${table}_leases" SET owner = 'relay-b', epoch = epoch + 1`);
      const settling = store.settle({ published: [e.id], retry: [], dead: [] }, a);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await taker.query('COMMIT');
      expect((await settling).fenced).toHaveLength(64);
      expect(await store.get(e.id)).toMatchObject({ status: 'pending' });
    } finally {
      taker.release(true);
    }
  });

  it('add() keeps per-key commit order: a second transaction on the same key waits for the first', async () => {
    const { store } = await newStore();
    const first = await pool.connect();
    const second = await pool.connect();
    try {
      await first.query('BEGIN');
      await second.query('BEGIN');
      const [a1, other] = [event({ key: 'k', keyHash: 1 }), event({ key: 'other', keyHash: 2 })];
      await run(store.insert([a1]), first);
      // Another key is never held up.
      await run(store.insert([other]), second);
      const a2 = event({ key: 'k', keyHash: 1 });
      let inserted = false;
      const waiting = run(store.insert([event({ key: 'z', keyHash: 3 }), a2]), second).then(() => {
        inserted = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(inserted).toBe(false);
      // The second transaction commits first, yet its k event must come after the first's.
      await first.query('COMMIT');
      await waiting;
      await second.query('COMMIT');
      const seqs = (await store.list()).filter((e) => e.key === 'k').map((e) => e.id);
      expect(seqs).toEqual([a1.id, a2.id]);
    } finally {
      first.release(true);
      second.release(true);
    }
  });

  it('LISTEN comes back after its connection is killed', async () => {
    const { store, table } = await newStore();
    let wakes = 0;
    const listening = await store.listen!(() => wakes++);
    try {
      const listenSql = `LISTEN "${channelName(schema, table)}"`;
      const killed = await pool.query(
        'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query = $1',
        [listenSql],
      );
      expect(killed.rows).toEqual([{ ok: true }]);
      // After reconnecting it wakes the relay once (anything may have been missed), then listens again.
      await waitFor(() => wakes >= 1, 'the catch-up wake after reconnecting');
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1', [
        listenSql,
      ]);
      expect(rows[0].n).toBe(1);
      const before = wakes;
      await run(store.insert([event()]));
      await waitFor(() => wakes > before, 'a wake after the reconnect');
    } finally {
      await listening.close();
    }
  });

  it('claims due events by key, keeping exact payload bytes', async () => {
    const { store } = await newStore();
    const later = new Date(Date.now() + 60_000);
    const events = [
      event({ key: 'a' }),
      event({ key: 'b', availableAt: later }),
      event({ key: 'a' }),
      event({ key: 'b' }),
      event({ key: 'c', aggregateType: null, aggregateId: null }),
    ];
    await run(store.insert(events));
    const lease = await takeAll(store, 'relay');
    const first = await store.claim(ALL, 10);
    // b's second event waits behind b's delayed first one; a and c flow.
    expect(first.map((e) => e.id)).toEqual([events[0]!.id, events[2]!.id, events[4]!.id]);
    expect(first[0]).toMatchObject({
      key: 'a',
      keyHash: 123456,
      payload: '{"total":  12.50, "note": "grüße"}',
      headers: { traceparent: '00-abc-def-01' },
      attempts: 0,
      history: [],
    });
    expect(first[0]!.seq).toBeTypeOf('number');
    expect(first[0]!.createdAt).toBeInstanceOf(Date);
    expect(first[2]).toMatchObject({ aggregateType: null, aggregateId: null });

    // a's first event fails: a's second now waits too.
    const failed = { id: events[0]!.id, attempts: 1, error: 'x', history: [], delayMs: 60_000 };
    await store.settle({ published: [events[4]!.id], retry: [failed], dead: [] }, lease);
    expect(await store.claim(ALL, 10)).toEqual([]);
  });

  it('keeps published events for audit when asked, and purges them', async () => {
    const { store } = await newStore({ retainPublished: true });
    const events = [event(), event({ destination: 'billing' }), event({ key: 'x' })];
    await run(store.insert(events));
    const lease = await takeAll(store, 'relay');
    await store.settle({ published: [events[0]!.id, events[1]!.id], retry: [], dead: [] }, lease);
    expect(await store.get(events[0]!.id)).toMatchObject({ status: 'published' });
    expect((await store.get(events[0]!.id))!.publishedAt).toBeInstanceOf(Date);
    const stats = await store.stats();
    expect(stats).toMatchObject({ pending: 1, published: 2, dead: 0, retrying: 0 });
    expect(stats.destinations.map((d) => d.destination)).toEqual(['billing', 'orders']);
    expect(stats.oldestPendingAgeMs).toBeGreaterThanOrEqual(0);
    expect((await store.list({ status: 'published', limit: 1 })).length).toBe(1);
    expect(await store.purge(60_000)).toBe(0);
    expect(await store.purge(0)).toBe(2);
    expect(await store.list({ status: 'published' })).toEqual([]);
  });

  it('inserts 10,000 events in one statement, in order', async () => {
    const { store, qualified } = await newStore();
    const events = Array.from({ length: 10_000 }, (_, i) =>
      event({ key: `k${i % 100}`, payload: `{"i":${i}}` }),
    );
    const statement = store.insert(events);
    expect(statement.params.length).toBe(11);
    await run(statement);
    const { rows } = await pool.query(`SELECT id FROM ${qualified} ORDER BY seq`);
    expect(rows.map((r) => r.id)).toEqual(events.map((e) => e.id));
  });

  it('get() returns undefined for an unknown or malformed id', async () => {
    const { store } = await newStore();
    expect(await store.get('not-a-uuid')).toBeUndefined();
    expect(await store.get("'; drop table x; --")).toBeUndefined();
    expect(await store.get(randomUUID())).toBeUndefined();
  });

  it('fromPg reports the transaction state and writes on the caller transaction', async () => {
    const { store } = await newStore();
    const client = await pool.connect();
    try {
      const executor = fromPg(client);
      expect(executor).toMatchObject({ dialect: 'postgres', sync: false });
      expect(executor.transactionState!()).toBe('none');
      await client.query('BEGIN');
      expect(executor.transactionState!()).toBe('active');
      await client.query('SELECT 1 / 0').catch(() => {});
      // node-postgres rejects on the ErrorResponse; the 'E' status arrives with ReadyForQuery just after.
      await waitFor(() => executor.transactionState!() === 'aborted', "the 'aborted' state");
      await client.query('ROLLBACK');
      expect(executor.transactionState!()).toBe('none');

      const rolledBack = event();
      await client.query('BEGIN');
      const insert = store.insert([rolledBack]);
      await executor.query(insert.sql, insert.params);
      await client.query('ROLLBACK');
      expect(await store.get(rolledBack.id)).toBeUndefined();

      const committed = event();
      await client.query('BEGIN');
      const again = store.insert([committed]);
      expect(await executor.query(again.sql, again.params)).toHaveLength(1);
      await client.query('COMMIT');
      expect(await store.get(committed.id)).toMatchObject({ id: committed.id, status: 'pending' });
    } finally {
      client.release(true); // never pool a connection a failed test may have left in a transaction
    }
    expect(fromPg(pool).transactionState!()).toBe('none');
  });
});
