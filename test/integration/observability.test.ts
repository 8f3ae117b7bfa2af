/**
 * The relay's HTTP surface against the real services: /metrics scraped during a relay run to
 * NATS JetStream and checked against what the stream holds; /healthz and /readyz through a
 * database cut (a private TCP proxy to PostgreSQL), a failing webhook receiver and a standby
 * relay; and `outbox relay --http` as a user runs it (the built CLI).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromPg } from '../../src/executors/pg.js';
import type { ReadinessReport } from '../../src/http/health.js';
import { serveRelay } from '../../src/http/relay-server.js';
import { parseListenAddress } from '../../src/http/server.js';
import { createOutbox, type Logger, silentLogger } from '../../src/index.js';
import type { LogFields } from '../../src/relay/logger.js';
import { startStreamCollector } from '../helpers/jetstream.js';
import { NATS_URL, natsSkip, PG_URL, pgSkip, uniqueName } from '../helpers/services.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const bin = new URL('../../dist/cli/main.js', import.meta.url).pathname;

async function until<T>(probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met in ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function get(
  url: string,
): Promise<{ status: number; type: string; text: string; json: ReadinessReport }> {
  const response = await fetch(url);
  const text = await response.text();
  const type = response.headers.get('content-type') ?? '';
  return {
    status: response.status,
    type,
    text,
    json: type.startsWith('application/json') ? JSON.parse(text) : undefined,
  };
}

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/**
 * Parses the Prometheus text format strictly: every sample line well formed, every sample's family
 * announced by HELP and TYPE before it.
 */
