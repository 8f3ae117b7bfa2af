/**
 * One broker at a time (Redis Streams, RabbitMQ, MQTT, HTTP webhooks, Kafka as librdkafka's mock
 * cluster; JetStream's rows are the drain scenario's): our relay draining a PostgreSQL backlog
 * through our publisher for that broker, against the broker's raw acked-publish ceiling measured
 * in the same run — the broker's own client publishing the same messages, no database
 * (bench/brokers/). Ceiling and drain alternate `repeats` times each; the best of each counts.
 * Every phase is verified on the broker (its own count, or a real consumer), and our drain's
 * per-key order where the messages are read back.
 *
 * Then commit → ack latency at a steady rate: writers in a worker thread (bench/load-worker.ts)
 * commit one event per transaction, and the time runs from each acknowledged COMMIT until the
 * relay's publish() call that carried the event returned with the broker's ack (per call: an event
 * counts its call's slowest ack). Next to it, the broker's floor: its raw client alone publishing
 * at the same rate, publish → ack.
 */
import type { BatchReport, OutboundMessage, Publisher, PublishResult } from '../../src/index.js';
import type { DeliveryResult } from '../../src/testing/index.js';
import { openAmqp } from '../brokers/amqp.js';
import type { BrokerBench } from '../brokers/broker.js';
import { openHttp } from '../brokers/http.js';
import { openKafka } from '../brokers/kafka.js';
import { openMqtt } from '../brokers/mqtt.js';
import { openRedis } from '../brokers/redis.js';
import { type BenchEnv, endSessions, withApplicationName } from '../env.js';
import type { LoadRequest, LoadResult } from '../load-worker.js';
import { checkOrder, describeDelivery } from '../order.js';
import { formatNumber, type ResultRow } from '../report.js';
import { countRows, ledgerOf, OURS_TABLE, preloadOurs, quiesce, resetTables } from '../tables.js';
import { oursOutboxOn } from '../targets.js';
import { check, sidesInOrder, timeDrain } from '../timed-drain.js';
import { clockMs, describeTiming } from '../timing.js';
import { workload } from '../workload.js';
import { CEILING_SHARE_BAR, messagesOf, timeRawBatches, timeRawPublish } from './ceiling.js';
import { ARRIVAL_TIMEOUT_MS, type Arrivals, pairArrivals, percentile, runLoad, spread } from './latency.js';

export const BROKERS = {
  redis: openRedis,
  amqp: openAmqp,
  mqtt: openMqtt,
  http: openHttp,
  kafka: openKafka,
} as const satisfies Record<string, (env: BenchEnv) => Promise<BrokerBench>>;
export type BrokerName = keyof typeof BROKERS;

export interface BrokerSettings {
  readonly events: number;
  readonly keys: number;
  readonly batchSize: number;
  /** Ceilings and drains each; the best of each counts. */
  readonly repeats: number;
  /** Commit rate of the latency phase (events/s). */
  readonly rate: number;
  readonly seconds: number;
}

const WRITERS = 8;
const WARMUP_SECONDS = 1;
/** The raw client's latency run: its floor needs fewer samples than the relay's tail. */
const RAW_LATENCY_SECONDS = 3;

interface Drained {
  readonly ms: number;
  readonly delivery: DeliveryResult | undefined;
}

/** The raw client publishing `events` messages; checks the broker holds them all. */
async function ceiling(broker: BrokerBench, s: BrokerSettings): Promise<{ ms: number; window: string }> {
  await broker.reset();
  const messages = messagesOf(workload(s.keys, s.events), s.events, broker.prefix);
  const raw = await broker.openRaw(s.batchSize);
  const label = `raw ${broker.label} publish (ceiling)`;
  const window = 'publishBatch' in raw ? `batches of ${raw.window}` : `${raw.window} in flight`;
  let ms: number;
  try {
    ms =
      'publishBatch' in raw
        ? await timeRawBatches(label, messages, raw.window, (batch) => raw.publishBatch(batch))
        : await timeRawPublish(label, messages, raw.window, (m) => raw.publish(m));
  } finally {
    await raw.close();
  }
  const { count } = await broker.delivered(s.events, false);
  check(count === s.events, `${broker.label} ceiling: ${count} messages arrived, expected ${s.events}`);
  return { ms, window };
}

