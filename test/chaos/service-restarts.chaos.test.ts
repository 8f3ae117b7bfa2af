/**
 * Chaos 5, service restarts — the only tests that stop shared services, so they live here (one
 * file at a time) and always start the service again in a `finally`, waiting until it answers.
 * - PostgreSQL: 3 relays under a write load; their sessions are killed with pg_terminate_backend,
 *   then the cluster is stopped (`-m immediate`) for 5 s and started again → 0 lost, 0 out of
 *   order, every relay still running (no exit, no crash loop) and publishing again soon after.
 * - NATS: the server is stopped for 10 s and started again → 0 lost, 0 out of order, every relay
 *   still running. The stream (file storage) is read back whole from its start afterwards, since a
 *   consumer's subscription need not survive the restart.
 * Then the "id > last seen" broken relay must fail the same checker (loss).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/testing/index.js';
import { runLastSeen } from '../fixtures/broken-relays.js';
import {
  chaosSeed,
  type Journal,
  readStream,
  sleep,
  summary,
  waitUntil,
  writeLedger,
} from '../helpers/fleet.js';
import { conclude, fleetSuite, freshFleet } from '../helpers/fleet-scenarios.js';
import { NATS_URL, natsSkip, PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

const skip = (await pgSkip()) ?? (await natsSkip());
const LEASE_TTL_MS = 2_000;

function run(command: string, args: string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

function postgres(action: 'stop' | 'start'): void {
  const [version] = readdirSync('/etc/postgresql');
  const mode = action === 'stop' ? ['-m', 'immediate'] : [];
  run('pg_ctlcluster', ['--skip-systemctl-redirect', version!, 'main', action, ...mode]);
}

async function postgresAnswers(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 1_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const NATS_SERVER = '/usr/sbin/nats-server';
const NATS_ARGS = [
  '-a',
  '127.0.0.1',
  '-p',
  '4222',
  '-js',
  '-sd',
  '/var/lib/nats-server',
  '-l',
  '/var/log/nats-server.log',
];

function stopNats(): void {
  // --retry: wait until it is gone (TERM, then KILL after 10 s).
  run('start-stop-daemon', ['--stop', '--retry', '10', '--exec', NATS_SERVER]);
}

function startNats(): void {
  run('start-stop-daemon', [
    '--start',
    '--oknodo',
    '--background',
    '--exec',
    NATS_SERVER,
    '--',
    ...NATS_ARGS,
  ]);
}

/** NATS answers on 4222 and JetStream knows `stream` again. */
async function jetStreamAnswers(stream: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: NATS_URL, reconnect: false, timeout: 1_000 });
    try {
      await (await jetstreamManager(nc)).streams.info(stream);
      return true;
    } finally {
      await nc.close();
    }
  } catch {
    return false;
  }
}

const errorsOf = (journals: readonly Journal[]) => journals.reduce((n, j) => n + j.errors.length, 0);

/** First settle (S line) of any relay after `since`, or undefined. */
function firstSettleAfter(journals: readonly Journal[], since: number): number | undefined {
  const times = journals.flatMap((j) =>
    j.events.filter((e) => e.kind === 'S' && e.at > since).map((e) => e.at),
  );
  return times.length > 0 ? Math.min(...times) : undefined;
}