function parseMetrics(text: string) {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue;
    const typed = /^# TYPE (\S+) (counter|gauge|histogram|summary)$/.exec(line);
    if (typed) {
      types.set(typed[1]!, typed[2]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(m[1]!) && !types.has(family)) throw new Error(`sample before its TYPE: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[name!] = value!;
    const value = m[3] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  const matching = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    types,
    /** The one sample with these labels (undefined when absent). */
    value: (name: string, labels: Record<string, string> = {}) => {
      const found = matching(name, labels);
      if (found.length > 1)
        throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
      return found[0]?.value;
    },
    sum: (name: string, labels: Record<string, string> = {}) =>
      matching(name, labels).reduce((total, s) => total + s.value, 0),
    samples,
  };
}

async function scrape(base: string) {
  const response = await get(`${base}/metrics`);
  expect(response.status).toBe(200);
  expect(response.type).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseMetrics(response.text);
}

/** A logger that keeps its lines, to check what was said. */
function recordingLogger(): Logger & { lines: { level: string; msg: string; fields: LogFields }[] } {
  const lines: { level: string; msg: string; fields: LogFields }[] = [];
  const at =
    (level: string) =>
    (msg: string, fields: LogFields = {}) =>
      lines.push({ level, msg, fields });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

describe('parseListenAddress (--http)', () => {
  it('takes [host:]port, host 127.0.0.1 by default; refuses anything else as INVALID_CONFIG', () => {
    expect(parseListenAddress('9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseListenAddress(':9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseListenAddress('0.0.0.0:0')).toEqual({ host: '0.0.0.0', port: 0 });
    expect(parseListenAddress('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    expect(parseListenAddress('localhost:80')).toEqual({ host: 'localhost', port: 80 });
    for (const bad of ['', 'abc', ':', '70000', '1.2.3.4:', '::1:9464', 'host:port']) {
      expect(() => parseListenAddress(bad), bad).toThrow(/--http must be \[host:\]port/);
    }
  });
});

const pgNatsSkip = (await pgSkip()) ?? (await natsSkip());

describe.skipIf(pgNatsSkip)('/metrics during a relay run to NATS JetStream (PostgreSQL)', () => {
  const schema = uniqueName('outbox_metrics');
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: PG_URL });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  });

  it('counts what the stream received, per destination; failures and dead letters; timings; gauges', async () => {
    const collector = await startStreamCollector();
    const nc = await connect({ servers: NATS_URL });
    const jsm = await jetstreamManager(nc);
    const streamState = async () =>
      (await jsm.streams.info(collector.stream, { subjects_filter: '>' })).state as {
        messages: number;
        subjects?: Record<string, number>;
      };
    // No stream captures this prefix: every publish to it fails (retryable), then dead-letters.
    const lost = uniqueName('nostream').toLowerCase();
    const outbox = createOutbox({
      database: { url: PG_URL, schema },
      routes: [
        { type: 'lost', destination: `${lost}.{type}`, publisher: 'bus' },
        { destination: `${collector.prefix}.{type}`, publisher: 'bus' },
      ],
      publishers: { bus: NATS_URL },
    });
    await outbox.migrate();
    const relay = outbox.relay({
      logger: silentLogger,
      pollIntervalMs: 20,
      maxAttempts: 3,
      backoff: { baseMs: 20, capMs: 100 },
    });
    const server = await serveRelay(relay, { port: 0, statsIntervalMs: 50, logger: silentLogger });
    const client = await pool.connect();
    try {
      await relay.start();
      const rounds = 10;
      const perRound = 40;
      const lastPublished: number[] = [];
      for (let round = 0; round < rounds; round++) {
        await client.query('BEGIN');
        await outbox.add(
          fromPg(client),
          Array.from({ length: perRound }, (_, i) => ({
            type: i % 2 === 0 ? 'a' : 'b',
            key: `k${i % 20}`,
            payload: { round, i },
          })),
        );
        if (round === 3) await outbox.add(fromPg(client), { type: 'lost', key: 'poison', payload: {} });
        await client.query('COMMIT');
        // Scraped while the relay publishes: an ack is counted after the stream stored the
        // message, so the counter can never be ahead of the stream.
        const during = await scrape(server.url);
        const published = during.sum('outbox_events_published_total');
        expect(published).toBeLessThanOrEqual((await streamState()).messages);
        expect(published).toBeGreaterThanOrEqual(lastPublished.at(-1) ?? 0);
        lastPublished.push(published);
        await new Promise((r) => setTimeout(r, 30));
      }
      const total = rounds * perRound;
      await collector.waitForDistinct(total, 30_000);
      const done = await until(
        () => scrape(server.url),
        (m) =>
          m.value('outbox_events_dead_lettered_total', { destination: `${lost}.lost` }) === 1 &&
          m.value('outbox_pending_events') === 0 &&
          m.sum('outbox_events_published_total') === total,
        30_000,
      );
      const state = await streamState();
      expect(state.messages).toBe(total); // one relay, no crash: no duplicate reached the stream
      for (const type of ['a', 'b']) {
        const destination = `${collector.prefix}.${type}`;
        expect(done.value('outbox_events_published_total', { destination })).toBe(
          state.subjects?.[destination],
        );
        expect(done.value('outbox_events_failed_total', { destination })).toBe(0); // seen: all three at 0
      }
      expect(state.subjects?.[`${collector.prefix}.a`]).toBe(total / 2);
      // Three attempts, all failed and recorded; the third one dead-lettered the event.
      expect(done.value('outbox_events_failed_total', { destination: `${lost}.lost` })).toBe(3);
      expect(done.value('outbox_events_published_total', { destination: `${lost}.lost` })).toBe(0);
      expect(done.value('outbox_dead_letters')).toBe(1);
      expect(done.value('outbox_retrying_events')).toBe(0);
      expect(done.value('outbox_oldest_pending_age_seconds')).toBe(0);

      const bus = { publisher: 'bus' };
      expect(done.value('outbox_publish_duration_seconds_count', bus)).toBe(total + 3);
      expect(done.value('outbox_publish_duration_seconds_bucket', { ...bus, le: '+Inf' })).toBe(total + 3);
      expect(done.value('outbox_publish_lag_seconds_count', bus)).toBe(total);
      // Buckets are cumulative and end at the count.
      const lagBuckets = done.samples.filter((s) => s.name === 'outbox_publish_lag_seconds_bucket');
      expect(lagBuckets.map((s) => s.value)).toEqual(
        [...lagBuckets.map((s) => s.value)].sort((x, y) => x - y),
      );
      expect(done.value('outbox_publish_lag_seconds_sum', bus)).toBeGreaterThan(0);
      expect(done.value('outbox_claim_duration_seconds_count')).toBeGreaterThanOrEqual(rounds);
      expect(done.value('outbox_settle_duration_seconds_count')).toBeGreaterThan(0);
      expect(done.value('outbox_leases_owned')).toBe(64);
      expect(done.value('outbox_relay_errors_total')).toBe(0);
      expect(done.value('outbox_event_loop_delay_seconds', { quantile: '0.99' })).toBeGreaterThanOrEqual(0);
      expect(done.value('outbox_event_loop_delay_seconds_count')).toBeGreaterThan(0);
      expect(Object.fromEntries(done.types)).toMatchObject({
        outbox_events_published_total: 'counter',
        outbox_publish_duration_seconds: 'histogram',
        outbox_pending_events: 'gauge',
        outbox_event_loop_delay_seconds: 'summary',
      });
    } finally {
      client.release();
      await outbox.close();
      await server.close();
      await nc.close();
      await collector.close();
    }
  });
});

describe.skipIf(pgNatsSkip)('/healthz and /readyz (PostgreSQL through a TCP proxy, NATS)', () => {
  const schema = uniqueName('outbox_ready');
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: PG_URL });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  });

  it('ready when running with the database reachable (active or standby); 503 with the reason when cut', async () => {
    const proxy = await TcpProxy.start(PG_URL, 5432);
    const outbox = createOutbox({
      database: { url: proxy.url(PG_URL), schema },
      publishers: { bus: NATS_URL },
    });
    // One partition: the second relay can only stand by.
    await outbox.migrate({ partitions: 1 });
    const direct = createOutbox({ database: { url: PG_URL, schema }, publishers: { bus: NATS_URL } });
    const relay = outbox.relay({ logger: silentLogger, pollIntervalMs: 50 });
    const standby = direct.relay({ logger: silentLogger, pollIntervalMs: 50 });
    const server = await serveRelay(relay, { port: 0, logger: silentLogger });
    const standbyServer = await serveRelay(standby, { port: 0, logger: silentLogger });
    const readyz = () => get(`${server.url}/readyz`);
    try {
      const before = await readyz();
      expect(before.status).toBe(503);
      expect(before.json).toMatchObject({ ready: false, reason: 'relay not running' });
      expect((await get(`${server.url}/healthz`)).json).toEqual({ status: 'ok' });

      await relay.start();
      const ready = await until(readyz, (r) => r.status === 200 && r.json.relay.partitions === 1, 15_000);
      expect(ready.json).toMatchObject({
        ready: true,
        relay: { running: true, role: 'active', partitions: 1 },
        database: { ok: true },
      });
      expect(ready.json.reason).toBeUndefined();
      await standby.start();
      const standing = await until(
        () => get(`${standbyServer.url}/readyz`),
        (r) => r.status === 200,
        15_000,
      );
      expect(standing.json.relay).toMatchObject({ role: 'standby', partitions: 0 });

      await proxy.refuse();
      const cut = await until(readyz, (r) => r.status === 503, 15_000);
      expect(cut.json.ready).toBe(false);
      expect(cut.json.reason).toMatch(/^database unreachable: /);
      expect(cut.json.database.ok).toBe(false);
      expect((await get(`${server.url}/healthz`)).status).toBe(200); // alive all the same

      await proxy.accept();
      const back = await until(readyz, (r) => r.status === 200, 30_000);
      expect(back.json.database.ok).toBe(true);

      expect((await fetch(`${server.url}/readyz`, { method: 'POST' })).status).toBe(405);
      expect((await get(`${server.url}/nothing-here`)).status).toBe(404);
      await relay.stop();
      expect((await readyz()).json).toMatchObject({ ready: false, reason: 'relay not running' });
    } finally {
      await outbox.close();
      await direct.close();
      await server.close();
      await standbyServer.close();
      await proxy.close();
    }
  });
});

describe('/readyz and a webhook receiver that fails (SQLite)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-ready-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a publisher whose every publish fails for brokerFailingMs is unreachable, and logged; a 4xx is not', async () => {
    let status = 204;
    const receiver: Server = createServer((req, res) => {
      req.resume();
      res.writeHead(req.url === '/refused' ? 400 : status).end();
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const port = (receiver.address() as AddressInfo).port;
    const file = join(dir, 'hooks.db');
    const outbox = createOutbox({
      database: `sqlite:${file}`,
      routes: [{ destination: '{type}' }],
      publishers: { hooks: `http://127.0.0.1:${port}/{destination}` },
    });
    await outbox.migrate();
    const db = new Database(file);
    const add = (type: string) =>
      db.transaction(() => outbox.add(fromBetterSqlite3(db), { type, key: type }))();
    const log = recordingLogger();
    const relay = outbox.relay({
      logger: silentLogger,
      pollIntervalMs: 20,
      backoff: { baseMs: 50, capMs: 100 },
    });
    const server = await serveRelay(relay, { port: 0, brokerFailingMs: 300, logger: log });
    const readyz = () => get(`${server.url}/readyz`);
    try {
      await relay.start();
      add('refused'); // dead-lettered at once: the receiver did answer
      add('ok');
      await until(
        () => scrape(server.url),
        (m) => m.sum('outbox_events_published_total') === 1,
        15_000,
      );
      expect((await readyz()).json).toMatchObject({ ready: true, brokers: { hooks: { ok: true } } });

      status = 503;
      add('down');
      const down = await until(readyz, (r) => r.status === 503, 15_000);
      expect(down.json.reason).toMatch(/^publisher "hooks" unreachable for \d+ ms: .*503/);
      expect(down.json.brokers.hooks).toMatchObject({ ok: false });
      expect(log.lines).toContainEqual(
        expect.objectContaining({ level: 'warn', msg: 'publisher unreachable: every publish has failed' }),
      );

      status = 204;
      await until(readyz, (r) => r.status === 200, 15_000);
      expect(log.lines.map((l) => l.msg)).toContain('publisher reachable again');
      const metrics = await scrape(server.url);
      expect(metrics.value('outbox_events_dead_lettered_total', { destination: 'refused' })).toBe(1);
      expect(metrics.value('outbox_events_published_total', { destination: 'down' })).toBe(1);
      expect(metrics.value('outbox_events_failed_total', { destination: 'down' })).toBeGreaterThanOrEqual(1);
    } finally {
      await outbox.close();
      await server.close();
      db.close();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});

