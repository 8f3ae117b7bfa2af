/**
 * `outbox doctor` (the built bin, as a deploy gate runs it) against SQLite, PostgreSQL and
 * MariaDB: a clean outbox is reported clean, and each problem is created on purpose and seen —
 * a dropped index (whose printed fix recreates it), a schema older than the code, a relay that
 * stopped heartbeating, a transaction held open, dead rows with autovacuum off, a column that is
 * not utf8mb4, SQLite out of WAL mode, clock skew, an unreachable database, and a Redis publisher
 * without AOF (private redis-servers). `--print-config` names every setting's source.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DoctorReport } from '../../src/cli/commands/doctor.js';
import type { Check } from '../../src/cli/doctor/checks.js';
import { POSTGRES_MIGRATIONS } from '../../src/stores/postgres-migrations.js';
import { SQLITE_MIGRATIONS } from '../../src/stores/sqlite-migrations.js';
import { memoryPublisher, runOnce } from '../../src/testing/index.js';
import { freePort, missingBinary, REDIS_SERVER, stopProcess } from '../helpers/private-servers.js';
import { type CliDatabase, cliDatabases, outboxCli, writeLeases } from './cli-harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A preloaded module that runs this process's clock 5 s ahead of the machine's (and the database's). */
const CLOCK_AHEAD = [
  '--import',
  `data:text/javascript,${encodeURIComponent('const now = Date.now; Date.now = () => now() + 5000;')}`,
];

interface Run {
  readonly code: number;
  readonly report: DoctorReport;
  readonly stdout: string;
  readonly stderr: string;
}

const find = (report: DoctorReport, id: string): Check => {
  const check = report.checks.find((c) => c.id === id);
  if (!check) throw new Error(`no check ${id} in ${JSON.stringify(report.checks.map((c) => c.id))}`);
  return check;
};

