/**
 * The harness of the fleet and chaos tests: relay child processes (test/fixtures/relay-process.mjs)
 * started, SIGKILLed, SIGTERMed, SIGSTOPped and SIGCONTed at will; their journals read back; a
 * ledger written in each event's own transaction by concurrent writers; and the verdict — LOST,
 * ORDER and DUP from `checkDelivery` — over what a real JetStream consumer received. The same
 * harness runs on PostgreSQL and MariaDB (test/helpers/fleet-databases.ts: what differs).
 *
 * The ledger is the ground truth. Each writer transaction calls `add()` first and inserts the
 * ledger rows after it, in the same transaction, so an event exists if and only if its ledger row
 * does. The ledger's `seq` (bigserial, AUTO_INCREMENT) is *insertion* order, not commit order;
 * but `add()` takes a transaction-scoped lock per key hash (an advisory lock; a lock row on
 * InnoDB), so a second transaction on the same key blocks in `add()` until the first one commits
 * (or rolls back), and only then inserts its ledger rows. Hence, per key, ledger `seq` order is
 * commit order — the order the relays must publish in. (Across keys the ledger says nothing about
 * order, and the check asks nothing.)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type pg from 'pg';
import type { Store } from '../../src/core/ports.js';
import { createOutbox, type Outbox, type OutboxEvent } from '../../src/index.js';
import {
  checkDelivery,
  type DeliveryResult,
  type LedgerEntry,
  memoryPublisher,
  type Reception,
} from '../../src/testing/index.js';
import { databaseOr, type FleetConnection, type FleetDatabase } from './fleet-databases.js';
import { type StreamCollector, startStreamCollector } from './jetstream.js';
import { NATS_URL, uniqueName } from './services.js';

const FIXTURE = new URL('../fixtures/relay-process.mjs', import.meta.url).pathname;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The seed of a randomized run: OUTBOX_CHAOS_SEED when set (to replay a failure), else a fresh
 * one. Always printed, so any failing run can be replayed.
 */
export function chaosSeed(label: string): number {
  const fromEnv = Number(process.env.OUTBOX_CHAOS_SEED);
  const seed = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 1 + Math.floor(Math.random() * 2 ** 31);
  console.log(`${label}: seed ${seed} (replay with OUTBOX_CHAOS_SEED=${seed})`);
  return seed;
}

/** Polls `condition` every 20 ms until it holds; throws `what` after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

// ---------------------------------------------------------------------------------------------
// Relay processes

export type DeadLetterPolicy = 'continue' | 'park' | Record<string, 'continue' | 'park'>;

export interface RelaySettings {
  leaseTtlMs?: number;
  pollIntervalMs?: number;
  batchSize?: number;
  maxAttempts?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  onDeadLetter?: DeadLetterPolicy;
  /** The destination refuses (retryably) every message with this header… */
  refuseHeader?: string;
  /** …while this file exists, when given. */
  refuseWhileFile?: string;
  /** OUTBOX_FAILPOINTS of the child. */
  failpoints?: string;
}

export interface FleetOptions {
  /** The relays' database URL (`storeFromUrl`), and the schema (a database on MariaDB) and table in it. */
  dbUrl: string;
  schema: string;
  table: string;
  /** Where journals go (one per process: `<name>.journal`, its logs in `<name>.journal.log`). */
  dir: string;
  natsUrl?: string;
  relay?: RelaySettings;
}

export interface RelayProcess {
  /** Unique within the fleet: `r<n>`, n counting every process started (a restart is a new one). */
  readonly name: string;
  readonly journal: string;
  readonly child: ChildProcess;
  /** Resolves on 'ready' (after relay.start()); rejects if the process exits first. */
  readonly ready: Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Set once the process has exited. */
  exit?: { code: number | null; signal: NodeJS.Signals | null; at: number };
  /** The last 4 kB of its stderr, for failure messages. */
  stderr: string;
  stdout: string;
}

/** Every relay process of every fleet in this test file; `killAllRelays()` in afterAll. */
const everyChild = new Set<ChildProcess>();

/** SIGKILLs every relay process still running (for afterAll, whatever happened). */
export function killAllRelays(): void {
  for (const child of everyChild) {
    if (child.signalCode === null && child.exitCode === null) {
      child.kill('SIGCONT'); // a stopped process still dies of SIGKILL, but be explicit
      child.kill('SIGKILL');
    }
  }
}