/** Our relay draining an `events` backlog to the broker; checks the table and the broker. */
async function drainOurs(env: BenchEnv, broker: BrokerBench, s: BrokerSettings): Promise<Drained> {
  await resetTables(env);
  await broker.reset();
  const setup = oursOutboxOn(env, broker.publisher(), {
    destination: `${broker.prefix}.{type}`,
    batchSize: s.batchSize,
  });
  let ms: number;
  let ledger: Awaited<ReturnType<typeof ledgerOf>>;
  try {
    await preloadOurs(env, setup, workload(s.keys, s.events), s.events);
    ledger = await ledgerOf(env);
    await quiesce(env);
    const relay = setup.outbox.relay();
    let errors = 0;
    let failed = 0;
    relay.on('error', () => errors++);
    relay.on('batch', (r: BatchReport) => {
      failed += r.retried.length + r.dead.length;
    });
    ms = await timeDrain(`ours → ${broker.label}`, s.events, {
      start: () => relay.start(),
      stop: () => relay.stop(),
      onPublished: (listener) => relay.on('batch', (r: BatchReport) => listener(r.published.length)),
    });
    check(errors === 0, `our relay reported ${errors} loop errors`);
    check(failed === 0, `${failed} publish attempts to ${broker.label} failed`);
    process.stderr.write(`    ours: ${describeTiming(setup.timing)}\n`);
  } finally {
    await setup.close();
  }
  check((await countRows(env, OURS_TABLE)) === 0, `the ${OURS_TABLE} table is not empty after the drain`);
  const { count, ids } = await broker.delivered(s.events, true);
  check(count === s.events, `${broker.label}: ${count} messages arrived, expected ${s.events}`);
  const delivery = ids ? checkOrder(ledger, ids) : undefined;
  if (delivery) process.stderr.write(`    ours: ${describeDelivery(delivery)}\n`);
  return { ms, delivery };
}

/** `inner`, noting the clock for each message as its publish() call returns it delivered. */
function ackClock(inner: Publisher, onAck: (m: OutboundMessage) => void): Publisher {
  return {
    kind: inner.kind,
    capabilities: inner.capabilities,
    validateDestination: inner.validateDestination?.bind(inner),
    close: inner.close?.bind(inner),
    async publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]> {
      const results = await inner.publish(messages);
      for (const [i, r] of results.entries()) if (r.ok) onAck(messages[i]!);
      return results;
    },
  };
}

interface Latency {
  readonly p50: number;
  readonly p99: number;
  readonly slow: string;
}

/** The writers of the latency phase: add() to our route for the broker, at `s.rate`. */
function loadRequest(env: BenchEnv, broker: BrokerBench, s: BrokerSettings): LoadRequest {
  return {
    side: 'ours',
    pgUrl: env.pgUrl,
    schema: env.schema,
    natsServers: env.natsServers,
    stream: env.stream,
    subject: broker.prefix,
    idPrefix: '',
    rate: s.rate,
    seconds: s.seconds,
    warmupSeconds: WARMUP_SECONDS,
    writers: WRITERS,
    keys: 1_000,
    consumer: 'none',
  };
}

/** Commit → ack latency of our relay at `s.rate`; checks the broker got every acked event. */
async function latency(env: BenchEnv, broker: BrokerBench, s: BrokerSettings): Promise<Latency> {
  await resetTables(env);
  await broker.reset();
  await quiesce(env);
  const arrivals: Arrivals = new Map();
  let acked = 0;
  const publisher = ackClock(broker.publisher(), (m) => {
    acked++;
    arrivals.set(m.id, clockMs());
  });
  const session = `${env.schema}_lat`;
  const setup = oursOutboxOn(env, publisher, {
    destination: `${broker.prefix}.{type}`,
    batchSize: s.batchSize,
    pgUrl: withApplicationName(env.pgUrl, session),
  });
  const relay = setup.outbox.relay();
  relay.on('error', () => {});
  let result: LoadResult;
  try {
    await relay.start();
    const load = await runLoad(loadRequest(env, broker, s), `ours → ${broker.label} at ${s.rate}/s`);
    result = await pairArrivals(load, arrivals);
    // A relay that fell far behind may be in a long claim: end it rather than wait.
    if (result.missing > 0) await endSessions(env.admin, session);
    await relay.stop();
    process.stderr.write(`    ours: ${describeTiming(setup.timing)}\n`);
  } finally {
    await setup.close();
  }
  const { count } = await broker.delivered(acked, false);
  check(count === acked, `${broker.label}: ${count} messages arrived, ${acked} were acknowledged`);
  process.stderr.write(`    ours: ${spread(result.latencies)}\n`);
  const sorted = [...result.latencies, ...Array<number>(result.missing).fill(Number.POSITIVE_INFINITY)].sort(
    (a, b) => a - b,
  );
  const slow = [
    result.achievedRate < s.rate * 0.95 ? `writers reached only ${Math.round(result.achievedRate)}/s` : '',
    result.missing > 0
      ? `${result.missing} events not acknowledged within ${ARRIVAL_TIMEOUT_MS / 1_000} s of the end`
      : '',
  ]
    .filter(Boolean)
    .join(', ');
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), slow };
}

