/**
 * The load of the latency scenario, in a worker thread so that it does not share an event loop
 * with the relay under test: writers commit one event per transaction at a fixed rate (several
 * pg clients, paced by a shared schedule), and a real JetStream consumer records when each
 * message arrives. Latency = arrival at the consumer − the writer's COMMIT acknowledged.
 * With `consumer: 'none'` (an in-process target: the relay's own handler sees the arrivals) the
 * worker returns the commit times instead, and the scenario pairs them. Every time is on
 * `clockMs()`, the process-wide monotonic clock, so both threads read the same clock.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { fromPg } from '../src/executors/pg.js';
import { createOutbox, type Publisher } from '../src/index.js';
import { postgresStore } from '../src/stores/postgres.js';
import { referenceInsertSql } from './reference-relay.js';
import { clockMs } from './timing.js';
import { AGGREGATE_TYPE, EVENT_TYPE, orderPayload } from './workload.js';

export interface LoadRequest {
  readonly side: 'ours' | 'reference';
  readonly pgUrl: string;
  readonly schema: string;
  readonly natsServers: string;
  readonly stream: string;
  /** Subject prefix of this phase: destinations are `${subject}.${type}`. */
  readonly subject: string;
  /** The reference's Nats-Msg-Id prefix. */
  readonly idPrefix: string;
  readonly rate: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly writers: number;
  readonly keys: number;
  /** Ours: the writers' store sends the commit-time NOTIFY (the relay then LISTENs). */
  readonly notify?: boolean;
  /** Who records arrivals: a JetStream consumer here, or the relay's in-process handler. */
  readonly consumer: 'jetstream' | 'none';
}

export interface LoadResult {
  /** Events committed. */
  readonly committed: number;
  /** Of those, messages the consumer received. */
  readonly received: number;
  /** Commit → receive latencies (ms) of the events after the warm-up. */
  readonly latencies: number[];
  /** Messages that arrived before their writer saw COMMIT acknowledged (counted as 0 ms). */
  readonly early: number;
  /** Committed events per second, over the time between the first and last measured commit. */
  readonly achievedRate: number;
  /** Largest delay of a writer behind its schedule (ms): large means the writers could not keep up. */
  readonly maxScheduleLagMs: number;
  /** When that was, in seconds from the start of writing. */
  readonly maxScheduleLagAtS: number;
  /** Measured events that never arrived (JetStream consumer only; the relay did not keep up). */
  readonly missing: number;
  /** consumer 'none': the measured commits (id, clockMs() of the acknowledged COMMIT). */
  readonly commits: readonly (readonly [string, number])[];
}

export type LoadMessage =
  | { readonly kind: 'progress'; readonly committed: number; readonly received: number }
  | { readonly kind: 'done'; readonly result: LoadResult }
  | { readonly kind: 'failed'; readonly error: string };

const DRAIN_TIMEOUT_MS = 15_000;
const CONSUMER_SETTLE_MS = 500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** add() only renders the destination with the route: this publisher never publishes. */
const routingOnly: Publisher = { kind: 'nats', capabilities: { dedupeById: true }, publish: async () => [] };

type Commit = (client: pg.Client, n: number) => Promise<string>;

function committer(req: LoadRequest): Commit {
  const aggregate = (n: number) => `o-${(n * 7_919) % req.keys}`;
  if (req.side === 'ours') {
    const outbox = createOutbox({
      database: postgresStore({ url: req.pgUrl, schema: req.schema, notify: req.notify }),
      publishers: { bench: routingOnly },
      routes: [{ destination: `${req.subject}.{type}` }],
    });
    return async (client, n) => {
      const aggregateId = aggregate(n);
      await client.query('BEGIN');
      const id = await outbox.add(fromPg(client), {
        type: EVENT_TYPE,
        aggregateType: AGGREGATE_TYPE,
        aggregateId,
        payload: orderPayload(n, aggregateId),
      });
      await client.query('COMMIT');
      return id;
    };
  }
  const sql = referenceInsertSql(req.schema);
  const destination = `${req.subject}.${EVENT_TYPE}`;
  return async (client, n) => {
    const aggregateId = aggregate(n);
    await client.query('BEGIN');
    const { rows } = await client.query(sql, [
      `${AGGREGATE_TYPE}:${aggregateId}`,
      EVENT_TYPE,
      destination,
      JSON.stringify(orderPayload(n, aggregateId)),
    ]);
    await client.query('COMMIT');
    return `${req.idPrefix}${String(rows[0]!.id)}`;
  };
}

async function run(req: LoadRequest): Promise<LoadResult> {
  const nc = await connect({ servers: req.natsServers, name: 'outbox-bench-consumer' });
  const clients = await Promise.all(
    Array.from({ length: req.writers }, async () => {
      const c = new pg.Client({ connectionString: req.pgUrl });
      await c.connect();
      return c;
    }),
  );
  try {
    return await measure(req, nc, clients);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await nc.drain().catch(() => {});
  }
}