function settingsArgs(s: RelaySettings): string[] {
  const args: string[] = [];
  const add = (flag: string, value: unknown) => {
    if (value !== undefined)
      args.push(`--${flag}`, typeof value === 'string' ? value : JSON.stringify(value));
  };
  add('lease-ttl-ms', s.leaseTtlMs);
  add('poll-interval-ms', s.pollIntervalMs);
  add('batch-size', s.batchSize);
  add('max-attempts', s.maxAttempts);
  add('backoff-base-ms', s.backoffBaseMs);
  add('backoff-cap-ms', s.backoffCapMs);
  add('on-dead-letter', s.onDeadLetter);
  add('refuse-header', s.refuseHeader);
  add('refuse-while-file', s.refuseWhileFile);
  return args;
}

export class Fleet {
  readonly #o: FleetOptions;
  readonly #all: RelayProcess[] = [];

  constructor(options: FleetOptions) {
    if (!existsSync(new URL('../../dist/index.js', import.meta.url)))
      throw new Error('dist/ is missing: run npm run build (the relay processes run the built package)');
    this.#o = options;
  }

  /** Every process started so far, in start order. */
  get all(): readonly RelayProcess[] {
    return this.#all;
  }

  /** The processes that have not exited. */
  get running(): RelayProcess[] {
    return this.#all.filter((r) => r.exit === undefined);
  }

  /** Starts one relay process (not awaited: `await relay.ready`). */
  start(settings: RelaySettings = {}): RelayProcess {
    const s = { ...this.#o.relay, ...settings };
    const name = `r${this.#all.length + 1}`;
    const journal = join(this.#o.dir, `${name}.journal`);
    const args = [
      FIXTURE,
      ...['--db-url', this.#o.dbUrl, '--schema', this.#o.schema, '--table', this.#o.table],
      ...['--nats-url', this.#o.natsUrl ?? NATS_URL, '--journal', journal, '--relay-id', name],
      ...settingsArgs(s),
    ];
    const env = { ...process.env, OUTBOX_FAILPOINTS: s.failpoints ?? '' };
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    everyChild.add(child);
    const relay: RelayProcess = {
      name,
      journal,
      child,
      stderr: '',
      stdout: '',
      ready: undefined as unknown as Promise<void>,
      exited: new Promise((resolve) =>
        child.once('exit', (code, signal) => {
          everyChild.delete(child);
          relay.exit = { code, signal, at: Date.now() };
          resolve({ code, signal });
        }),
      ),
    };
    child.stderr!.on('data', (d: Buffer) => {
      relay.stderr = (relay.stderr + d.toString()).slice(-4096);
    });
    (relay as { ready: Promise<void> }).ready = new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        relay.stdout += d.toString();
        if (relay.stdout.includes('ready\n')) resolve();
      });
      void relay.exited.then(({ code, signal }) =>
        reject(new Error(`relay ${name} exited before ready (${code ?? signal}): ${relay.stderr}`)),
      );
    });
    relay.ready.catch(() => undefined);
    this.#all.push(relay);
    return relay;
  }

  /** Starts `n` relays and waits until every one is ready. */
  async startMany(n: number, settings: RelaySettings = {}): Promise<RelayProcess[]> {
    const started = Array.from({ length: n }, () => this.start(settings));
    await Promise.all(started.map((r) => r.ready));
    return started;
  }

  /** SIGKILL, and wait until it is gone. */
  async kill(relay: RelayProcess): Promise<void> {
    if (relay.exit) return;
    relay.child.kill('SIGKILL');
    await relay.exited;
  }

  /** SIGTERM (graceful: finish the round, release the leases); resolves to the exit code. */
  async stop(relay: RelayProcess, timeoutMs = 30_000): Promise<number | null> {
    if (relay.exit) return relay.exit.code;
    relay.child.kill('SIGTERM');
    const timer = setTimeout(() => relay.child.kill('SIGKILL'), timeoutMs);
    const { code } = await relay.exited;
    clearTimeout(timer);
    return code;
  }

  pause(relay: RelayProcess): void {
    relay.child.kill('SIGSTOP');
  }

