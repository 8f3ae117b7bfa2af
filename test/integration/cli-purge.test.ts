/**
 * Published events kept by retention, removed two ways, on SQLite, PostgreSQL and MariaDB:
 * `outbox purge --older-than …` (the built bin, as an operator runs it) and the relay's
 * background cleanup (`relay.retention`), which deletes in small statements with pauses and
 * never holds up the relay's claims: even a purge that hangs leaves publishing untouched.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store } from '../../src/core/ports.js';
import { createOutbox, storeFromUrl } from '../../src/index.js';
import { silentLogger } from '../../src/relay/logger.js';
import { memoryPublisher, runOnce } from '../../src/testing/index.js';
import { type CliDatabase, cliDatabases, outboxCli } from './cli-harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const order = (i: number) => ({
  type: 'order.created',
  aggregateType: 'order',
  aggregateId: `o${i}`,
  payload: { i },
});

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(25)) if (await check()) return;
  throw new Error(`timed out waiting for ${what}`);
}

for (const c of cliDatabases('outbox-cli-purge')) {
  const skip = await c.skip();

  describe.skipIf(skip)(`purge and the relay's cleanup on ${c.name}`, () => {
    let db: CliDatabase;
    let target: string[];
    const cli = (args: string[], env: Record<string, string> = {}) =>
      outboxCli([...args, ...target], { cwd: db.dir, env });

    beforeAll(async () => {
      db = await c.make();
      target = db.name === 'sqlite' ? ['--db', db.url] : ['--config', db.config, '--db', db.url];
    });
    afterAll(async () => {
      await db?.close();
    });

    it('purge --older-than deletes published events kept by retention, by age; --json; exit codes', async () => {
      const outbox = db.outbox({ retainPublished: true, publishers: { memory: memoryPublisher() } });
      try {
        await db.add(outbox, [order(1), order(2), order(3)]);
        expect(await runOnce(outbox)).toMatchObject({ published: 3 });
      } finally {
        await outbox.close();
      }
      const status = await cli(['status', '--json']);
      expect(JSON.parse(status.stdout)).toMatchObject({ published: 3, pending: 0 });
      for (const age of ['30m', '12h', '7d']) {
        const kept = await cli(['purge', '--older-than', age]);
        expect(kept.code).toBe(0);
        expect(kept.stdout).toMatch(new RegExp(`deleted 0 published events older than ${age}`));
      }
      await sleep(50);
      const env = await cli(['purge', '--json'], { OUTBOX_PURGE_OLDER_THAN: '1ms' });
      expect(env.code, env.stderr).toBe(0);
      expect(JSON.parse(env.stdout)).toEqual({ deleted: 3 });
      expect(JSON.parse((await cli(['status', '--json'])).stdout).published).toBe(0);
      for (const bad of [['purge', '--older-than', 'soon'], ['purge', '--older-than', '7 days'], ['purge']]) {
        const r = await cli(bad, { OUTBOX_PURGE_OLDER_THAN: '' });
        expect(r.code, `${bad.join(' ')}: ${r.stderr}`).toBe(2);
      }
    });

    it('relay.retention: the relay deletes old published events in the background, in statements of batchSize', async () => {
      const store = storeFromUrl({ ...db.databaseConfig, retainPublished: true });
      const limits: (number | undefined)[] = [];
      let deleted = 0;
      let gate: Promise<void> | undefined;
      const watched = new Proxy(store, {
        get(target, name) {
          if (name === 'purge') {
            return async (olderThanMs: number, limit?: number) => {
              limits.push(limit);
              await gate;
              const n = await target.purge(olderThanMs, limit);
              deleted += n;
              return n;
            };
          }
          const value = Reflect.get(target, name);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      }) as Store;
      const memory = memoryPublisher();
      const outbox = createOutbox({
        database: watched,
        publishers: { memory },
        relay: {
          logger: silentLogger,
          pollIntervalMs: 20,
          retention: { keepPublishedForMs: 300, purgeEveryMs: 150, batchSize: 7, pauseMs: 10 },
        },
      });
      const relay = outbox.relay();
      try {
        await relay.start();
        await db.add(
          outbox,
          Array.from({ length: 40 }, (_, i) => order(100 + i)),
        );
        await until('40 published', () => memory.messages.length === 40);
        // Published is not yet settled (and kept): count what the cleanup deletes instead.
        await until('the cleanup to delete them', () => deleted === 40);
        expect(await store.stats()).toMatchObject({ pending: 0, published: 0 });
        expect(new Set(limits)).toEqual(new Set([7]));
        expect(limits.length).toBeGreaterThanOrEqual(Math.ceil(40 / 7));

        // A purge that hangs holds up nothing: the relay claims and publishes as before.
        let release: () => void = () => {};
        gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        const calls = limits.length;
        await until('the next cleanup pass to start (and hang)', () => limits.length > calls);
        await db.add(
          outbox,
          Array.from({ length: 20 }, (_, i) => order(200 + i)),
        );
        await until('20 more published while the purge hangs', () => memory.messages.length === 60);
        expect(limits.length).toBe(calls + 1);
        release();
        gate = undefined;
        await until('those deleted too', () => deleted === 60);
        expect(await store.stats()).toMatchObject({ pending: 0, published: 0 });
      } finally {
        await relay.stop();
        await outbox.close();
        await store.close();
      }
      // Every event once (keys are independent, so their order across keys is free).
      const published = memory.messages.map((m) => JSON.parse(m.payload).i as number).sort((a, b) => a - b);
      expect(published).toEqual([
        ...Array.from({ length: 40 }, (_, i) => 100 + i),
        ...Array.from({ length: 20 }, (_, i) => 200 + i),
      ]);
    });

    it('relay.retention is validated with the rest of the configuration', async () => {
      const config = join(db.dir, 'bad-retention.json');
      writeFileSync(
        config,
        JSON.stringify({ database: db.databaseConfig, relay: { retention: { purgeEveryMs: 1000 } } }),
      );
      const bad = await outboxCli(['status', '--config', config], { cwd: db.dir });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/INVALID_CONFIG: .*relay\.retention\.keepPublishedForMs/);
    });
  });
}