describe.skipIf(pgNatsSkip)('outbox relay --http (the built CLI, PostgreSQL and NATS)', () => {
  const schema = uniqueName('outbox_cli_http');
  const dir = mkdtempSync(join(tmpdir(), 'outbox-cli-http-'));
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: PG_URL });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves /metrics, /healthz and /readyz while relaying; JSON log lines, never a payload; exits 0', async () => {
    const collector = await startStreamCollector();
    const config = join(dir, 'outbox.config.json');
    writeFileSync(config, JSON.stringify({ database: { url: PG_URL, schema } }));
    const app = createOutbox({
      database: { url: PG_URL, schema },
      routes: [{ destination: `${collector.prefix}.{type}` }],
    });
    await app.migrate();
    const secret = `payload-marker-${uniqueName('x')}`;
    const client = await pool.connect();
    let child: ChildProcess | undefined;
    try {
      child = spawn(
        process.execPath,
        [bin, 'relay', '--config', config, '--http', '127.0.0.1:0', '--log-level', 'info'],
        {
          cwd: dir,
          // The flag beats its environment twin.
          env: { ...process.env, OUTBOX_BROKER_URL: NATS_URL, OUTBOX_LOG_LEVEL: 'error' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let logs = '';
      child.stderr!.on('data', (d: Buffer) => {
        logs += d.toString();
      });
      const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
      const base = await until(
        async () => /"msg":"http listening".*?"url":"([^"]+)"/.exec(logs)?.[1],
        (url) => url !== undefined,
        20_000,
      );
      expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await get(`${base}/healthz`)).json).toEqual({ status: 'ok' });
      await until(
        () => get(`${base}/readyz`),
        (r) => r.status === 200,
        20_000,
      );

      await client.query('BEGIN');
      await app.add(
        fromPg(client),
        Array.from({ length: 30 }, (_, i) => ({ type: 'ping', key: `k${i % 3}`, payload: { secret, i } })),
      );
      await client.query('COMMIT');
      await collector.waitForDistinct(30, 30_000);
      const metrics = await until(
        () => scrape(base!),
        (m) => m.value('outbox_events_published_total', { destination: `${collector.prefix}.ping` }) === 30,
        20_000,
      );
      expect(metrics.value('outbox_leases_owned')).toBe(64);
      expect(metrics.value('outbox_publish_lag_seconds_count', { publisher: 'default' })).toBe(30);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const lines = logs
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line));
      for (const line of lines) expect(Object.keys(line).slice(0, 3)).toEqual(['time', 'level', 'msg']);
      expect(lines.map((l) => l.msg)).toEqual(
        expect.arrayContaining([
          'relay starting',
          'http listening',
          'leases acquired',
          'relay stopping',
          'relay stopped',
        ]),
      );
      expect(lines.find((l) => l.msg === 'relay stopped')).toMatchObject({ published: 30 });
      expect(logs).not.toContain(secret);
    } finally {
      child?.kill('SIGKILL');
      client.release();
      await app.close();
      await collector.close();
    }
  });

  it('a malformed --http address is a configuration error (exit 2)', async () => {
    const result = await promisify(execFile)(
      process.execPath,
      [
        bin,
        'relay',
        '--db',
        `sqlite:${join(dir, 'x.db')}`,
        '--broker',
        NATS_URL,
        '--http',
        'localhost:99999',
      ],
      { cwd: dir },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/INVALID_CONFIG: --http must be \[host:\]port/);
  });
});
