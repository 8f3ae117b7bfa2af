/**
 * examples/: each service run as a user runs it, from a folder of its own where `outbox` resolves
 * by package name to this checkout's dist/ (what `npm install` of its `file:../..` dependency
 * makes: a link) and every other import resolves only if its package.json lists it. Against a
 * database of its own on the machine's PostgreSQL or MariaDB: POST an order, then a real consumer
 * (a JetStream consumer, or the webhook receiver the service was pointed at) must get the
 * order.placed event, the order row must be committed, the outbox table must be empty again (the
 * relay settled), and SIGTERM must stop the service cleanly. The examples are plain JavaScript
 * with JSDoc types (Node 20 runs no TypeScript), so the last test type-checks them, `checkJs`,
 * against the package's declarations.
 *
 * Needs dist/ (npm test builds first).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MARIADB_URL,
  mariadbSkip,
  NATS_URL,
  natsSkip,
  PG_URL,
  pgSkip,
  uniqueName,
} from '../helpers/services.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const TIMEOUT_MS = 120_000;
/** Generous: the service's first start loads its ORM, migrates, and on a busy 2-core machine waits. */
const WAIT_MS = 60_000;

interface Example {
  readonly dir: string;
  readonly database: 'postgres' | 'mariadb';
  readonly consumer: 'jetstream' | 'webhook';
}

const EXAMPLES: readonly Example[] = [
  { dir: '02-kysely-postgres', database: 'postgres', consumer: 'jetstream' },
  { dir: '03-drizzle-postgres', database: 'postgres', consumer: 'webhook' },
  { dir: '04-typeorm-postgres', database: 'postgres', consumer: 'jetstream' },
  { dir: '05-knex-mariadb', database: 'mariadb', consumer: 'webhook' },
];

/** What the consumer got: the event as a downstream service sees it. */
interface Received {
  readonly where: string;
  readonly type: string | undefined;
  readonly id: string | undefined;
  readonly payload: Record<string, unknown>;
}

/**
 * The example's folder as `npm install` would leave it: its files, `node_modules/outbox` linked
 * to this checkout, and each other dependency its package.json lists linked from the repo's
 * node_modules (nothing downloaded or compiled).
 */