/** Pairs each message's arrival with its commit, whichever the worker sees first. */
class Ledger {
  readonly latencies: number[] = [];
  committed = 0;
  measuredCommits = 0;
  /** clockMs() of the first and last measured commit. */
  firstMeasuredAt = Number.POSITIVE_INFINITY;
  lastMeasuredAt = 0;
  received = 0;
  early = 0;
  readonly #commitAt = new Map<string, number>();
  readonly #arrivedAt = new Map<string, number>();
  readonly #measured = new Set<string>();
  readonly measuredAt: [string, number][] = [];

  commit(id: string, at: number, measured: boolean): void {
    this.committed++;
    this.#commitAt.set(id, at);
    if (measured) {
      this.#measured.add(id);
      this.measuredAt.push([id, at]);
      this.measuredCommits++;
      this.firstMeasuredAt = Math.min(this.firstMeasuredAt, at);
      this.lastMeasuredAt = Math.max(this.lastMeasuredAt, at);
    }
    const arrivedAt = this.#arrivedAt.get(id);
    if (arrivedAt !== undefined) this.#record(id, at, arrivedAt);
  }

  arrive(id: string, at: number): void {
    this.received++;
    const committedAt = this.#commitAt.get(id);
    if (committedAt === undefined) this.#arrivedAt.set(id, at);
    else this.#record(id, committedAt, at);
  }

  #record(id: string, committedAt: number, arrivedAt: number): void {
    if (!this.#measured.has(id)) return;
    if (arrivedAt < committedAt) this.early++;
    this.latencies.push(Math.max(0, arrivedAt - committedAt));
  }
}

/** Starts an ordered consumer of the phase's subjects; resolves once it runs, to a stop function. */
async function consume(req: LoadRequest, nc: NatsConnection, ledger: Ledger): Promise<() => Promise<void>> {
  const consumer = await jetstream(nc).consumers.get(req.stream, {
    filter_subjects: `${req.subject}.>`,
    deliver_policy: DeliverPolicy.New,
  });
  const messages = await consumer.consume({ max_messages: 1_000 });
  const consuming = (async () => {
    for await (const m of messages) ledger.arrive(m.headers?.get('Nats-Msg-Id') ?? '', clockMs());
  })();
  await sleep(CONSUMER_SETTLE_MS);
  return async () => {
    messages.stop();
    await consuming;
  };
}

/** Commits event n at startAt + n / rate, spread over the clients; returns the largest lag and when. */
async function write(req: LoadRequest, clients: pg.Client[], ledger: Ledger): Promise<[number, number]> {
  const commit = committer(req);
  const intervalMs = 1_000 / req.rate;
  const startAt = clockMs() + 50;
  const measureFrom = startAt + req.warmupSeconds * 1_000;
  const endAt = startAt + req.seconds * 1_000;
  let next = 0;
  let maxScheduleLagMs = 0;
  let maxScheduleLagAtS = 0;
  const writer = async (client: pg.Client) => {
    for (;;) {
      const n = next++;
      const due = startAt + n * intervalMs;
      if (due >= endAt) return;
      const wait = due - clockMs();
      if (wait > 0.5) await sleep(wait);
      const lag = clockMs() - due;
      if (lag > maxScheduleLagMs) [maxScheduleLagMs, maxScheduleLagAtS] = [lag, (due - startAt) / 1_000];
      const id = await commit(client, n);
      ledger.commit(id, clockMs(), due >= measureFrom);
    }
  };
  await Promise.all(clients.map(writer));
  return [maxScheduleLagMs, maxScheduleLagAtS];
}

async function measure(req: LoadRequest, nc: NatsConnection, clients: pg.Client[]): Promise<LoadResult> {
  const ledger = new Ledger();
  const stopConsumer = req.consumer === 'jetstream' ? await consume(req, nc, ledger) : async () => {};
  const progress = setInterval(() => {
    parentPort?.postMessage({
      kind: 'progress',
      committed: ledger.committed,
      received: ledger.received,
    } satisfies LoadMessage);
  }, 1_000);
  const [maxScheduleLagMs, maxScheduleLagAtS] = await write(req, clients, ledger);
  const drainUntil = clockMs() + DRAIN_TIMEOUT_MS;
  while (req.consumer === 'jetstream' && ledger.received < ledger.committed && clockMs() < drainUntil)
    await sleep(20);
  clearInterval(progress);
  await stopConsumer();
  return {
    committed: ledger.committed,
    received: ledger.received,
    latencies: ledger.latencies,
    early: ledger.early,
    // Over the wall time the measured commits took: writers that fall behind show up here.
    achievedRate: ledger.measuredCommits / ((ledger.lastMeasuredAt - ledger.firstMeasuredAt) / 1_000),
    maxScheduleLagMs,
    maxScheduleLagAtS,
    missing: req.consumer === 'jetstream' ? ledger.measuredCommits - ledger.latencies.length : 0,
    commits: req.consumer === 'none' ? ledger.measuredAt : [],
  };
}

run(workerData as LoadRequest).then(
  (result) => parentPort?.postMessage({ kind: 'done', result } satisfies LoadMessage),
  (error: unknown) =>
    parentPort?.postMessage({
      kind: 'failed',
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    } satisfies LoadMessage),
);