  resume(relay: RelayProcess): void {
    relay.child.kill('SIGCONT');
  }

  /** Every process's journal, parsed. */
  journals(): Journal[] {
    return this.#all.map((r) => readJournal(r.journal, r.name));
  }
}

// ---------------------------------------------------------------------------------------------
// Journals

export type EventKind = 'P' | 'S' | 'F' | 'R' | 'D';
export interface EventLine {
  readonly kind: EventKind;
  readonly at: number;
  /** NaN on R and D lines (the P line of the same id has it). */
  readonly partition: number;
  readonly id: string;
}
export interface LeaseLine {
  readonly at: number;
  readonly change: 'acquired' | 'lost' | 'released';
  readonly leases: readonly { partition: number; epoch: number }[];
}
export interface Journal {
  readonly relay: string;
  readonly events: readonly EventLine[];
  readonly leases: readonly LeaseLine[];
  readonly errors: readonly { at: number; message: string }[];
}

export function readJournal(path: string, relay: string): Journal {
  const events: EventLine[] = [];
  const leases: LeaseLine[] = [];
  const errors: { at: number; message: string }[] = [];
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  for (const line of text.split('\n')) {
    const [kind, at, ...rest] = line.split(' ');
    if (kind === 'L') {
      const leased = rest.slice(1).map((pe) => {
        const [partition, epoch] = pe.split(':').map(Number) as [number, number];
        return { partition, epoch };
      });
      leases.push({ at: Number(at), change: rest[0] as LeaseLine['change'], leases: leased });
    } else if (kind === 'E') {
      errors.push({ at: Number(at), message: rest.join(' ') });
    } else if (kind === 'P' || kind === 'S' || kind === 'F' || kind === 'R' || kind === 'D') {
      events.push({ kind, at: Number(at), partition: Number(rest[0]), id: rest[1]! });
    }
  }
  return { relay, events, leases, errors };
}

/** Ids this process handed to the broker and never settled: in flight when it died, or fenced. */
export function unsettledIds(journal: Journal): Set<string> {
  const last = new Map<string, EventKind>();
  for (const e of journal.events) last.set(e.id, e.kind);
  return new Set([...last].filter(([, kind]) => kind === 'P' || kind === 'F').map(([id]) => id));
}

export function idsOf(journal: Journal, kind: EventKind): Set<string> {
  return new Set(journal.events.filter((e) => e.kind === kind).map((e) => e.id));
}

/** The partitions a process holds after its journal's last lease line. */
export function heldPartitions(journal: Journal): Set<number> {
  const held = new Set<number>();
  for (const l of journal.leases) {
    for (const { partition } of l.leases) {
      if (l.change === 'acquired') held.add(partition);
      else held.delete(partition);
    }
  }
  return held;
}

export interface OwnershipViolation {
  readonly relay: string;
  readonly partition: number;
  readonly publishedAt: number;
  /** Who acquired the partition last before that publish ('' when nobody had). */
  readonly owner: string;
  readonly acquiredAt: number;
}

/**
 * Publishes started by a process for a partition while the latest acquisition of that partition
 * (across all processes, by the same machine clock) was another's: what fencing and the lease
 * check before each publish must prevent. Conservative: an 'acquired' line is written just after
 * the database granted the lease, and a P line just before the publish starts.
 */
export function ownershipViolations(journals: readonly Journal[]): OwnershipViolation[] {
  const acquisitions = new Map<number, { at: number; relay: string }[]>();
  for (const j of journals) {
    for (const l of j.leases) {
      if (l.change !== 'acquired') continue;
      for (const { partition } of l.leases) {
        const list = acquisitions.get(partition) ?? [];
        list.push({ at: l.at, relay: j.relay });
        acquisitions.set(partition, list);
      }
    }
  }
  for (const list of acquisitions.values()) list.sort((a, b) => a.at - b.at);
  const violations: OwnershipViolation[] = [];
  for (const j of journals) {
    for (const e of j.events) {
      if (e.kind !== 'P') continue;
      const list = acquisitions.get(e.partition) ?? [];
      // The latest acquisition strictly before the publish (same-millisecond ties give the benefit of the doubt).
      let latest: { at: number; relay: string } | undefined;
      for (const a of list) {
        if (a.at < e.at) latest = a;
        else break;
      }
      const ownTie = list.some((a) => a.at === e.at && a.relay === j.relay);
      if (latest?.relay !== j.relay && !ownTie) {
        violations.push({
          relay: j.relay,
          partition: e.partition,
          publishedAt: e.at,
          owner: latest?.relay ?? '',
          acquiredAt: latest?.at ?? 0,
        });
      }
    }
  }
  return violations;
}

