/**
 * The relay's Prometheus metrics (docs/observability.md lists each one). Counters and histograms
 * are fed by the relay's observer calls (observer.ts) as they happen; the outbox-wide gauges
 * (pending, dead letters, oldest pending age) come from `store.stats()`, read when scraped but at
 * most every `statsIntervalMs`, so frequent scrapes cost the database nothing more.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { OutboxStats, Store } from '../core/ports.js';
import type { PublishCall, RelayObserver, SettleObservation } from '../relay/observer.js';
import { Counter, Gauge, Histogram, Registry, Summary } from './prometheus.js';

export interface RelayMetricsOptions {
  /** The outbox-wide gauges are read from the database at most this often (default 5000 ms). */
  readonly statsIntervalMs?: number;
  /** How long a scrape waits for that read before serving without those gauges (default 2000 ms). */
  readonly statsTimeoutMs?: number;
  /**
   * Destinations given a label value of their own (default 200); events of further destinations
   * are counted under `destination="_other"`, so a template with ids in it cannot flood Prometheus.
   */
  readonly maxDestinations?: number;
}

export const RELAY_METRICS_DEFAULTS = Object.freeze({
  statsIntervalMs: 5_000,
  statsTimeoutMs: 2_000,
  maxDestinations: 200,
});

/** What the metrics read from a relay (a `Relay` is one). */
export interface ObservedRelay {
  readonly partitions: readonly number[];
  readonly store: Pick<Store, 'stats'>;
  observe(observer: RelayObserver): () => void;
  on(event: 'error', listener: (error: unknown) => void): unknown;
  off(event: 'error', listener: (error: unknown) => void): unknown;
}

export interface RelayMetrics {
  /** Every metric in the Prometheus text format (version 0.0.4). */
  render(): Promise<string>;
  /** Stops observing the relay and the event loop. */
  close(): void;
}

export const OTHER_DESTINATIONS = '_other';

/** Publish calls: 1 ms to 30 s. */
const PUBLISH_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Commit → publish: 5 ms to an hour (retries and outages). */
const LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
/** Claim and settle statements: 0.5 ms to 5 s. */
const STATEMENT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** The event-loop monitor's timer; its own period is taken off every sample. */
const LOOP_RESOLUTION_MS = 20;
const LOOP_QUANTILES = [0.5, 0.9, 0.99];

type Inc = { inc(by?: number): void };
type Observe = { observe(value: number, count?: number): void };

/**
 * Metrics of one relay, until close().
 * @example
 * const metrics = relayMetrics(relay);
 * createServer(async (req, res) => res.end(await metrics.render())).listen(9464);
 */