for (const c of cliDatabases('outbox-cli-doctor', { ownDatabase: true })) {
  const skip = await c.skip();

  describe.skipIf(skip)(`outbox doctor on ${c.name}`, () => {
    let db: CliDatabase;
    let target: string[];
    const doctor = async (
      args: string[] = [],
      options: { nodeArgs?: string[]; config?: string } = {},
    ): Promise<Run> => {
      const flags = options.config ? ['--config', options.config] : target;
      const r = await outboxCli(['doctor', '--json', ...args, ...flags], {
        cwd: db.dir,
        nodeArgs: options.nodeArgs,
      });
      if (r.stdout === '') throw new Error(`doctor printed nothing (exit ${r.code}): ${r.stderr}`);
      return { ...r, report: JSON.parse(r.stdout) as DoctorReport };
    };
    const table = (name: string) => `${db.prefix}${db.name === 'mariadb' ? `\`${name}\`` : `"${name}"`}`;

    beforeAll(async () => {
      db = await c.make();
      target = db.name === 'sqlite' ? ['--db', db.url] : ['--config', db.config];
    });
    afterAll(async () => {
      await db?.close();
    });

    it('a clean outbox is reported clean: exit 0, every check ok, as JSON and as a table', async () => {
      const { code, report } = await doctor();
      expect(code).toBe(0);
      expect(report.ok).toBe(true);
      expect(report.database).toEqual({
        dialect: c.name === 'mariadb' ? 'mysql' : c.name,
        url: expect.any(String),
      });
      const expected = {
        sqlite: ['schema', 'journal-mode', 'indexes', 'leases'],
        postgres: [
          'schema',
          'indexes',
          'autovacuum',
          'dead-rows',
          'leases',
          'long-transactions',
          'clock-skew',
        ],
        mariadb: ['schema', 'indexes', 'charset', 'leases', 'long-transactions', 'clock-skew'],
      }[c.name];
      expect(report.checks.map((k) => k.id)).toEqual(expected);
      for (const check of report.checks) {
        expect(check).toEqual({
          id: expect.any(String),
          status: expect.stringMatching(/^(ok|warn|fail)$/),
          summary: expect.any(String),
          fix: check.status === 'ok' ? null : expect.any(String),
          ...(check.details ? { details: expect.any(Object) } : {}),
        });
      }
      // This machine's PostgreSQL runs with autovacuum off: doctor must say so, and only that.
      const autovacuumOff =
        c.name === 'postgres' && (await db.sql(`SELECT current_setting('autovacuum') AS v`))[0]?.v !== 'on';
      for (const check of report.checks) {
        expect(check.status, `${check.id}: ${check.summary}`).toBe(
          check.id === 'autovacuum' && autovacuumOff ? 'warn' : 'ok',
        );
      }
      expect(report.counts).toEqual({
        ok: expected.length - (autovacuumOff ? 1 : 0),
        warn: autovacuumOff ? 1 : 0,
        fail: 0,
      });
      const text = await outboxCli(['doctor', ...target], { cwd: db.dir });
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/^ {2}ok {4}schema +schema version \d+, the one this code needs$/m);
      expect(text.stdout).toMatch(/0 failed, \d warnings?, \d+ ok/);
    });

    it('a dropped index fails, named; the fix it prints recreates it', async () => {
      const index = { sqlite: 'outbox_pending_seq', postgres: 'outbox_pend_idx', mariadb: 'outbox.pend_idx' }[
        c.name
      ];
      if (c.name === 'mariadb') await db.sql(`ALTER TABLE ${table('outbox')} DROP KEY pend_idx`);
      else await db.sql(`DROP INDEX ${db.prefix}"${index}"`);
      const broken = await doctor();
      expect(broken.code).toBe(1);
      expect(broken.report.ok).toBe(false);
      const check = find(broken.report, 'indexes');
      expect(check).toMatchObject({ status: 'fail', details: { missing: [index] } });
      expect(check.summary).toMatch(new RegExp(`missing: ${index.replace('.', '\\.')}`));
      if (c.name === 'postgres')
        expect(check.fix).toMatch(/^CREATE INDEX CONCURRENTLY "outbox_pend_idx" ON /);
      await db.sql(check.fix!);
      const fixed = await doctor();
      expect(find(fixed.report, 'indexes').status).toBe('ok');
      expect(fixed.code).toBe(0);
    });

    it('a schema older than the code fails; outbox migrate brings it up to date', async () => {
      const old = mkdtempSync(join(tmpdir(), 'outbox-doctor-old-'));
      const config = join(old, 'outbox.config.json');
      if (c.name === 'sqlite') {
        const url = `sqlite:${join(old, 'old.db')}`;
        const file = new Database(join(old, 'old.db'));
        file.exec(SQLITE_MIGRATIONS[0]!.sql('outbox', { partitions: 64 }));
        file.exec(
          'CREATE TABLE outbox_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
        );
        file
          .prepare('INSERT INTO outbox_migrations VALUES (1, ?, ?)')
          .run(SQLITE_MIGRATIONS[0]!.name, Date.now());
        file.close();
        writeFileSync(config, JSON.stringify({ database: url }));
      } else if (c.name === 'postgres') {
        const schema = `${db.databaseConfig.schema}_old`;
        await db.sql(`CREATE SCHEMA "${schema}"`);
        await db.sql(`CREATE TABLE "${schema}".outbox_migrations (version int PRIMARY KEY, name text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now())`);
        for (const m of POSTGRES_MIGRATIONS.slice(0, -1)) {
          await db.sql(m.sql(schema, 'outbox', { partitions: 64 }));
          await db.sql(`INSERT INTO "${schema}".outbox_migrations (version, name) VALUES ($1, $2)`, [
            m.version,
            m.name,
          ]);
        }
        writeFileSync(config, JSON.stringify({ database: { ...db.databaseConfig, schema } }));
      } else {
        // One migration so far: an older schema is one whose migration row is missing.
        await db.sql(`DELETE FROM ${table('outbox_migrations')}`);
        writeFileSync(config, JSON.stringify({ database: db.databaseConfig }));
      }
      const outdated = await doctor([], { config });
      expect(outdated.code).toBe(1);
      expect(find(outdated.report, 'schema')).toMatchObject({
        status: 'fail',
        summary: expect.stringMatching(/^SCHEMA_OUTDATED: .* version \d+, this code needs \d+/),
        fix: expect.stringMatching(/^run `outbox migrate`/),
      });
      const migrated = await outboxCli(['migrate', '--config', config], { cwd: old });
      expect(migrated.code, migrated.stderr).toBe(0);
      const current = await doctor([], { config });
      expect(find(current.report, 'schema').status).toBe('ok');
      expect(current.code, JSON.stringify(current.report.checks)).toBe(0);
    });

    it('leases of a relay that stopped heartbeating: fail with no live relay, warn while one can take them', async () => {
      await writeLeases(db, 'ghost-relay:0d0d0d', [0, 1, 2, 3, 4, 5, 6, 7], -20_000);
      const outbox = db.outbox({ publishers: { memory: memoryPublisher() } });
      try {
        const alone = await doctor();
        expect(alone.code).toBe(1);
        const check = find(alone.report, 'leases');
        expect(check).toMatchObject({ status: 'fail', fix: expect.stringMatching(/^start a relay/) });
        expect(check.summary).toMatch(
          /8 partitions held by relays that stopped heartbeating: ghost-relay:0d0d0d \(8 partitions, expired \d+(\.\d)?s ago\)/,
        );
        expect(check.details).toMatchObject({
          stale: [{ owner: 'ghost-relay:0d0d0d', partitions: [0, 1, 2, 3, 4, 5, 6, 7] }],
        });
        await outbox.store.heartbeat('live-relay:1e1e1e', 60_000);
        const covered = await doctor();
        expect(find(covered.report, 'leases').status).toBe('warn');
        expect(covered.code).toBe(0);
        expect((await doctor(['--strict'])).code).toBe(1);
        await outbox.store.releaseLeases('live-relay:1e1e1e', 'all');
        await writeLeases(db, '', [0, 1, 2, 3, 4, 5, 6, 7], -60_000);
        await db.add(outbox, [{ type: 'order.created', aggregateType: 'order', aggregateId: '1' }]);
        const idle = find((await doctor()).report, 'leases');
        expect(idle).toMatchObject({
          status: 'warn',
          summary: expect.stringMatching(/^no relay is running and 1 events are pending/),
        });
        await runOnce(outbox);
        expect(find((await doctor()).report, 'leases').status).toBe('ok');
      } finally {
        await outbox.close();
      }
    });

    if (c.name !== 'sqlite')
      it('a transaction held open longer than --long-transaction is reported with its session', async () => {
        let id: number;
        let end: () => Promise<void>;
        if (c.name === 'postgres') {
          const client = new pg.Client({ connectionString: db.url });
          await client.connect();
          await client.query('BEGIN');
          await client.query('SELECT txid_current()');
          id = Number((await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
          end = async () => {
            await client.query('ROLLBACK');
            await client.end();
          };
        } else {
          const conn = await mysql.createConnection({ uri: db.url });
          await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT');
          await conn.query(`SELECT count(*) FROM ${table('outbox')}`);
          id = Number(((await conn.query('SELECT CONNECTION_ID() AS id'))[0] as { id: number }[])[0]!.id);
          end = async () => {
            await conn.query('ROLLBACK');
            await conn.end();
          };
        }
        try {
          await sleep(1500);
          const held = await doctor(['--long-transaction', '1s']);
          const check = find(held.report, 'long-transactions');
          expect(check.status).toBe('warn');
          const sessions = ((check.details?.transactions ?? []) as { pid?: number; thread?: number }[]).map(
            (t) => t.pid ?? t.thread,
          );
          expect(sessions).toContain(id);
          expect(check.fix).toMatch(
            c.name === 'postgres' ? /pg_terminate_backend\(\d+\)/ : /^end it: KILL \d+/,
          );
          expect(held.code).toBe(0);
          expect((await doctor(['--long-transaction', '1s', '--strict'])).code).toBe(1);
          expect(find((await doctor()).report, 'long-transactions').status).toBe('ok'); // default limit: 5 min
        } finally {
          await end();
        }
        const after = find((await doctor(['--long-transaction', '1s'])).report, 'long-transactions');
        expect(JSON.stringify(after.details ?? {})).not.toMatch(new RegExp(`"(pid|thread)":${id}[,}]`));
      });

    if (c.name !== 'sqlite')
      it('clock skew beyond 1 s between this process and the database warns', async () => {
        const skewed = await doctor([], { nodeArgs: CLOCK_AHEAD });
        const check = find(skewed.report, 'clock-skew');
        expect(check).toMatchObject({ status: 'warn', fix: expect.stringMatching(/NTP/) });
        expect(check.details?.skewMs).toBeLessThan(-4000);
        expect(check.summary).toMatch(/the database's clock is \d+ ms behind this machine's/);
        expect(skewed.code).toBe(0);
      });

    if (c.name === 'postgres')
      it('dead rows piling up with autovacuum off for the table are reported', async () => {
        const outbox = table('outbox');
        await db.sql(`ALTER TABLE ${outbox} SET (autovacuum_enabled = false)`);
        // A session of its own: its statistics reach the views when it ends.
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        await client.query(`INSERT INTO ${outbox} (id, key, key_hash, type, destination, payload)
        SELECT gen_random_uuid(), 'k' || g, g, 'bulk', 'events.bulk', '{}' FROM generate_series(1, 12000) AS g`);
        await client.query(`DELETE FROM ${outbox} WHERE type = 'bulk'`);
        await client.end();
        let report: DoctorReport | undefined;
        for (const end = Date.now() + 30_000; Date.now() < end; await sleep(500)) {
          report = (await doctor()).report;
          if (find(report, 'dead-rows').status === 'warn') break;
        }
        const dead = find(report!, 'dead-rows');
        expect(dead).toMatchObject({ status: 'warn', fix: expect.stringMatching(/^VACUUM \(ANALYZE\) /) });
        expect(dead.details?.dead).toBeGreaterThanOrEqual(12_000);
        expect(find(report!, 'autovacuum')).toMatchObject({
          status: 'warn',
          summary: expect.stringMatching(/^autovacuum is off/),
        });
        await db.sql(`ALTER TABLE ${outbox} RESET (autovacuum_enabled)`);
        await db.sql(`VACUUM ${outbox}`);
        for (const end = Date.now() + 30_000; Date.now() < end; await sleep(500)) {
          report = (await doctor()).report;
          if (find(report, 'dead-rows').status === 'ok') break;
        }
        expect(find(report!, 'dead-rows').status).toBe('ok');
      });

    if (c.name === 'mariadb')
      it('a text column that is not utf8mb4 fails; the fix it prints converts it', async () => {
        await db.sql(
          `ALTER TABLE ${table('outbox')} MODIFY destination TEXT CHARACTER SET utf8mb3 COLLATE utf8mb3_bin NOT NULL`,
        );
        const broken = await doctor();
        expect(broken.code).toBe(1);
        const check = find(broken.report, 'charset');
        expect(check).toMatchObject({
          status: 'fail',
          summary: expect.stringMatching(/column destination is utf8mb3/),
        });
        await db.sql(check.fix!);
        expect(find((await doctor()).report, 'charset').status).toBe('ok');
      });

    if (c.name === 'sqlite')
      it('SQLite in rollback-journal mode warns; back in WAL it is ok', async () => {
        expect(await db.sql('PRAGMA journal_mode = DELETE')).toEqual([{ journal_mode: 'delete' }]);
        const rollback = await doctor();
        expect(find(rollback.report, 'journal-mode')).toMatchObject({
          status: 'warn',
          summary: expect.stringMatching(/^journal_mode is delete, not WAL/),
          fix: expect.stringMatching(/PRAGMA journal_mode = WAL/),
        });
        expect(rollback.code).toBe(0);
        expect((await doctor(['--strict'])).code).toBe(1);
        await db.sql('PRAGMA journal_mode = WAL');
        expect(find((await doctor()).report, 'journal-mode').status).toBe('ok');
      });

    it('an unreachable database is one failed check, exit 1', async () => {
      const url = {
        sqlite: 'sqlite:/nonexistent/dir/app.db',
        postgres: 'postgres://postgres@127.0.0.1:1/test',
        mariadb: 'mysql://root@127.0.0.1:1/test',
      }[c.name];
      const r = await outboxCli(['doctor', '--json', '--db', url], { cwd: db.dir });
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout).checks).toEqual([
        { id: 'connection', status: 'fail', summary: expect.any(String), fix: expect.any(String) },
      ]);
    });
  });
}

const redisMissing = missingBinary(REDIS_SERVER, '--version');

describe.skipIf(redisMissing)(
  `outbox doctor behind a Redis Streams publisher (private redis-servers)${redisMissing ? ` — skipped: ${redisMissing}` : ''}`,
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'outbox-doctor-redis-'));
    const db = `sqlite:${join(dir, 'app.db')}`;
    const servers: ChildProcess[] = [];
    const ports: Record<'off' | 'on' | 'lazy', number> = { off: 0, on: 0, lazy: 0 };

    async function startRedis(args: string[]): Promise<number> {
      const port = await freePort();
      const child = spawn(
        REDIS_SERVER,
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, ...args],
        {
          stdio: 'ignore',
        },
      );
      servers.push(child);
      for (const end = Date.now() + 20_000; ; await sleep(50)) {
        const up = await new Promise<boolean>((resolve) => {
          const socket = connect({ host: '127.0.0.1', port }, () => resolve(true)).once('error', () =>
            resolve(false),
          );
          socket.setTimeout(500, () => resolve(false));
          setTimeout(() => socket.destroy(), 600);
        });
        if (up) return port;
        if (Date.now() > end || child.exitCode !== null)
          throw new Error(`redis-server on ${port} did not start`);
      }
    }

    beforeAll(async () => {
      ports.off = await startRedis(['--appendonly', 'no']);
      ports.on = await startRedis(['--appendonly', 'yes', '--appendfsync', 'everysec']);
      ports.lazy = await startRedis(['--appendonly', 'yes', '--appendfsync', 'no']);
      expect((await outboxCli(['migrate', '--db', db], { cwd: dir })).code).toBe(0);
    });
    afterAll(async () => {
      await Promise.all(servers.map((s) => stopProcess(s)));
    });

    it('AOF off fails, AOF on is ok, appendfsync no warns; --broker redis:// is checked too', async () => {
      const config = join(dir, 'outbox.config.json');
      writeFileSync(
        config,
        JSON.stringify({
          database: db,
          routes: [
            { type: 'audit.*', publisher: 'audit' },
            { type: 'lazy.*', publisher: 'lazy' },
            { publisher: 'events' },
          ],
          publishers: {
            events: `redis://127.0.0.1:${ports.off}`,
            audit: { url: `redis://127.0.0.1:${ports.on}`, maxLen: 1000 },
            lazy: `redis://127.0.0.1:${ports.lazy}`,
            hooks: 'http://127.0.0.1:9/in',
          },
        }),
      );
      const r = await outboxCli(['doctor', '--json', '--config', config], { cwd: dir });
      expect(r.code).toBe(1);
      const report = JSON.parse(r.stdout) as DoctorReport;
      expect(report.checks.filter((c) => c.id.startsWith('redis-aof.')).map((c) => [c.id, c.status])).toEqual(
        [
          ['redis-aof.events', 'fail'],
          ['redis-aof.audit', 'ok'],
          ['redis-aof.lazy', 'warn'],
        ],
      );
      expect(find(report, 'redis-aof.events')).toMatchObject({
        summary: expect.stringMatching(/without its append-only file \(appendonly no\)/),
        fix: expect.stringMatching(/^CONFIG SET appendonly yes/),
        details: { appendonly: 'no' },
      });
      const broker = await outboxCli(
        ['doctor', '--json', '--db', db, '--broker', `redis://127.0.0.1:${ports.on}`],
        { cwd: dir },
      );
      expect(broker.code).toBe(0);
      expect(find(JSON.parse(broker.stdout), 'redis-aof.default').status).toBe('ok');
      const down = await outboxCli(
        ['doctor', '--json', '--db', db, '--broker', `redis://127.0.0.1:${await freePort()}`],
        {
          cwd: dir,
        },
      );
      expect(find(JSON.parse(down.stdout), 'redis-aof.default')).toMatchObject({
        status: 'warn',
        summary: expect.stringMatching(/^could not ask Redis/),
      });
    });
  },
);