/**
 * The broker's own floor at the same rate: the raw client alone publishing one message as each
 * falls due (no database, no relay), publish → ack; the first second not counted.
 */
async function rawLatency(broker: BrokerBench, s: BrokerSettings): Promise<{ p50: number; p99: number }> {
  await broker.reset();
  const count = Math.round(s.rate * RAW_LATENCY_SECONDS);
  const messages = messagesOf(workload(s.keys, count), count, broker.prefix);
  const raw = await broker.openRaw(s.batchSize);
  const publish = (m: OutboundMessage) => ('publishBatch' in raw ? raw.publishBatch([m]) : raw.publish(m));
  const latencies: number[] = [];
  try {
    const startAt = clockMs();
    const measureFrom = startAt + WARMUP_SECONDS * 1_000;
    const acks: Promise<void>[] = [];
    for (const [n, m] of messages.entries()) {
      const wait = startAt + (n * 1_000) / s.rate - clockMs();
      if (wait > 0.5) await new Promise((resolve) => setTimeout(resolve, wait));
      const sentAt = clockMs();
      acks.push(
        publish(m).then(() => {
          if (sentAt >= measureFrom) latencies.push(clockMs() - sentAt);
        }),
      );
    }
    await Promise.all(acks);
  } finally {
    await raw.close();
  }
  const { count: arrived } = await broker.delivered(count, false);
  check(arrived === count, `${broker.label} raw latency run: ${arrived} messages arrived, expected ${count}`);
  process.stderr.write(`    raw client alone at ${s.rate}/s: ${spread(latencies)}\n`);
  const sorted = latencies.sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

/**
 * The rows of one broker: drain against ceiling (the bar), and commit → ack p99 at a steady rate.
 */
export async function brokerScenario(
  env: BenchEnv,
  name: BrokerName,
  s: BrokerSettings,
): Promise<ResultRow[]> {
  const broker = await BROKERS[name](env);
  try {
    let best = { ours: Number.POSITIVE_INFINITY, ceiling: Number.POSITIVE_INFINITY };
    let window = '';
    const deliveries: DeliveryResult[] = [];
    // The ceiling takes the reference's turns: ours, ceiling, ceiling, ours, …
    for (const side of sidesInOrder(s.repeats)) {
      if (side === 'reference') {
        const c = await ceiling(broker, s);
        best = { ...best, ceiling: Math.min(best.ceiling, c.ms) };
        window = c.window;
      } else {
        const d = await drainOurs(env, broker, s);
        best = { ...best, ours: Math.min(best.ours, d.ms) };
        if (d.delivery) deliveries.push(d.delivery);
      }
    }
    const lat = await latency(env, broker, s);
    const floor = await rawLatency(broker, s);
    const rate = (ms: number) => s.events / (ms / 1_000);
    const violations = Math.max(0, ...deliveries.map((d) => d.orderViolations));
    const lost = Math.max(0, ...deliveries.map((d) => d.lost));
    const invalid = [violations > 0 ? `${violations} order violations` : '', lost > 0 ? `${lost} lost` : '']
      .filter(Boolean)
      .join(', ');
    const order =
      deliveries.length > 0 ? `per-key order violations ${violations}` : 'per-key order not read back';
    return [
      {
        scenario: `drain ${s.events.toLocaleString('en-US')} events (${s.keys} keys), 1 relay, PostgreSQL → ${broker.label}, vs its raw acked-publish ceiling`,
        unit: 'events/s',
        ours: rate(best.ours),
        reference: rate(best.ceiling),
        better: 'higher',
        bar: { kind: 'ratio-at-least', value: CEILING_SHARE_BAR, invalid: invalid || undefined },
        note:
          `reference column: ${broker.rawNote}, ${window}, no database; ` +
          `verified: ${broker.verifyNote}; ${order}`,
      },
      {
        scenario: `commit → ${broker.label} ack at ${s.rate.toLocaleString('en-US')}/s, p99 (polling, no NOTIFY)`,
        unit: 'ms',
        ours: lat.p99,
        reference: floor.p99,
        better: 'lower',
        note: [
          `ours: until the relay's publish() call carrying the event returned acked, 1 run of ${s.seconds} s, ` +
            `p50 ${formatNumber(lat.p50, 'ms')} ms; reference column: the raw client alone publishing each message ` +
            `as it falls due at the same rate, publish → ack, no database (p50 ${formatNumber(floor.p50, 'ms')} ms)`,
          lat.slow,
        ]
          .filter(Boolean)
          .join('; '),
      },
    ];
  } finally {
    await broker.close();
  }
}