describe.skipIf(skip)('chaos 5: PostgreSQL and NATS restarts', () => {
  const suite = fleetSuite('outbox_chaos_restarts', {
    leaseTtlMs: LEASE_TTL_MS,
    pollIntervalMs: 100,
    batchSize: 200,
  });

  it('relay sessions terminated, then PostgreSQL stopped -m immediate for 5 s: 0 lost, relays recover, none exits', async () => {
    const env = suite.env('chaos postgres restart');
    const random = seededRandom(env.seed);
    // The relays' sessions carry this application_name, so that only theirs are terminated.
    const application = uniqueName('chaos_relay');
    const { t, fleet } = await freshFleet(env, 'pg-restart', {
      pgUrl: `${PG_URL}?application_name=${application}`,
    });
    try {
      const relays = await fleet.startMany(3);
      const writer = writeLedger({
        outbox: t.outbox,
        pool: env.pool,
        ledger: t.ledger,
        total: Number.MAX_SAFE_INTEGER,
        keys: 200,
        clients: 2,
        random,
        ratePerSecond: 500,
        tolerateErrors: true,
      });
      await sleep(3_000);
      const { rows } = await env.pool.query(
        'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1',
        [application],
      );
      await sleep(3_000);
      let backAt = 0;
      try {
        postgres('stop');
        await sleep(5_000);
      } finally {
        try {
          postgres('start');
        } catch {
          // already running (the stop failed): waiting below still proves it answers
        }
        await waitUntil(postgresAnswers, 60_000, 'PostgreSQL to answer again');
        backAt = Date.now();
      }
      await sleep(3_000);
      writer.stop();
      await writer.done;
      const { rows: ledger } = await env.pool.query(`SELECT count(*)::int AS n FROM ${t.ledger}`);
      await t.collector.waitForDistinct(ledger[0].n, 60_000);
      const stillRunning = relays.filter((r) => r.exit === undefined).length;
      const journals = fleet.journals();
      const recoveredMs = (firstSettleAfter(journals, backAt) ?? Number.POSITIVE_INFINITY) - backAt;
      const r = await conclude(t, fleet, env);
      console.log(
        `chaos postgres restart: ${JSON.stringify({ ...summary(r.verdict), terminatedSessions: rows.length, relayErrors: errorsOf(r.journals), stillRunning, recoveredMs, writer: writer.stats })}`,
      );
      expect(rows.length, 'relay sessions terminated').toBeGreaterThan(0);
      expect(stillRunning).toBe(3);
      expect(errorsOf(r.journals), 'the relays saw the outage').toBeGreaterThan(0);
      expect(recoveredMs).toBeLessThanOrEqual(20_000);
      expect(r.verdict.lost).toBe(0);
      expect(r.verdict.orderViolations).toBe(0);
      expect(r.exitCodes.every((c) => c === 0)).toBe(true);
    } finally {
      await t.close();
    }
  });

  it('NATS stopped for 10 s: 0 lost, relays recover, none exits', async () => {
    const env = suite.env('chaos nats restart');
    const random = seededRandom(env.seed);
    const { t, fleet } = await freshFleet(env, 'nats-restart');
    try {
      const relays = await fleet.startMany(3);
      const writer = writeLedger({
        outbox: t.outbox,
        pool: env.pool,
        ledger: t.ledger,
        total: Number.MAX_SAFE_INTEGER,
        keys: 200,
        clients: 2,
        random,
        ratePerSecond: 500,
      });
      await sleep(3_000);
      let backAt = 0;
      try {
        stopNats();
        await sleep(10_000);
      } finally {
        startNats();
        await waitUntil(() => jetStreamAnswers(t.collector.stream), 60_000, 'NATS JetStream to answer again');
        backAt = Date.now();
      }
      await sleep(3_000);
      writer.stop();
      await writer.done;
      await waitUntil(async () => (await t.store.stats()).pending === 0, 60_000, 'the outbox to drain');
      const stillRunning = relays.filter((r) => r.exit === undefined).length;
      const journals = fleet.journals();
      const recoveredMs = (firstSettleAfter(journals, backAt) ?? Number.POSITIVE_INFINITY) - backAt;
      const receptions = await readStream(t.collector.stream);
      const r = await conclude(t, fleet, env, { receptions });
      console.log(
        `chaos nats restart: ${JSON.stringify({ ...summary(r.verdict), relayErrors: errorsOf(r.journals), stillRunning, recoveredMs, writer: writer.stats })}`,
      );
      expect(stillRunning).toBe(3);
      expect(recoveredMs).toBeLessThanOrEqual(20_000);
      expect(r.verdict.lost).toBe(0);
      expect(r.verdict.orderViolations).toBe(0);
      expect(r.exitCodes.every((c) => c === 0)).toBe(true);
    } finally {
      await t.close();
    }
  });

  it('the checker catches the "id > last seen" broken relay: events lost', async () => {
    const { pool, schema } = suite;
    const lost = await runLastSeen({ pool, schema, seed: chaosSeed('broken last-seen') });
    console.log(`broken last-seen: ${JSON.stringify({ ...summary(lost), leftPending: lost.leftPending })}`);
    expect(lost.lost).toBeGreaterThan(0);
    expect(lost.lost).toBe(lost.leftPending);
  });
});