// ---------------------------------------------------------------------------------------------
// Outbox table, ledger and writers

export interface TestOutbox {
  readonly table: string;
  /** Qualified name of the ledger table beside it. */
  readonly ledger: string;
  readonly store: Store;
  /** For the writers: routes every event to `<collector.prefix>.<aggregateType>`; it relays nothing. */
  readonly outbox: Outbox;
  readonly collector: StreamCollector;
  /** Closes the writers' outbox and the collector (deleting its stream); the table goes with the schema. */
  close(): Promise<void>;
}

/**
 * A fresh outbox table (P partitions) and ledger in `schema` of `db`, and a fresh JetStream stream
 * with a consumer. The dedupe window defaults to JetStream's minimum (100 ms), so that a
 * redelivery after a crash — always later than that — stays visible to the DUP count.
 */
export async function setupOutbox<Pool>(
  db: FleetDatabase<Pool>,
  pool: Pool,
  schema: string,
  options: { partitions?: number; duplicateWindowMs?: number } = {},
): Promise<TestOutbox> {
  const table = uniqueName('outbox');
  const collector = await startStreamCollector(options.duplicateWindowMs ?? 100);
  const store = db.store(pool, { schema, table, partitions: options.partitions });
  const outbox = createOutbox({
    database: store,
    // The writers' outbox validates destinations as NATS subjects; the relays run in their own processes.
    publishers: { nats: memoryPublisher({ kind: 'nats' }) },
    routes: [{ destination: `${collector.prefix}.{aggregateType}` }],
  });
  await outbox.migrate();
  const ledger = await db.createLedger(pool, schema, table);
  return {
    table,
    ledger,
    store,
    outbox,
    collector,
    async close() {
      await collector.close().catch(() => undefined);
      await outbox.close().catch(() => undefined);
    },
  };
}

/** Rows of the qualified `table`. */
export async function countRows<Pool>(db: FleetDatabase<Pool>, pool: Pool, table: string): Promise<number> {
  const [row] = await db.query(pool, `SELECT count(*) AS n FROM ${table}`);
  return Number(row?.n);
}

export interface WriterOptions<Pool = pg.Pool> {
  /** The database of `pool` (default PostgreSQL). */
  readonly db?: FleetDatabase<Pool>;
  readonly outbox: Outbox;
  readonly pool: Pool;
  readonly ledger: string;
  /** Events to commit in all (approximate when errors are tolerated: the ledger is the truth). */
  readonly total: number;
  readonly keys: number;
  /** Concurrent transactions. */
  readonly clients: number;
  readonly random: () => number;
  /** Events per transaction, inclusive range (default [1, 5]); keys drawn at random. */
  readonly eventsPerTransaction?: readonly [number, number];
  /** How long a transaction stays open after add() (its seq taken, not committed), ms range. */
  readonly holdMs?: readonly [number, number];
  /** Events per second across all clients (default: as fast as the database goes). */
  readonly ratePerSecond?: number;
  /** The event for key index `key` (default an 'item.changed' of aggregate `item:k<key>`). */
  readonly event?: (key: number, n: number) => OutboxEvent;
  /** Carry on after a failed transaction (database restarts); default false: the first error rejects. */
  readonly tolerateErrors?: boolean;
}

export interface WriterStats {
  committed: number;
  transactions: number;
  /** Transactions that failed and were left to roll back (deadlocks included). */
  failed: number;
  deadlocks: number;
}

export interface LedgerWriter {
  readonly stats: WriterStats;
  readonly done: Promise<WriterStats>;
  /** Ends the writers after their current transaction. */
  stop(): void;
}

const defaultEvent = (key: number, n: number): OutboxEvent => ({
  type: 'item.changed',
  aggregateType: 'item',
  aggregateId: `k${key}`,
  payload: { n },
});