describe('outbox doctor --print-config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-doctor-config-'));
  const config = join(dir, 'custom.json');
  writeFileSync(
    config,
    JSON.stringify({
      database: { url: `sqlite:${join(dir, 'file.db')}`, retainPublished: true },
      publishers: {
        hooks: {
          url: 'https://user:hunter2@hooks.example.com/in',
          secret: 'whsec_c2VjcmV0',
          headers: { Authorization: 'Bearer t0ken' },
        },
        bus: 'amqp://guest:guest@127.0.0.1:5672',
      },
      routes: [{ type: 'payment.*', publisher: 'hooks' }, { publisher: 'bus' }],
      relay: { batchSize: 200, retention: { keepPublishedForMs: 604_800_000 } },
    }),
  );

  it('shows every resolved setting with its source (flag, env, file, default), secrets masked; exits 0 without connecting', async () => {
    const r = await outboxCli(
      ['doctor', '--print-config', '--json', '--db', 'postgres://app:s3cret@127.0.0.1:1/app'],
      {
        cwd: dir,
        env: { OUTBOX_CONFIG: config, OUTBOX_MAX_ATTEMPTS: '3' },
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/hunter2|whsec_c2VjcmV0|t0ken|guest:guest|s3cret/);
    const settings = new Map(
      (
        JSON.parse(r.stdout).settings as { key: string; value: unknown; source: string; origin?: string }[]
      ).map((s) => [s.key, s]),
    );
    expect(settings.get('config')).toMatchObject({ value: config, source: 'env', origin: 'OUTBOX_CONFIG' });
    expect(settings.get('database.url')).toMatchObject({
      value: 'postgres://app:***@127.0.0.1:1/app',
      source: 'flag',
      origin: '--db',
    });
    expect(settings.get('database.retainPublished')).toMatchObject({
      value: true,
      source: 'file',
      origin: config,
    });
    expect(settings.get('database.schema')).toMatchObject({ value: 'public', source: 'default' });
    expect(settings.get('publishers.hooks')).toMatchObject({
      value: {
        url: 'https://user:***@hooks.example.com/in',
        secret: '***',
        headers: { Authorization: '***' },
      },
      source: 'file',
    });
    expect(settings.get('publishers.bus')).toMatchObject({
      value: 'amqp://guest:***@127.0.0.1:5672',
      source: 'file',
    });
    expect(settings.get('routes')).toMatchObject({ source: 'file' });
    expect(settings.get('relay.batchSize')).toMatchObject({ value: 200, source: 'file' });
    expect(settings.get('relay.maxAttempts')).toMatchObject({
      value: 3,
      source: 'env',
      origin: 'OUTBOX_MAX_ATTEMPTS',
    });
    expect(settings.get('relay.leaseTtlMs')).toMatchObject({ value: 10_000, source: 'default' });
    expect(settings.get('relay.retention')).toMatchObject({
      value: { keepPublishedForMs: 604_800_000 },
      source: 'file',
    });
    expect(settings.get('maxPayloadBytes')).toMatchObject({ value: 1_048_576, source: 'default' });

    const fromEnv = await outboxCli(['doctor', '--print-config', '--broker', 'nats://127.0.0.1:4222'], {
      cwd: dir,
      env: { OUTBOX_DATABASE_URL: `sqlite:${join(dir, 'env.db')}` },
    });
    expect(fromEnv.code).toBe(0);
    expect(fromEnv.stdout).toMatch(/^config +\S+outbox\.config\.json +default \(not found/m);
    expect(fromEnv.stdout).toMatch(/^database\.url +sqlite:\S+env\.db +env OUTBOX_DATABASE_URL$/m);
    expect(fromEnv.stdout).toMatch(/^publishers\.default +nats:\/\/127\.0\.0\.1:4222 +flag --broker$/m);
    expect(fromEnv.stdout).toMatch(/^database\.busyTimeoutMs +5000 +default$/m);
    expect(fromEnv.stdout).toMatch(/^relay\.batchSize +500 +default \(outbox relay\)$/m);
  });
});
