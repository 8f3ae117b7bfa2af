/**
 * `outbox status` and `outbox dlq` as an operator runs them (the built bin in a child process)
 * against SQLite, PostgreSQL and MariaDB: counts per destination and per partition owner, live
 * and stale relays, --watch, and dead letters listed, shown, retried (same id, published again)
 * and discarded, with the --json shapes scripts rely on and the exit codes.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PublishError } from '../../src/core/errors.js';
import type { OutboxEvent } from '../../src/core/event.js';
import type { Publisher } from '../../src/core/ports.js';
import { memoryPublisher, runOnce } from '../../src/testing/index.js';
import {
  BIN,
  type CliDatabase,
  cliDatabases,
  outboxCli,
  rejectingPublisher,
  writeLeases,
} from './cli-harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const flaky: Publisher = {
  kind: 'memory',
  capabilities: { dedupeById: false },
  publish: async (messages) =>
    messages.map(() => ({
      ok: false,
      error: new PublishError('broker unavailable', { retryAfterMs: 3_600_000 }),
    })),
};
const routes = [
  { type: 'user.*', publisher: 'reject' },
  { type: 'payment.*', publisher: 'reject' },
  { type: 'cart.*', publisher: 'flaky' },
  { publisher: 'memory' },
];
const ev = (type: string, id: string, payload: unknown = { id }): OutboxEvent => ({
  type,
  aggregateType: type.split('.')[0]!,
  aggregateId: id,
  payload,
  headers: { 'x-tenant': 'acme-secret-tenant' },
});

for (const c of cliDatabases('outbox-cli-dlq')) {
  const skip = await c.skip();

  describe.skipIf(skip)(`outbox status and dlq on ${c.name}`, () => {
    let db: CliDatabase;
    /** The flags that name this outbox: --db, and on servers a config file with the schema. */
    let target: string[];
    const cli = (args: string[], env: Record<string, string> = {}) =>
      outboxCli([...args, ...target], { cwd: db.dir, env });
    const json = async (args: string[]) => {
      const r = await cli([...args, '--json']);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout);
    };
    const app = (reject: Publisher = rejectingPublisher()) =>
      db.outbox({ routes, publishers: { memory: memoryPublisher(), reject, flaky } });
    let users: string[] = [];
    let payments: string[] = [];
    let between: Date;

    beforeAll(async () => {
      db = await c.make();
      target = db.name === 'sqlite' ? ['--db', db.url] : ['--config', db.config, '--db', db.url];
      const outbox = app();
      try {
        users = await db.add(outbox, [ev('user.joined', 'u1'), ev('user.joined', 'u2')]);
        await db.add(outbox, [ev('order.created', 'o1'), ev('cart.updated', 'c1')]);
        expect(await runOnce(outbox)).toEqual({ published: 1, retried: 1, dead: 2 });
        await sleep(50);
        between = new Date();
        await sleep(50);
        payments = await db.add(outbox, [ev('payment.failed', 'p1', { card: '4111 1111 1111 1111' })]);
        await db.add(outbox, [ev('order.created', 'o2'), ev('order.created', 'o3')]);
        const report = await runOnce(outbox, { relayId: 'relay-one' });
        expect(report.dead).toBe(1);
        // o2 and o3 go out too; add two that stay pending for status.
        await db.add(outbox, [ev('order.created', 'o4'), ev('order.created', 'o5')]);
      } finally {
        await outbox.close();
      }
    });
    afterAll(async () => {
      await db?.close();
    });

    it('status: pending, retrying, dead and lag per destination; relays with live or stale heartbeats', async () => {
      const outbox = app();
      try {
        await writeLeases(db, 'ghost-relay:0a1b2c', [0, 1, 2, 3], 60_000);
        await outbox.store.heartbeat('live-relay:3d4e5f', 60_000);
        await outbox.store.acquireLeases('live-relay:3d4e5f', 60_000);
        await writeLeases(db, 'ghost-relay:0a1b2c', [0, 1, 2, 3], -30_000);
        const status = await json(['status']);
        expect(status).toMatchObject({
          pending: 3,
          retrying: 1,
          dead: 3,
          published: 0,
          partitions: 64,
          freePartitions: [],
        });
        expect(typeof status.at).toBe('string');
        expect(status.oldestPendingAgeMs).toBeGreaterThanOrEqual(0);
        expect(status.destinations).toEqual([
          expect.objectContaining({
            destination: 'events.cart.cart.updated',
            pending: 1,
            retrying: 1,
            dead: 0,
          }),
          expect.objectContaining({
            destination: 'events.order.order.created',
            pending: 2,
            retrying: 0,
            dead: 0,
          }),
          expect.objectContaining({ destination: 'events.payment.payment.failed', pending: 0, dead: 1 }),
          expect.objectContaining({ destination: 'events.user.user.joined', pending: 0, dead: 2 }),
        ]);
        expect(status.relays).toEqual([
          {
            owner: 'live-relay:3d4e5f',
            partitions: Array.from({ length: 60 }, (_, i) => i + 4),
            expiresAt: expect.any(String),
            heartbeat: 'live',
          },
          {
            owner: 'ghost-relay:0a1b2c',
            partitions: [0, 1, 2, 3],
            expiresAt: expect.any(String),
            heartbeat: 'stale',
          },
        ]);
        const table = await cli(['status']);
        expect(table.code).toBe(0);
        expect(table.stdout).toMatch(/pending 3, retrying 1, dead 3/);
        expect(table.stdout).toMatch(/events\.order\.order\.created\s+2\s/);
        expect(table.stdout).toMatch(/live-relay:3d4e5f\s+60\s+4-63\s+live \(lease renewed, expires in/);
        expect(table.stdout).toMatch(
          /ghost-relay:0a1b2c\s+4\s+0-3\s+STALE \(expired \d+(\.\d)?s ago: stopped heartbeating\)/,
        );
      } finally {
        await outbox.store.releaseLeases('live-relay:3d4e5f', 'all');
        await writeLeases(db, '', [0, 1, 2, 3], -60_000);
        await outbox.close();
      }
    });

    it('status --watch refreshes (one JSON line or block per refresh) until Ctrl-C, then exits 0', async () => {
      for (const format of [['--json'], []]) {
        const child = spawn(process.execPath, [BIN, 'status', '--watch', '0.3', ...format, ...target], {
          cwd: db.dir,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
        });
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        const blocks = () =>
          format.length > 0 ? out.split('\n').filter(Boolean).length : out.split('--- ').length - 1;
        for (const until = Date.now() + 30_000; blocks() < 3 && Date.now() < until; ) await sleep(50);
        child.kill('SIGINT');
        expect(await exited).toBe(0);
        expect(blocks()).toBeGreaterThanOrEqual(3);
        if (format.length > 0) {
          for (const line of out.split('\n').filter(Boolean))
            expect(JSON.parse(line)).toMatchObject({ dead: 3 });
        } else {
          expect(out).toMatch(/--- \d{4}-\d\d-\d\dT[\d:.]+Z\npending 3, retrying 1, dead 3/);
        }
      }
      const bad = await cli(['status', '--watch', '0']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--watch takes a number of seconds/);
    });

    it('dlq list: oldest first, filtered by destination, type and since (duration or ISO time), limited', async () => {
      const all = await json(['dlq', 'list']);
      expect(all).toMatchObject({ count: 3, more: false });
      expect(all.deadLetters.map((d: { id: string }) => d.id)).toEqual([...users, ...payments]);
      expect(all.deadLetters[2]).toEqual({
        id: payments[0],
        seq: expect.any(Number),
        type: 'payment.failed',
        key: 'payment:p1',
        aggregateType: 'payment',
        aggregateId: 'p1',
        destination: 'events.payment.payment.failed',
        partition: expect.any(Number),
        attempts: 1,
        lastError: expect.stringContaining('rejected by the test receiver'),
        parked: false,
        createdAt: expect.any(String),
        deadAt: expect.any(String),
      });
      expect(JSON.stringify(all)).not.toContain('4111');
      const ids = async (args: string[]) =>
        (await json(['dlq', 'list', ...args])).deadLetters.map((d: { id: string }) => d.id);
      expect(await ids(['--type', 'user.joined'])).toEqual(users);
      expect(await ids(['--destination', 'events.payment.payment.failed'])).toEqual(payments);
      expect(await ids(['--since', between.toISOString()])).toEqual(payments);
      expect(await ids(['--since', '1h'])).toEqual([...users, ...payments]);
      expect(await ids(['--type', 'user.joined', '--since', between.toISOString()])).toEqual([]);
      const limited = await json(['dlq', 'list', '--limit', '2']);
      expect(limited).toMatchObject({ count: 2, more: true });
      const table = await cli(['dlq', 'list', '--limit', '2']);
      expect(table.stdout).toMatch(
        new RegExp(`${users[0]}\\s+user\\.joined\\s+events\\.user\\.user\\.joined\\s+1\\s+\\d`),
      );
      expect(table.stdout).toMatch(/2 dead letters shown, more match/);
      for (const bad of [
        ['--since', 'yesterday'],
        ['--limit', '0'],
      ]) {
        const r = await cli(['dlq', 'list', ...bad]);
        expect(r.code, r.stderr).toBe(2);
      }
    });

    it('dlq show: payload and header values hidden unless --show-payload, with the attempt history', async () => {
      const hidden = await json(['dlq', 'show', payments[0]!]);
      expect(hidden).toMatchObject({
        id: payments[0],
        status: 'dead',
        payload: null,
        payloadRedacted: true,
        headers: null,
        headerNames: ['x-tenant'],
        payloadBytes: Buffer.byteLength(JSON.stringify({ card: '4111 1111 1111 1111' })),
        history: [{ at: expect.any(String), relay: 'relay-one', error: expect.stringContaining('HTTP 422') }],
      });
      const text = await cli(['dlq', 'show', payments[0]!]);
      expect(text.code).toBe(0);
      expect(text.stdout).not.toMatch(/4111|acme-secret/);
      expect(text.stdout).toMatch(/payload\s+hidden, \d+ bytes \(--show-payload prints it\)/);
      expect(text.stdout).toMatch(/attempt history[\s\S]*relay-one\s+.*HTTP 422/);
      const shown = await json(['dlq', 'show', payments[0]!, '--show-payload']);
      expect(shown).toMatchObject({
        payload: { card: '4111 1111 1111 1111' },
        payloadRedacted: false,
        headers: { 'x-tenant': 'acme-secret-tenant' },
      });
      expect((await cli(['dlq', 'show', payments[0]!, '--show-payload'])).stdout).toContain(
        '4111 1111 1111 1111',
      );
      const missing = await cli(['dlq', 'show', '01890000-0000-7000-8000-000000000000']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/no event with id/);
      expect((await cli(['dlq', 'show'])).code).toBe(2);
    });

    it('dlq retry <id>: back to pending with the same id, published again under it; a non-dead id exits 1', async () => {
      const pendingOrder = (await (async () => {
        const outbox = app();
        try {
          return (await outbox.store.list({ status: 'pending', type: 'order.created' }))[0]!.id;
        } finally {
          await outbox.close();
        }
      })())!;
      const partial = await cli([
        'dlq',
        'retry',
        users[0]!,
        pendingOrder,
        '01890000-0000-7000-8000-000000000000',
        '--json',
      ]);
      expect(partial.code, 'some ids were not retried: exit 1').toBe(1);
      expect(JSON.parse(partial.stdout)).toEqual({
        retried: 1,
        skipped: [
          { id: pendingOrder, reason: 'not a dead letter (status pending)' },
          { id: '01890000-0000-7000-8000-000000000000', reason: 'not found' },
        ],
      });
      expect((await cli(['dlq', 'retry', users[0]!])).code).toBe(1); // pending now: reported, exit 1
      expect(await json(['dlq', 'show', users[0]!])).toMatchObject({ status: 'pending', attempts: 0 });
      // The receiver accepts it now: it goes out under the id it was added with.
      const receiver = memoryPublisher();
      const outbox = app(receiver);
      try {
        await runOnce(outbox);
      } finally {
        await outbox.close();
      }
      expect(receiver.messages.map((m) => m.id)).toEqual([users[0]]);
      const text = await cli(['dlq', 'list', '--type', 'user.joined']);
      expect(text.stdout).not.toContain(users[0]);
    });

    it('dlq retry --all and discard: filters, --yes for everything, a confirmation count, usage errors exit 2', async () => {
      const outbox = app();
      const more = await db.add(outbox, [
        ev('user.joined', 'u3'),
        ev('user.joined', 'u4'),
        ev('payment.failed', 'p2'),
      ]);
      await runOnce(outbox);
      await outbox.close();
      const everything = await cli(['dlq', 'retry', '--all']);
      expect(everything.code).toBe(2);
      expect(everything.stderr).toMatch(
        /--all without a filter would retry every dead letter \(5 now\): add --yes/,
      );
      const text = await cli(['dlq', 'retry', '--all', '--type', 'user.joined']);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/retried 3 dead letters: pending again with the same ids/);
      expect((await json(['dlq', 'list'])).deadLetters.map((d: { id: string }) => d.id)).toEqual([
        payments[0],
        more[2],
      ]);
      expect(await json(['dlq', 'discard', payments[0]!])).toEqual({ discarded: 1, skipped: [] });
      expect(await json(['dlq', 'discard', '--all', '--yes'])).toEqual({ discarded: 1, skipped: [] });
      expect(await json(['dlq', 'list'])).toMatchObject({ count: 0, deadLetters: [] });
      expect((await cli(['dlq', 'list'])).stdout).toMatch(/no dead letters/);
      for (const bad of [
        ['dlq', 'retry'],
        ['dlq', 'retry', users[1]!, '--all'],
        ['dlq', 'discard', users[1]!, '--type', 'user.joined'],
        ['dlq', 'discard', '--all', '--since', 'soon'],
        ['dlq'],
        ['dlq', 'list', '--bogus'],
      ]) {
        const r = await cli(bad);
        expect(r.code, `${bad.join(' ')}: ${r.stderr}`).toBe(2);
      }
    });
  });
}