const between = (random: () => number, [min, max]: readonly [number, number]) =>
  min + Math.floor(random() * (max - min + 1));

/**
 * Concurrent writers committing events with their ledger rows, until `total` are committed or
 * `stop()`. Keys are shared between writers on purpose: per-key order must be commit order.
 */
export function writeLedger<Pool>(o: WriterOptions<Pool>): LedgerWriter {
  const db = databaseOr(o.db);
  const stats: WriterStats = { committed: 0, transactions: 0, failed: 0, deadlocks: 0 };
  const startedAt = Date.now();
  let issued = 0;
  let stopped = false;
  let n = 0;
  const nextEvents = (): OutboxEvent[] | undefined => {
    if (stopped || issued >= o.total) return undefined;
    const size = Math.min(between(o.random, o.eventsPerTransaction ?? [1, 5]), o.total - issued);
    issued += size;
    return Array.from({ length: size }, () =>
      (o.event ?? defaultEvent)(Math.floor(o.random() * o.keys), n++),
    );
  };
  const pace = async () => {
    if (!o.ratePerSecond) return;
    const due = startedAt + (issued / o.ratePerSecond) * 1000;
    if (due > Date.now()) await sleep(due - Date.now());
  };
  const client = async () => {
    while (!stopped) {
      let c: FleetConnection | undefined;
      try {
        c = await db.connect(o.pool);
        for (let events = nextEvents(); events; events = nextEvents()) {
          await pace();
          try {
            await c.commitEvents(o, events, o.holdMs ? between(o.random, o.holdMs) : 0);
            stats.committed += events.length;
          } catch (error) {
            issued -= events.length; // not committed (or unknown: the ledger will tell)
            stats.failed++;
            if (db.isDeadlock(error)) stats.deadlocks++;
            else throw error;
          } finally {
            stats.transactions++;
          }
        }
        c.release();
        return;
      } catch (error) {
        c?.release(true);
        if (!o.tolerateErrors) throw error;
        await sleep(100); // the database is restarting, or our session was terminated
      }
    }
  };
  const done = Promise.all(Array.from({ length: o.clients }, client)).then(() => stats);
  return {
    stats,
    done,
    stop() {
      stopped = true;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// JetStream and the verdict

/**
 * Every message of `stream`, read back from its first by a fresh ordered consumer: what a
 * consumer that joined late would see. Survives a broker restart mid-test (the collector's own
 * subscription may have lost its place then); `at` is the stream's storage time.
 */
export async function readStream(stream: string): Promise<Reception[]> {
  const nc = await connect({ servers: NATS_URL });
  try {
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    const receptions: Reception[] = [];
    if (info.state.messages === 0) return receptions;
    const consumer = await jetstream(nc).consumers.get(stream);
    const messages = await consumer.consume();
    for await (const m of messages) {
      receptions.push({
        id: m.headers?.get('Nats-Msg-Id') ?? '',
        key: m.headers?.get('ce-partitionkey') ?? '',
        at: m.time.getTime(),
      });
      if (m.seq >= info.state.last_seq) break;
    }
    messages.stop();
    return receptions;
  } finally {
    await nc.close();
  }
}

export interface Verdict extends DeliveryResult {
  /** Ids received more than once. */
  readonly duplicatedIds: readonly string[];
}

/** LOST, ORDER and DUP of `receptions` against the ledger (dead letters are not lost). */
export function verify(
  ledger: readonly LedgerEntry[],
  receptions: readonly Reception[],
  deadIds: ReadonlySet<string> = new Set(),
): Verdict {
  const counts = new Map<string, number>();
  for (const r of receptions) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
  const duplicatedIds = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  return { ...checkDelivery(ledger, receptions, deadIds), duplicatedIds };
}

/** The verdict's numbers, for a one-line log. */
export function summary(v: Verdict): Record<string, number> {
  return {
    added: v.added,
    received: v.received,
    distinct: v.distinct,
    lost: v.lost,
    orderViolations: v.orderViolations,
    duplicates: v.duplicates,
    duplicatedIds: v.duplicatedIds.length,
    dead: v.dead,
    p50Ms: v.p50Ms,
    p99Ms: v.p99Ms,
  };
}
