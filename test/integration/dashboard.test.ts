/**
 * The web dashboard as an operator uses it: `outbox dashboard` (the built bin, in a child
 * process) over real SQLite and PostgreSQL, the page in real headless Chromium, and a retry from
 * the page re-published by a relay to real NATS JetStream, where a real consumer reads it back.
 * Screenshots land in .tmp/dashboard-*.png.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import Database from 'better-sqlite3';
import pg from 'pg';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseConfig } from '../../src/core/config.js';
import { dashboardHandler } from '../../src/dashboard/handler.js';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, type Outbox, type OutboxEvent, silentLogger } from '../../src/index.js';
import type { Relay } from '../../src/relay/relay.js';
import { memoryPublisher } from '../../src/testing/index.js';
import { NATS_URL, natsSkip, PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const bin = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const shots = new URL('../../.tmp/', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'outbox-dashboard-'));
const SECRET = 'card-4111-1111-1111-1111'; // in every payload: must never reach the page
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const CHROMIUM = process.env.OUTBOX_TEST_CHROMIUM ?? '/usr/bin/chromium';

/** Why headless Chromium cannot run here, or undefined (under CI=true it must run). */
async function chromiumSkip(): Promise<string | undefined> {
  try {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    await browser.close();
    return undefined;
  } catch (error) {
    const reason = `headless Chromium cannot start (${CHROMIUM}): ${(error as Error).message.split('\n')[0]}`;
    if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: it must run)`);
    console.warn(`SKIPPED: ${reason}`);
    return reason;
  }
}

const browserSkip = await chromiumSkip();

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `outbox dashboard …` in a child process, once it printed where it listens and in which mode. */
async function startCli(args: string[], env: Record<string, string> = {}) {
  const child: ChildProcess = spawn(process.execPath, [bin, 'dashboard', '--port', '0', ...args], {
    cwd: dir,
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OUTBOX_DASHBOARD_'))),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL printed in 30 s: ${stdout} ${stderr}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const match = /^(http:\/\/\S+)$/m.exec(stdout);
      if (match && /^(read-only|actions allowed)/m.test(stdout)) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`dashboard exited ${code}: ${stderr}`)));
  });
  return {
    url,
    base: url.replace(/#.*$/, ''),
    output: () => stdout,
    async stop(): Promise<number | null> {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** GET with a Host header of our choosing (fetch does not let one be set): a DNS-rebound name. */
function statusWithHost(url: string, host: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    request(url, { headers: { Host: host } }, (res) => {
      res.resume();
      resolve(res.statusCode);
    })
      .once('error', reject)
      .end();
  });
}

/** Runs a CLI command to its end. */
async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, stderr };
}

/** A JetStream stream over `<prefix>.>`, created when the operator "fixes" it, and what it received. */
async function startStream(prefix: string) {
  const nc = await connect({ servers: NATS_URL });
  const jsm = await jetstreamManager(nc);
  const name = prefix.toUpperCase();
  await jsm.streams.add({ name, subjects: [`${prefix}.>`] });
  const messages = await (await jetstream(nc).consumers.get(name)).consume();
  const received: { id: string; subject: string; payload: string }[] = [];
  const done = (async () => {
    for await (const m of messages) {
      received.push({ id: m.headers?.get('Nats-Msg-Id') ?? '', subject: m.subject, payload: m.string() });
    }
  })();
  return {
    received,
    async close() {
      messages.stop();
      await done.catch(() => undefined);
      await jsm.streams.delete(name).catch(() => undefined);
      await nc.drain();
    },
  };
}

interface Counts {
  pending: number;
  retrying: number;
  dead: number;
}

/** One database under test: how to add events on a real transaction and count rows by plain SQL. */
interface Target {
  readonly database: DatabaseConfig;
  /** `--db …` or `--config …` for the CLI. */
  readonly cliArgs: string[];
  add(app: Outbox, events: OutboxEvent[]): Promise<void>;
  /** Per destination, counted by SQL of our own, not by the store under test. */
  counts(): Promise<Map<string, Counts>>;
  close(): Promise<void>;
}

async function sqliteTarget(): Promise<Target> {
  const file = join(dir, `${uniqueName('dash')}.db`);
  const db = new Database(file);
  return {
    database: { url: `sqlite:${file}` },
    cliArgs: ['--db', `sqlite:${file}`],
    async add(app, events) {
      db.transaction(() => app.add(fromBetterSqlite3(db), events))();
    },
    async counts() {
      const rows = db
        .prepare(
          `SELECT destination, sum(status = 'pending') AS pending,
             sum(status = 'pending' AND attempts > 0) AS retrying, sum(status = 'dead') AS dead
           FROM outbox GROUP BY destination`,
        )
        .all() as ({ destination: string } & Counts)[];
      return new Map(rows.map((r) => [r.destination, r]));
    },
    async close() {
      db.close();
    },
  };
}

async function postgresTarget(): Promise<Target> {
  const schema = uniqueName('outbox_dash');
  const pool = new pg.Pool({ connectionString: PG_URL });
  await pool.query(`CREATE SCHEMA "${schema}"`);
  const config = join(dir, `${schema}.json`);
  writeFileSync(config, JSON.stringify({ database: { url: PG_URL, schema } }));
  return {
    database: { url: PG_URL, schema },
    cliArgs: ['--config', config],
    async add(app, events) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await app.add(fromPg(client), events);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    },
    async counts() {
      const { rows } = await pool.query(
        `SELECT destination, count(*) FILTER (WHERE status = 'pending')::int AS pending,
           count(*) FILTER (WHERE status = 'pending' AND attempts > 0)::int AS retrying,
           count(*) FILTER (WHERE status = 'dead')::int AS dead
         FROM "${schema}".outbox GROUP BY destination`,
      );
      return new Map(rows.map((r: { destination: string } & Counts) => [r.destination, r]));
    },
    async close() {
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    },
  };
}

const number = (shown: string | null) => Number((shown ?? '').replace(/,/g, ''));
/** The page updates itself every few seconds: assertions on it wait, generously. */
const poll = <T>(read: () => Promise<T>, timeout = 20_000) => expect.poll(read, { timeout, interval: 100 });
const text = (locator: Locator) => () => locator.textContent().then((t) => t ?? '');

async function pageCounts(page: Page): Promise<{ totals: Counts; destinations: Map<string, Counts> }> {
  const destinations = new Map<string, Counts>();
  for (const row of await page.locator('#destinations tr[data-destination]').all()) {
    const cell = async (field: string) => number(await row.locator(`td[data-field=${field}]`).textContent());
    destinations.set((await row.getAttribute('data-destination'))!, {
      pending: await cell('pending'),
      retrying: await cell('retrying'),
      dead: await cell('dead'),
    });
  }
  return {
    totals: {
      pending: number(await page.locator('#total-pending').textContent()),
      retrying: number(await page.locator('#total-retrying').textContent()),
      dead: number(await page.locator('#total-dead').textContent()),
    },
    destinations,
  };
}

function totalsOf(counts: Map<string, Counts>): Counts {
  const sum = (k: keyof Counts) => [...counts.values()].reduce((n, c) => n + Number(c[k]), 0);
  return { pending: sum('pending'), retrying: sum('retrying'), dead: sum('dead') };
}

const skip = browserSkip ?? (await pgSkip()) ?? (await natsSkip());

describe.skipIf(skip).each([
  ['SQLite', sqliteTarget],
  ['PostgreSQL', postgresTarget],
] as const)('dashboard on %s, in headless Chromium, retrying to NATS JetStream', (label, makeTarget) => {
  const tag = label.toLowerCase();
  const prefix = uniqueName('dash').toLowerCase();
  let target: Target;
  let app: Outbox;
  let browser: Browser;
  let dead: string[] = [];

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    target = await makeTarget();
    app = createOutbox({
      database: target.database,
      publishers: { nats: NATS_URL },
      routes: [{ destination: `${prefix}.{aggregateType}.{type}` }],
      relay: { logger: silentLogger, pollIntervalMs: 50 },
    });
    await app.migrate();
    const event = (type: string, i: number): OutboxEvent => ({
      type,
      aggregateType: type.split('.')[0]!,
      aggregateId: String(i),
      payload: { i, card: SECRET },
      headers: { 'x-tenant': 'acme' },
    });
    // No stream captures the subjects yet: every publish fails, so these become dead letters.
    await target.add(
      app,
      [1, 2, 3].map((i) => event('payment.captured', i)),
    );
    expect(await app.relay({ maxAttempts: 1 }).drain()).toMatchObject({ dead: 3 });
    // One failure, then an hour's backoff: retrying.
    await target.add(app, [event('refund.issued', 1)]);
    await app.relay({ maxAttempts: 5, backoff: { baseMs: 3_600_000, capMs: 3_600_000 } }).drain();
    await target.add(app, [
      ...[1, 2, 3, 4, 5].map((i) => event('order.created', i)),
      ...[1, 2].map((i) => event('invoice.sent', i)),
    ]);
    dead = (await app.store.list({ status: 'dead' })).map((e) => e.id);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await target?.close();
  });

  it('read-only: the page shows what the database holds, offers no actions, and the API refuses POSTs', async () => {
    const cli = await startCli(target.cliArgs);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    try {
      expect(cli.output()).toMatch(/read-only/);
      await page.goto(cli.url);
      await page.waitForSelector('body[data-loaded=true]', { timeout: 30_000 });
      const expected = await target.counts();
      const shown = await pageCounts(page);
      expect(shown.totals).toEqual(totalsOf(expected));
      expect(shown.totals).toEqual({ pending: 8, retrying: 1, dead: 3 });
      expect(shown.destinations).toEqual(
        new Map(
          [...expected].map(([d, c]) => [
            d,
            { pending: Number(c.pending), retrying: Number(c.retrying), dead: Number(c.dead) },
          ]),
        ),
      );
      // Lag: the undelivered order.created events have waited; the retrying refund is not due.
      await poll(
        text(
          page.locator(
            `#destinations tr[data-destination="${prefix}.order.order.created"] td[data-field=lag]`,
          ),
        ),
      ).toMatch(/^\d+(\.\d)?(ms|s|m)$/);
      await poll(text(page.locator('#total-lag'))).not.toBe('–');
      await poll(text(page.locator('#mode'))).toBe('read-only');
      // Dead letters: errors and history, never the payload.
      await poll(() => page.locator('#dead tbody tr[data-id]').count()).toBe(3);
      for (const id of dead) await page.locator(`#dead tr[data-id="${id}"]`).waitFor({ state: 'visible' });
      await poll(text(page.locator('#dead tbody').first())).toContain('no JetStream stream captures subject');
      await page.locator('#dead tbody details').first().locator('summary').click();
      await poll(text(page.locator('#dead ol.history li').first())).toContain('no JetStream stream captures');
      expect(await page.content()).not.toContain(SECRET);
      await poll(() => page.locator('#dead button[data-action]').count()).toBe(0);
      await page.locator('#bulk').waitFor({ state: 'hidden' });
      // Nobody holds a partition: no relay is running.
      await poll(text(page.locator('#leases-summary'))).toContain('no relay is running');
      await page.locator('#chart-backlog path.line').first().waitFor({ state: 'attached', timeout: 20_000 });
      await page.screenshot({ path: join(shots, `dashboard-${tag}-read-only.png`), fullPage: true });
      expect(problems).toEqual([]); // no script error, no failed request
      await page.setViewportSize({ width: 420, height: 900 });
      await page.screenshot({ path: join(shots, `dashboard-${tag}-narrow.png`), fullPage: true });

      const api = (await fetch(`${cli.base}api/dead`).then((r) => r.json())) as { items: object[] };
      expect(JSON.stringify(api)).not.toContain(SECRET);
      expect(api.items[0]).not.toHaveProperty('payload');
      expect(api.items[0]).toMatchObject({ headerNames: ['x-tenant'], attempts: 1 });
      // Filters: exact values go to the database, globs are matched by the dashboard.
      const filtered = async (query: string) =>
        ((await fetch(`${cli.base}api/dead?${query}`).then((r) => r.json())) as { items: unknown[] }).items
          .length;
      expect(await filtered('type=payment.captured')).toBe(3);
      expect(await filtered(`destination=${prefix}.order.order.created`)).toBe(0);
      expect(await filtered('type=pay*&limit=2')).toBe(2);
      expect(await filtered('destination=*.refund.*')).toBe(0);
      await page.locator('#filter-type').fill('payment.*');
      await page.locator('#filter-apply').click();
      await poll(text(page.locator('#dead-summary'))).toMatch(/^3 shown of 3 dead letters \(filtered\)/);
      await page.locator('#filter-type').fill('refund.*');
      await page.locator('#filter-type').press('Enter');
      await poll(() => page.locator('#dead tbody tr[data-id]').count()).toBe(0);
      await poll(text(page.locator('#dead-summary'))).toMatch(/^0 shown of 3 dead letters/);
      const post = await fetch(`${cli.base}api/dead/retry`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer anything-at-all-here' },
        body: JSON.stringify({ ids: dead }),
      });
      expect(post.status).toBe(403);
      // The same refusal from inside the page.
      const fromPage = await page.evaluate(async (ids) => {
        const r = await fetch('api/dead/discard', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ ids }),
        });
        return r.status;
      }, dead);
      expect(fromPage).toBe(403);
      expect((await target.counts()).get(`${prefix}.payment.payment.captured`)?.dead).toEqual(3);
    } finally {
      await page.close();
      expect(await cli.stop()).toBe(0);
    }
  });

  it('with --allow-actions: a retry from the page is re-published to JetStream with the same id; discard deletes; a bad token is refused', async () => {
    const cli = await startCli([...target.cliArgs, '--allow-actions']);
    const stream = await startStream(prefix);
    const relay = app.relay({ maxAttempts: 1 });
    await relay.start();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    try {
      const token = /#token=([\w-]+)$/.exec(cli.url)?.[1];
      expect(token?.length).toBeGreaterThanOrEqual(32);
      const action = (headers: Record<string, string>) =>
        fetch(`${cli.base}api/dead/retry`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', ...headers },
          body: JSON.stringify({ ids: [dead[0]] }),
        });
      expect((await action({})).status).toBe(401);
      expect((await action({ Authorization: 'Bearer not-the-token-at-all' })).status).toBe(401);
      expect((await action({ Authorization: `Bearer ${token}x` })).status).toBe(401);
      expect((await action({ Authorization: `Bearer ${token}`, Origin: 'http://evil.example' })).status).toBe(
        403,
      );
      expect(
        (await action({ Authorization: `Bearer ${token}`, 'Sec-Fetch-Site': 'cross-site' })).status,
      ).toBe(403);
      expect(await statusWithHost(`${cli.base}api/summary`, 'evil.example:80')).toBe(403);
      expect(await statusWithHost(`${cli.base}api/summary`, 'localhost')).toBe(200);
      expect((await app.store.get(dead[0]!))?.status).toBe('dead');

      // A page opened with a wrong token: the retry is refused and nothing changes.
      const wrong = await browser.newPage();
      await wrong.goto(`${cli.base}#token=wrong-token-wrong-token`);
      await wrong.waitForSelector('body[data-loaded=true]');
      await wrong.locator(`#dead tr[data-id="${dead[0]}"] button[data-action=retry]`).click();
      await wrong.locator('#confirm-ok').click();
      await poll(text(wrong.locator('#toast'))).toContain('token was refused');
      await wrong.close();
      expect((await app.store.get(dead[0]!))?.status).toBe('dead');

      await page.goto(cli.url);
      await page.waitForSelector('body[data-loaded=true]');
      expect(page.url()).not.toContain('token'); // taken out of the address bar
      await poll(text(page.locator('#mode'))).toBe('actions allowed');
      // The relay is live and holds every partition.
      const partitions = (await app.store.leases()).length;
      await poll(text(page.locator('#leases-summary')), 30_000).toContain(
        `${partitions} held by 1 live relay`,
      );
      // The pending events flow now that the stream exists.
      await poll(async () => stream.received.length, 30_000).toBeGreaterThanOrEqual(7);

      // Cancel leaves the dead letter alone.
      await page.locator(`#dead tr[data-id="${dead[2]}"] button[data-action=retry]`).click();
      await page.locator('#confirm').waitFor({ state: 'visible' });
      await page.locator('#confirm-cancel').click();
      await page.locator('#confirm').waitFor({ state: 'hidden' });

      // Retry: confirm in the dialog, and the relay publishes the very same event id.
      await page.locator(`#dead tr[data-id="${dead[0]}"] button[data-action=retry]`).click();
      await page.locator('#confirm').waitFor({ state: 'visible' });
      await poll(text(page.locator('#confirm-title'))).toBe('Retry 1 dead letter?');
      await poll(text(page.locator('#confirm-ids'))).toContain(dead[0]!);
      await page.screenshot({ path: join(shots, `dashboard-${tag}-confirm.png`) });
      await page.locator('#confirm-ok').click();
      await poll(text(page.locator('#toast'))).toContain('Retried 1: back to pending, same id.');
      await poll(async () => stream.received.filter((m) => m.id === dead[0]).length, 30_000).toBe(1);
      const republished = stream.received.find((m) => m.id === dead[0])!;
      expect(republished.subject).toBe(`${prefix}.payment.payment.captured`);
      expect(JSON.parse(republished.payload)).toMatchObject({ card: SECRET }); // the payload is intact
      await poll(() => app.store.get(dead[0]!).then((e) => e?.status ?? 'gone')).toBe('gone');

      // Discard: gone from the database, never published.
      await page.locator(`#dead tr[data-id="${dead[1]}"] button[data-action=discard]`).click();
      await poll(text(page.locator('#confirm-title'))).toBe('Discard 1 dead letter?');
      await page.locator('#confirm-ok').click();
      await poll(text(page.locator('#toast'))).toContain('Discarded 1.');
      expect(await app.store.get(dead[1]!)).toBeUndefined();

      // The page catches up with the database: one dead letter left, the cancelled one.
      await poll(() => page.locator('#dead tbody tr[data-id]').count()).toBe(1);
      await page.locator(`#dead tr[data-id="${dead[2]}"]`).waitFor({ state: 'visible' });
      await poll(text(page.locator('#total-dead'))).toBe('1');
      expect(totalsOf(await target.counts()).dead).toBe(1);
      await page.locator('#chart-flow path.line').first().waitFor({ state: 'attached', timeout: 20_000 });
      await page.screenshot({ path: join(shots, `dashboard-${tag}-actions.png`), fullPage: true });
      expect(stream.received.some((m) => m.id === dead[1])).toBe(false);

      // Select all, retry selected: the last one goes out too.
      await page.locator('#select-all').check();
      await poll(text(page.locator('#retry-selected'))).toBe('Retry selected (1)');
      await page.locator('#retry-selected').click();
      await poll(text(page.locator('#confirm-ids'))).toContain(dead[2]!);
      await page.locator('#confirm-ok').click();
      await poll(async () => stream.received.filter((m) => m.id === dead[2]).length, 30_000).toBe(1);
      await poll(text(page.locator('#dead-summary'))).toBe('No dead letters.');
      expect(totalsOf(await target.counts()).dead).toBe(0);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
      await relay.stop();
      await stream.close();
      expect(await cli.stop()).toBe(0);
    }
  });
});

