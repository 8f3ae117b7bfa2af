/**
 * The benchmark's environment: the real services (URLs from env, defaults on their usual ports),
 * one PostgreSQL schema and one JetStream stream per run, created at start and removed at the
 * end, even on Ctrl-C. Nothing else on the servers is touched.
 */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import Database from 'better-sqlite3';
import pg from 'pg';

export const PG_URL = process.env.OUTBOX_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const NATS_URL = process.env.OUTBOX_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
/**
 * OUTBOX_BENCH_PREPARE=0 runs our relays with `prepareStatements: false` (a diagnosis: every
 * claim planned for its own parameters and the table as it is). Undefined = the store's default.
 */
export const PREPARE_STATEMENTS: boolean | undefined =
  process.env.OUTBOX_BENCH_PREPARE === undefined ? undefined : process.env.OUTBOX_BENCH_PREPARE !== '0';

export interface BenchEnv {
  /** PG_URL with this run's application_name, so that its sessions can be found (and ended). */
  readonly pgUrl: string;
  readonly natsServers: string;
  /** Unique per run: names the schema, the stream and the subjects. */
  readonly tag: string;
  readonly schema: string;
  readonly stream: string;
  /** Every subject this run publishes to starts with this (the stream captures `<prefix>.>`). */
  readonly subjectPrefix: string;
  /** A small pool for setup, resets and checks (never used by a relay under test). */
  readonly admin: pg.Pool;
  readonly nc: NatsConnection;
  readonly machine: MachineInfo;
  /** Empties the stream (between scenarios, so each starts from the same state). */
  purgeStream(): Promise<void>;
  streamMessages(): Promise<number>;
  /** Drops the schema, deletes the stream, closes connections. Idempotent. */
  close(): Promise<void>;
}

export interface MachineInfo {
  readonly cores: number;
  readonly cpu: string;
  readonly memoryGiB: number;
  readonly node: string;
  readonly postgres: string;
  readonly nats: string;
  /** When a scenario ran on MariaDB (its server version). */
  readonly mariadb?: string;
  /** The SQLite that better-sqlite3 bundles. */
  readonly sqlite: string;
  readonly commit: string;
  readonly date: string;
  /** 1/5/15-minute load averages when the run started: others' work on these cores is noise. */
  readonly loadAtStart: string;
}

const cleanups = new Set<() => Promise<void>>();
let signalsHooked = false;

/** Runs `fn` at close and on SIGINT/SIGTERM (then exits 130). */
export function onCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  if (!signalsHooked) {
    signalsHooked = true;
    const bail = (signal: string) => {
      process.stderr.write(`\n${signal}: cleaning up…\n`);
      void Promise.allSettled([...cleanups].map((f) => f())).then(() => process.exit(130));
    };
    process.once('SIGINT', () => bail('SIGINT'));
    process.once('SIGTERM', () => bail('SIGTERM'));
  }
  return () => cleanups.delete(fn);
}

/** `url` with `application_name` set (the bench's sessions are `outbox_bench_<tag>…`). */
export function withApplicationName(url: string, name: string): string {
  const u = new URL(url);
  u.searchParams.set('application_name', name);
  return u.toString();
}

/**
 * Ends every session of this run whose application_name starts with `name` except the caller's
 * (a runaway statement of a relay under test must not keep burning a core after the scenario).
 */
export async function endSessions(admin: pg.Pool, name: string): Promise<number> {
  const { rows } = await admin.query(
    `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE application_name LIKE $1 || '%' AND pid <> pg_backend_pid()`,
    [name],
  );
  return Number(rows[0]?.n ?? 0);
}

function sqliteVersion(): string {
  const db = new Database(':memory:');
  try {
    return String((db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v);
  } finally {
    db.close();
  }
}

function natsServersOf(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '4222'}`;
}

function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', 'src'], { encoding: 'utf8' }).trim();
    return dirty ? `${sha} (src modified)` : sha;
  } catch {
    return 'unknown';
  }
}

export async function openEnv(): Promise<BenchEnv> {
  const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const schema = `outbox_bench_${tag}`;
  const stream = `OUTBOX_BENCH_${tag.toUpperCase()}`;
  const subjectPrefix = `bench.${tag}`;
  const pgUrl = withApplicationName(PG_URL, schema);
  const admin = new pg.Pool({ connectionString: withApplicationName(PG_URL, `admin_${schema}`), max: 3 });
  admin.on('error', () => {});
  const natsServers = natsServersOf(NATS_URL);
  let nc: NatsConnection | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unhook();
    await endSessions(admin, schema).catch((e) => warn('end sessions', e));
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch((e) => warn('drop schema', e));
    await admin.end().catch(() => {});
    if (nc) {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(stream).catch((e) => warn('delete stream', e));
      await nc.drain().catch(() => {});
    }
  };
  const unhook = onCleanup(close);
  try {
    const [{ rows }] = await Promise.all([admin.query('SHOW server_version')]);
    nc = await connect({ servers: natsServers, name: 'outbox-bench' });
    await admin.query(`CREATE SCHEMA "${schema}"`);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${subjectPrefix}.>`], max_age: 3_600 * 1e9 });
    const machine: MachineInfo = {
      cores: cpus().length,
      cpu: cpus()[0]?.model.trim() ?? 'unknown',
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      postgres: String(rows[0]?.server_version ?? 'unknown').split(' ')[0]!,
      nats: nc.info?.version ?? 'unknown',
      sqlite: sqliteVersion(),
      commit: gitCommit(),
      date: new Date().toISOString().slice(0, 16).replace('T', ' '),
      loadAtStart: loadavg()
        .map((l) => l.toFixed(2))
        .join(', '),
    };
    const conn = nc;
    return {
      pgUrl,
      natsServers,
      tag,
      schema,
      stream,
      subjectPrefix,
      admin,
      nc: conn,
      machine,
      purgeStream: async () => {
        await jsm.streams.purge(stream);
      },
      streamMessages: async () => (await jsm.streams.info(stream)).state.messages,
      close,
    };
  } catch (error) {
    await close();
    throw new Error(
      `benchmark needs PostgreSQL at ${PG_URL} and NATS JetStream at ${NATS_URL}: ${String(error)}`,
      { cause: error },
    );
  }
}

function warn(what: string, error: unknown): void {
  process.stderr.write(`warning: ${what} failed: ${String(error)}\n`);
}

/** Leftovers of runs that were killed with SIGKILL: reported, never removed (they may be live). */
export async function leftovers(env: BenchEnv): Promise<string[]> {
  const { rows } = await env.admin.query(
    `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'outbox\\_bench\\_%' AND nspname <> $1`,
    [env.schema],
  );
  const found = rows.map((r) => `schema ${String(r.nspname)}`);
  const jsm = await jetstreamManager(env.nc);
  for await (const name of jsm.streams.names()) {
    if (name.startsWith('OUTBOX_BENCH_') && name !== env.stream) found.push(`stream ${name}`);
  }
  return found;
}