export function relayMetrics(relay: ObservedRelay, options: RelayMetricsOptions = {}): RelayMetrics {
  const o = { ...RELAY_METRICS_DEFAULTS, ...options };
  const registry = new Registry();
  const counter = (name: string, help: string) => registry.register(new Counter(name, help));
  const gauge = (name: string, help: string) => registry.register(new Gauge(name, help));
  const histogram = (name: string, help: string, buckets: number[]) =>
    registry.register(new Histogram(name, help, buckets));

  const published = counter(
    'outbox_events_published_total',
    'Events the broker acknowledged, by destination (a redelivery after a crash counts again).',
  );
  const failed = counter(
    'outbox_events_failed_total',
    'Failed publish attempts recorded, by destination: retried later, or dead-lettered.',
  );
  const dead = counter('outbox_events_dead_lettered_total', 'Events dead-lettered, by destination.');
  const errors = counter(
    'outbox_relay_errors_total',
    'Errors of the relay loop (claims, leases, settles); each is logged and retried.',
  );
  const publishSeconds = histogram(
    'outbox_publish_duration_seconds',
    'Time from handing a message to the publisher to its answer, per message, by publisher.',
    PUBLISH_BUCKETS,
  );
  const lagSeconds = histogram(
    'outbox_publish_lag_seconds',
    "Time from an event's commit (created_at, the database clock) to its broker ack, by publisher.",
    LAG_BUCKETS,
  );
  const claimSeconds = histogram(
    'outbox_claim_duration_seconds',
    'Time of the claim query.',
    STATEMENT_BUCKETS,
  );
  const settleSeconds = histogram(
    'outbox_settle_duration_seconds',
    'Time of the settle statement that records outcomes.',
    STATEMENT_BUCKETS,
  );
  const pending = gauge('outbox_pending_events', 'Events not published yet (retrying ones included).');
  const retrying = gauge('outbox_retrying_events', 'Pending events that have failed at least once.');
  const deadLetters = gauge('outbox_dead_letters', 'Dead letters waiting for an operator.');
  const oldestAge = gauge(
    'outbox_oldest_pending_age_seconds',
    'How long the oldest due, undelivered event has waited (0 when none).',
  );
  const leases = gauge('outbox_leases_owned', 'Partitions this relay holds and trusts.');
  const loopDelay = registry.register(
    new Summary(
      'outbox_event_loop_delay_seconds',
      'Event-loop delay of this process, quantiles since the previous scrape.',
    ),
  );

  const byDestination = new Map<string, { published: Inc; failed: Inc; dead: Inc }>();
  const destination = (name: string) => {
    let children = byDestination.get(name);
    if (!children) {
      const label = byDestination.size < o.maxDestinations ? name : OTHER_DESTINATIONS;
      children = byDestination.get(label) ?? {
        published: published.child({ destination: label }),
        failed: failed.child({ destination: label }),
        dead: dead.child({ destination: label }),
      };
      byDestination.set(label, children);
    }
    return children;
  };
  const byPublisher = new Map<string, { duration: Observe; lag: Observe }>();
  const publisher = (name: string) => {
    let children = byPublisher.get(name);
    if (!children) {
      children = {
        duration: publishSeconds.child({ publisher: name }),
        lag: lagSeconds.child({ publisher: name }),
      };
      byPublisher.set(name, children);
    }
    return children;
  };
  const claim = claimSeconds.child();
  const settle = settleSeconds.child();
  const relayErrors = errors.child();

  const stopObserving = relay.observe({
    claimed: (_events, durationMs) => claim.observe(durationMs / 1000),
    published(call: PublishCall) {
      const p = publisher(call.publisher);
      p.duration.observe((call.endedAt - call.startedAt) / 1000, call.events.length);
      const ackedAt = performance.timeOrigin + call.endedAt;
      let delivered = 0;
      call.results.forEach((result, i) => {
        if (!result.ok) return;
        delivered++;
        p.lag.observe(Math.max(0, ackedAt - call.events[i]!.createdAt.getTime()) / 1000);
      });
      if (delivered > 0) destination(call.destination).published.inc(delivered);
    },
    settled(s: SettleObservation) {
      if (s.durationMs !== undefined) settle.observe(s.durationMs / 1000);
      for (const event of s.retried) destination(event.destination).failed.inc();
      for (const event of s.dead) {
        const d = destination(event.destination);
        d.failed.inc();
        d.dead.inc();
      }
    },
  });
  const onError = () => relayErrors.inc();
  relay.on('error', onError);

  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loop.enable();
  const loopTotals = { sum: 0, count: 0, quantiles: new Map<number, number>() };
  const readLoop = () => {
    if (loop.count > 0) {
      const resolutionNs = LOOP_RESOLUTION_MS * 1e6;
      const delay = (ns: number) => Math.max(0, ns - resolutionNs) / 1e9;
      loopTotals.quantiles = new Map(LOOP_QUANTILES.map((q) => [q, delay(loop.percentile(q * 100))]));
      loopTotals.sum += delay(loop.mean) * loop.count;
      loopTotals.count += loop.count;
      loop.reset();
    }
    loopDelay.set(loopTotals.quantiles, loopTotals.sum, loopTotals.count);
  };

  const stats = statsReader(relay.store, o.statsIntervalMs);
  const showStats = (s: OutboxStats | undefined) => {
    if (!s) {
      for (const g of [pending, retrying, deadLetters, oldestAge]) g.clear();
      return;
    }
    pending.set(s.pending);
    retrying.set(s.retrying);
    deadLetters.set(s.dead);
    oldestAge.set((s.oldestPendingAgeMs ?? 0) / 1000);
  };

  return {
    async render() {
      showStats(await stats.read(o.statsTimeoutMs));
      leases.set(relay.partitions.length);
      readLoop();
      return registry.render();
    },
    close() {
      stopObserving();
      relay.off('error', onError);
      loop.disable();
    },
  };
}

/**
 * `store.stats()`, read at most every `intervalMs`. A read that fails gives undefined (the gauges
 * are absent rather than wrong); one slower than a scrape's patience leaves the last values.
 */
function statsReader(store: Pick<Store, 'stats'>, intervalMs: number) {
  let last: { at: number; stats: OutboxStats | undefined } | undefined;
  let reading: Promise<void> | undefined;
  const refresh = () => {
    reading ??= store
      .stats()
      .then(
        (stats) => ({ at: performance.now(), stats }),
        () => ({ at: performance.now(), stats: undefined }),
      )
      .then((result) => {
        last = result;
        reading = undefined;
      });
    return reading;
  };
  return {
    async read(timeoutMs: number): Promise<OutboxStats | undefined> {
      if (!last || performance.now() - last.at >= intervalMs) {
        let timer: NodeJS.Timeout | undefined;
        const patience = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        });
        await Promise.race([refresh(), patience]);
        clearTimeout(timer);
      }
      return last?.stats;
    },
  };
}