describe('dashboard handler mounted on another server', () => {
  const file = join(dir, 'mounted.db');
  let server: Server;
  let base: string;
  let app: Outbox;
  let relay: Relay;

  beforeAll(async () => {
    app = createOutbox({ database: `sqlite:${file}`, publishers: { memory: memoryPublisher() } });
    await app.migrate();
    relay = app.relay({ logger: silentLogger });
    const handle = dashboardHandler(app, {
      prefix: '/ops/',
      allowActions: true,
      token: 'sixteen-chars-at-least',
      relay,
    });
    server = createServer(async (req, res) => {
      if (await handle(req, res)) return;
      if (req.url === '/metrics') res.end('outbox_up 1\n');
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await app?.close();
  });

  it('serves under its prefix, leaves other paths to the host server, and counts the relay’s batches', async () => {
    const bare = await fetch(`${base}/ops`, { redirect: 'manual' });
    expect(bare.status).toBe(308);
    expect(bare.headers.get('location')).toBe('/ops/');
    const html = await fetch(`${base}/ops/`);
    expect(html.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await html.text()).toContain('<script src="dashboard.js"');
    expect(await (await fetch(`${base}/metrics`)).text()).toBe('outbox_up 1\n');
    expect((await fetch(`${base}/dashboard.js`)).status).toBe(404);
    expect((await fetch(`${base}/ops/constructor`)).status).toBe(404);
    expect((await fetch(`${base}/ops/api/summary`, { method: 'DELETE' })).status).toBe(405);
    const db = new Database(file);
    db.transaction(() =>
      app.add(
        fromBetterSqlite3(db),
        [1, 2, 3].map((i) => ({ type: 'order.created', aggregateType: 'order', aggregateId: String(i) })),
      ),
    )();
    db.close();
    expect(await relay.runOnce()).toMatchObject({ published: [{}, {}, {}] });
    expect(await (await fetch(`${base}/ops/api/summary`)).json()).toMatchObject({
      actions: true,
      publishedTotal: 3,
      publishedSource: 'this relay',
      pending: 0,
    });
    const bad = await fetch(`${base}/ops/api/dead?limit=0`);
    expect(bad.status).toBe(400);
    const wrongBody = await fetch(`${base}/ops/api/dead/retry`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer sixteen-chars-at-least' },
      body: JSON.stringify({ ids: [] }),
    });
    expect(wrongBody.status).toBe(400);
    expect(await wrongBody.json()).toMatchObject({
      error: expect.stringMatching(/^INVALID_CONFIG: body\.ids/),
    });
  });

  it('refuses to allow actions without a long enough token; the CLI exits 2 on a short --token or a bad env switch', async () => {
    expect(() => dashboardHandler(app, { allowActions: true })).toThrow(/token of at least 16/);
    const short = await runCli([
      'dashboard',
      '--db',
      `sqlite:${file}`,
      '--allow-actions',
      '--token',
      'short',
      '--port',
      '0',
    ]);
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/INVALID_CONFIG: dashboard actions need a token/);
    // The env twin of --allow-actions means what it says: "false" is read-only, nonsense is refused.
    const off = await startCli(['--db', `sqlite:${file}`], { OUTBOX_DASHBOARD_ALLOW_ACTIONS: 'false' });
    expect(off.output()).toMatch(/read-only/);
    expect(await off.stop()).toBe(0);
    const on = await startCli(['--db', `sqlite:${file}`], { OUTBOX_DASHBOARD_ALLOW_ACTIONS: 'true' });
    expect(on.url).toMatch(/#token=[\w-]{32}$/);
    expect(await on.stop()).toBe(0);
    const maybe = await runCli(['dashboard', '--db', `sqlite:${file}`, '--port', '0'], {
      OUTBOX_DASHBOARD_ALLOW_ACTIONS: 'maybe',
    });
    expect(maybe.code).toBe(2);
    expect(maybe.stderr).toMatch(/OUTBOX_DASHBOARD_ALLOW_ACTIONS must be true or false/);
  });
});
