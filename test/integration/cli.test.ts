/**
 * The `outbox` command as a user runs it: the built bin in a child process, configured by flags,
 * OUTBOX_* env twins and outbox.config.json, against real PostgreSQL, SQLite and NATS.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox } from '../../src/index.js';
import { POSTGRES_MIGRATIONS } from '../../src/stores/postgres-migrations.js';
import { memoryPublisher, runOnce } from '../../src/testing/index.js';
import { startStreamCollector } from '../helpers/jetstream.js';
import { NATS_URL, natsSkip, PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const bin = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'outbox-cli-'));
const event = (i: number) => ({ type: 'order.created', aggregateType: 'order', aggregateId: String(i) });

function outbox(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [bin, ...args], {
    cwd: dir,
    env: { ...process.env, ...env, OUTBOX_LOG_LEVEL: 'warn' },
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('outbox CLI on SQLite', () => {
  const file = join(dir, 'app.db');
  const db = `sqlite:${file}`;

  it('migrate creates the schema once, then reports it current; --json for scripts', async () => {
    const first = await outbox(['migrate', '--db', db]);
    expect(first).toMatchObject({ code: 0 });
    expect(first.stdout).toMatch(/migrated from version 0 to 2/);
    const again = await outbox(['migrate', '--json'], { OUTBOX_DATABASE_URL: db });
    expect(JSON.parse(again.stdout)).toEqual({ from: 2, to: 2, applied: [] });
  });

  it('status counts pending events per destination, as a table and as JSON', async () => {
    const sqlite = new Database(file);
    const app = createOutbox({ database: db });
    sqlite.transaction(() => {
      app.add(fromBetterSqlite3(sqlite), [
        { type: 'order.created', aggregateType: 'order', aggregateId: '1' },
        { type: 'order.created', aggregateType: 'order', aggregateId: '2' },
      ]);
    })();
    sqlite.close();
    await app.close();
    const table = await outbox(['status', '--db', db]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/events\.order\.order\.created\s+2\s/);
    const json = JSON.parse((await outbox(['status', '--db', db, '--json'])).stdout);
    expect(json).toMatchObject({
      pending: 2,
      dead: 0,
      destinations: [{ destination: 'events.order.order.created', pending: 2 }],
    });
  });

  it('purge deletes published events kept by retention, older than the given age', async () => {
    const config = join(dir, 'retain.json');
    const retained = `sqlite:${join(dir, 'retain.db')}`;
    writeFileSync(config, JSON.stringify({ database: { url: retained, retainPublished: true } }));
    expect((await outbox(['migrate', '--config', config])).code).toBe(0);
    const app = createOutbox({
      database: { url: retained, retainPublished: true },
      publishers: { memory: memoryPublisher() },
    });
    const sqlite = new Database(join(dir, 'retain.db'));
    sqlite.transaction(() => app.add(fromBetterSqlite3(sqlite), [event(1), event(2)]))();
    sqlite.close();
    expect(await runOnce(app)).toMatchObject({ published: 2 });
    await app.close();
    expect(JSON.parse((await outbox(['status', '--json', '--config', config])).stdout).published).toBe(2);
    expect((await outbox(['purge', '--older-than', '1h', '--config', config])).stdout).toMatch(/deleted 0/);
    await new Promise((r) => setTimeout(r, 20));
    expect(
      JSON.parse((await outbox(['purge', '--older-than', '1ms', '--json', '--config', config])).stdout),
    ).toEqual({ deleted: 2 });
    const bad = await outbox(['purge', '--older-than', 'soon', '--config', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/not a duration/);
  });

  it('demo runs the whole system through a receiver outage and reports 0 lost, 0 reordered', async () => {
    const demo = await outbox(['demo', '--duration', '6'], { OUTBOX_DEMO_RATE: '50' });
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/lost \(must be 0\)\s+0\s+ok/);
    expect(demo.stdout).toMatch(/per-key order violations \(must be 0\)\s+0\s+ok/);
    expect(demo.stdout).toMatch(/retried attempts .*\s[1-9][\d,]*\n/); // the outage really happened
  });

  it('reads outbox.config.json (path by --config or OUTBOX_CONFIG); flags win over the file', async () => {
    const config = join(dir, 'custom.json');
    writeFileSync(config, JSON.stringify({ database: `sqlite:${join(dir, 'other.db')}` }));
    expect((await outbox(['migrate', '--config', config])).stdout).toMatch(/to 2/);
    expect((await outbox(['status', '--json'], { OUTBOX_CONFIG: config })).stdout).toContain('"pending":0');
    expect(
      JSON.parse((await outbox(['status', '--json', '--config', config, '--db', db])).stdout).pending,
    ).toBe(2);
  });

  it('bad configuration exits 2 with the error code and the bad key', async () => {
    const config = join(dir, 'bad.json');
    writeFileSync(config, JSON.stringify({ database: db, relay: { batchSize: -1 } }));
    const bad = await outbox(['status', '--config', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/INVALID_CONFIG: .*relay\.batchSize/);
    const url = await outbox(['status', '--db', 'mongodb://x']);
    expect(url.code).toBe(2);
    expect(url.stderr).toMatch(/UNSUPPORTED_URL/);
    const unmigrated = await outbox(['status', '--db', `sqlite:${join(dir, 'empty.db')}`]);
    expect(unmigrated.code).toBe(2);
    expect(unmigrated.stderr).toMatch(/SCHEMA_OUTDATED: .*outbox migrate/);
    const noBroker = await outbox(['relay', '--db', db]);
    expect(noBroker.code).toBe(2);
    expect(noBroker.stderr).toMatch(/--broker/);
  });
});

const skip = (await pgSkip()) ?? (await natsSkip());

describe.skipIf(skip)('outbox CLI on PostgreSQL and NATS', () => {
  const schema = uniqueName('outbox_cli');
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: PG_URL });
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  });

  it('five concurrent migrate processes all succeed and apply the schema once', async () => {
    const config = join(dir, 'pg.json');
    writeFileSync(config, JSON.stringify({ database: { url: PG_URL, schema } }));
    const results = await Promise.all(
      Array.from({ length: 5 }, () => outbox(['migrate', '--json', '--config', config])),
    );
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0, 0]);
    const applied = results.map((r) => JSON.parse(r.stdout).applied.length);
    expect(applied.sort()).toEqual([0, 0, 0, 0, POSTGRES_MIGRATIONS.length]);
  });

  it('relay --broker publishes to JetStream and exits 0 on SIGTERM, releasing its lease', async () => {
    const collector = await startStreamCollector();
    const config = join(dir, 'pg-relay.json');
    writeFileSync(config, JSON.stringify({ database: { url: PG_URL, schema } }));
    const app = createOutbox({
      database: { url: PG_URL, schema },
      routes: [{ destination: `${collector.prefix}.{type}` }],
    });
    const client = await pool.connect();
    let child: ChildProcess | undefined;
    try {
      child = spawn(process.execPath, [bin, 'relay', '--config', config], {
        cwd: dir,
        env: { ...process.env, OUTBOX_BROKER_URL: NATS_URL, OUTBOX_LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let logs = '';
      child.stderr!.on('data', (d: Buffer) => {
        logs += d.toString();
      });
      const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
      await client.query('BEGIN');
      await app.add(
        fromPg(client),
        Array.from({ length: 50 }, (_, i) => ({ type: 'ping', key: `k${i % 5}`, payload: { i } })),
      );
      await client.query('COMMIT');
      await collector.waitForDistinct(50, 30_000);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(logs).toMatch(/"msg":"relay stopped".*"published":50/);
      const { rows } = await pool.query(
        `SELECT expires_at < now() AS released FROM "${schema}".outbox_leases`,
      );
      expect(rows[0].released).toBe(true);
    } finally {
      child?.kill('SIGKILL');
      client.release();
      await app.close();
      await collector.close();
    }
  });
});