function install(example: Example, into: string): string {
  const app = join(into, example.dir);
  cpSync(join(root, 'examples', example.dir), app, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  for (const name of Object.keys(manifest.dependencies)) {
    const target = name === 'outbox' ? root : join(root, 'node_modules', name);
    if (!existsSync(target))
      throw new Error(`${example.dir} depends on ${name}, which the repo does not have`);
    mkdirSync(dirname(join(app, 'node_modules', name)), { recursive: true });
    symlinkSync(target, join(app, 'node_modules', name));
  }
  return app;
}

/** A database of the example's own, its URL, a way to query it, and its removal. */
interface Database {
  readonly url: string;
  query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  drop(): Promise<void>;
}

async function createDatabase(kind: Example['database']): Promise<Database> {
  const name = uniqueName('outbox_example');
  if (kind === 'postgres') {
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`);
    const url = new URL(PG_URL);
    url.pathname = `/${name}`;
    const client = new pg.Client({ connectionString: url.href });
    await client.connect();
    return {
      url: url.href,
      query: async (sql, params) => (await client.query(sql, params)).rows,
      async drop() {
        await client.end();
        await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await admin.end();
      },
    };
  }
  const admin = await mysql.createConnection({ uri: MARIADB_URL });
  await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`);
  const url = new URL(MARIADB_URL);
  url.pathname = `/${name}`;
  const conn = await mysql.createConnection({ uri: url.href });
  return {
    url: url.href,
    query: async (sql, params) => (await conn.query(sql, params))[0] as Record<string, unknown>[],
    async drop() {
      await conn.end();
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await admin.end();
    },
  };
}

/** A downstream consumer: where the service publishes (its env), and what arrived there. */
interface Consumer {
  readonly env: Record<string, string>;
  /** Starts consuming (JetStream: once the service has made its stream). */
  start(): Promise<void>;
  readonly received: Received[];
  close(): Promise<void>;
}

/** A webhook receiver on a free port, answering 204 to every POST. */
async function webhookReceiver(): Promise<Consumer> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk;
    });
    req.on('end', () => {
      const headers: IncomingHttpHeaders = req.headers;
      received.push({
        where: req.url ?? '',
        type: headers['ce-type'] as string | undefined,
        id: headers['ce-id'] as string | undefined,
        payload: JSON.parse(body) as Record<string, unknown>,
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    env: { WEBHOOK_URL: `http://127.0.0.1:${port}/hooks/{destination}` },
    received,
    start: async () => {},
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A JetStream consumer of the stream the service makes for its subject prefix. */
async function jetstreamConsumer(): Promise<Consumer> {
  const prefix = uniqueName('example');
  const stream = prefix.toUpperCase();
  const nc = await connect({ servers: NATS_URL });
  const received: Received[] = [];
  let consuming: Promise<void> | undefined;
  let stop = () => {};
  return {
    env: { NATS_URL, SUBJECT_PREFIX: prefix },
    received,
    async start() {
      const consumer = await jetstream(nc).consumers.get(stream);
      const messages = await consumer.consume();
      stop = () => messages.stop();
      consuming = (async () => {
        for await (const m of messages) {
          received.push({
            where: m.subject,
            type: m.headers?.get('ce-type'),
            id: m.headers?.get('Nats-Msg-Id'),
            payload: m.json<Record<string, unknown>>(),
          });
        }
      })();
    },
    async close() {
      stop();
      await consuming;
      await (await jetstreamManager(nc)).streams.delete(stream).catch(() => false);
      await nc.drain();
    },
  };
}

/** The running service: its output so far, and a promise of its exit. */
interface Service {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

function start(app: string, env: Record<string, string>): Service {
  const child = spawn(process.execPath, ['main.mjs'], {
    cwd: app,
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk;
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Polls `probe` until it returns a value, for at most WAIT_MS; `what` names it in the failure. */
async function until<T>(what: string, service: Service, probe: () => T | undefined | Promise<T | undefined>) {
  for (const startedAt = Date.now(); Date.now() - startedAt < WAIT_MS; await sleep(50)) {
    const value = await probe();
    if (value !== undefined) return value;
    if (service.child.exitCode !== null) break;
  }
  throw new Error(`${what} (within ${WAIT_MS / 1000} s); the service said:\n${service.output()}`);
}

const skips = {
  postgres: await pgSkip(),
  mariadb: await mariadbSkip(),
  jetstream: await natsSkip(),
  webhook: undefined,
};

describe('examples/, run as a user runs them', () => {
  let scratch: string;

  beforeAll(() => {
    if (!existsSync(join(root, 'dist/index.js'))) {
      throw new Error('dist/ is not built: run `npm run build` first (npm test does)');
    }
    scratch = mkdtempSync(join(tmpdir(), 'outbox-examples-'));
  });
  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  for (const example of EXAMPLES) {
    const skip = skips[example.database] ?? skips[example.consumer];
    it.skipIf(skip !== undefined)(
      `${example.dir}${skip ? ` (skipped: ${skip})` : ''}: an order placed over HTTP commits its row, and its order.placed event reaches a real consumer`,
      async () => {
        const app = install(example, scratch);
        const db = await createDatabase(example.database);
        const consumer =
          example.consumer === 'jetstream' ? await jetstreamConsumer() : await webhookReceiver();
        const service = start(app, { DATABASE_URL: db.url, ...consumer.env });
        try {
          const port = await until(
            'the service never said it was listening',
            service,
            () => service.output().match(/listening on http:\/\/127\.0\.0\.1:(\d+)/)?.[1],
          );
          await consumer.start();
          const response = await fetch(`http://127.0.0.1:${port}/orders`, {
            method: 'POST',
            body: JSON.stringify({ customerId: 'c-1', totalCents: 4200 }),
          });
          expect(response.status).toBe(201);
          const { id } = (await response.json()) as { id: string };

          const event = await until(`order ${id}'s event never reached the consumer`, service, () =>
            consumer.received.find((m) => m.payload.id === id),
          );
          expect(event).toMatchObject({
            type: 'order.placed',
            payload: { id, customerId: 'c-1', totalCents: 4200 },
          });
          expect(event.id).toMatch(/^[0-9a-f-]{36}$/);
          expect(event.where).toBe(
            example.consumer === 'jetstream'
              ? `${consumer.env.SUBJECT_PREFIX}.order.order.placed`
              : '/hooks/events.order.order.placed',
          );
          expect(consumer.received).toHaveLength(1);

          const byId = example.database === 'postgres' ? '$1' : '?';
          const rows = await db.query(`SELECT customer_id, total_cents FROM orders WHERE id = ${byId}`, [id]);
          expect(rows).toEqual([{ customer_id: 'c-1', total_cents: 4200 }]);
          // Published events are deleted at settle: the relay finished its work.
          await until('the outbox table still holds the event', service, async () => {
            const [row] = await db.query('SELECT count(*) AS n FROM outbox');
            return Number(row!.n) === 0 ? true : undefined;
          });

          service.child.kill('SIGTERM');
          const code = await Promise.race([service.exited, sleep(WAIT_MS).then(() => 'still running')]);
          expect(code, service.output()).toBe(0);
        } finally {
          if (service.child.exitCode === null && service.child.signalCode === null)
            service.child.kill('SIGKILL');
          await consumer.close();
          await db.drop();
        }
      },
      TIMEOUT_MS,
    );
  }

  it(
    'type-checks every example (checkJs) against the package and its libraries',
    () => {
      const dir = join(scratch, 'typecheck');
      for (const example of EXAMPLES) {
        const app = install(example, dir);
        // Type packages (@types/node, @types/pg) from the repo, as a user's own.
        symlinkSync(join(root, 'node_modules/@types'), join(app, 'node_modules/@types'));
        writeFileSync(
          join(app, 'tsconfig.json'),
          JSON.stringify({
            compilerOptions: {
              target: 'ES2023',
              lib: ['ES2023'],
              module: 'NodeNext',
              moduleResolution: 'NodeNext',
              types: ['node'],
              strict: true,
              allowJs: true,
              checkJs: true,
              noEmit: true,
              skipLibCheck: true,
            },
            include: ['*.mjs'],
          }),
        );
        const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', app], {
          encoding: 'utf8',
          timeout: TIMEOUT_MS - 10_000,
        });
        expect(tsc.status, `${example.dir}:\n${tsc.stdout}${tsc.stderr}`).toBe(0);
      }
    },
    TIMEOUT_MS,
  );
});
