/**
 * The relay: moves committed events from the outbox table to the brokers.
 *
 *   ┌──────────────────┐ partitions ┌───────┐ events ┌──────────────────────┐ outcomes ┌────────┐
 *   │ heartbeat, take  │───────────▶│ claim │───────▶│ key lanes → publish  │─────────▶│ settle │
 *   │ or give back     │            └───────┘        │ queues per destination│         └────────┘
 *   │ partition leases │                ▲            └──────────────────────┘              │
 *   └──────────────────┘                └──── when fewer than a batch are in flight ◀──────┘
 *                        none due: sleep 1, 2, 4 … ms up to pollIntervalMs (a wake-up cuts it)
 *
 * - Relays share the outbox through partition leases (lease.ts): partition = key hash mod P, each
 *   worked by one relay at a time, each relay holding its fair share. Every settle is fenced by
 *   the epochs of the leases its events were claimed under, and right before each publish the
 *   relay checks that it still trusts the event's lease: a relay that lost a partition publishes
 *   nothing more of it and writes nothing for it.
 * - Claim is by status: due pending events of owned partitions in insertion order, minus any key
 *   held back by an earlier event that is retrying, delayed or parked, minus the events this relay
 *   has in flight. Nothing is marked at claim, so a relay that dies leaves its events pending: the
 *   next owner publishes them again. The relay claims again whenever fewer than a batch of events
 *   are in flight, so claiming, publishing and settling overlap.
 * - The relay is a stream, not a sequence of batches: each key is a lane that publishes its events
 *   one after another, the next as soon as the previous one is delivered; keys are concurrent, and
 *   events of one destination are sent together (dispatch.ts), so a slow or failing destination
 *   holds back only its own keys. A failure ends its key's lane: the key's later events stay
 *   pending, and claims that started before the failure was settled are not trusted for that key
 *   (the settle is what holds a retrying key back).
 * - Outcomes are settled as they come, many per statement (while one settle runs, the next
 *   gathers): delivered → deleted (or kept, with retention); failed → attempts+1 and the next
 *   attempt after exponential backoff with full jitter; out of attempts, or a PermanentError →
 *   dead-lettered with its attempt history, and with policy 'park' for its destination the dead
 *   letter keeps holding its key back until an operator acts. A settle that fails is retried.
 * - stop(): sends nothing more, waits for the publishes in flight, settles them, gives every lease
 *   back and resolves.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { type BackoffOptions, backoffDelayMs, DEFAULT_BACKOFF } from '../core/backoff.js';
import { describeError, OutboxError, PublishError } from '../core/errors.js';
import { failpoint } from '../core/failpoints.js';
import { uuidv7 } from '../core/ids.js';
import type { AttemptRecord, ClaimedEvent, FailedAttempt, Publisher, Store } from '../core/ports.js';
import { globToRegExp, type Router } from '../core/routes.js';
import { PublishedCleanup, type RetentionOptions } from './cleanup.js';
import { Dispatcher, type Flight } from './dispatch.js';
import { type LeaseEvent, PartitionLeases } from './lease.js';
import { consoleLogger, type Logger } from './logger.js';
import { Observers, type RelayObserver } from './observer.js';
import { producerSpans } from './tracing.js';

export interface RelayOptions {
  /** Events claimed per batch (default 500). */
  readonly batchSize?: number;
  /** Attempts before an event is dead-lettered (default 10). */
  readonly maxAttempts?: number;
  /** Retry schedule (default base 500 ms, cap 60 s, full jitter). */
  readonly backoff?: Partial<BackoffOptions>;
  /**
   * Longest sleep when idle (default 100 ms). After an empty claim the relay sleeps 1, 2, 4 … ms
   * up to this; while claims return events it does not sleep. NOTIFY (when the store has it on)
   * and local adds wake it sooner. Also how often a relay below its share looks for free partitions.
   */
  readonly pollIntervalMs?: number;
  /** Lease time-to-live; a relay that stops heartbeating loses its partitions after this (default 10 s). */
  readonly leaseTtlMs?: number;
  /** Failed attempts kept per event (default 10, the most recent). */
  readonly historyLimit?: number;
  /** How long stop() waits for the batch in flight before giving up on it (default 15 s). */
  readonly shutdownTimeoutMs?: number;
  /**
   * A backstop for a publisher whose publish() never settles: after this its messages count as
   * failed (default 5 min). Publishers have their own per-message timeouts; this is not one.
   */
  readonly publishTimeoutMs?: number;
  /** This relay's id, in logs and attempt histories (default host:pid); the lease owner adds a nonce. */
  readonly relayId?: string;
  readonly logger?: Logger;
  /**
   * What a dead letter does to the later events of its key: 'continue' (default: they go on) or
   * 'park' (they wait until an operator retries or discards the dead letter). One policy, or one
   * per destination glob (`'payments.*': 'park'`); the first matching glob wins, else 'continue'.
   */
  readonly onDeadLetter?: DeadLetterPolicy | Readonly<Record<string, DeadLetterPolicy>>;
  /** Deletes published events kept by retention (`retainPublished`) in the background (cleanup.ts). */
  readonly retention?: RetentionOptions;
}

export type DeadLetterPolicy = 'continue' | 'park';

export const RELAY_DEFAULTS = Object.freeze({
  batchSize: 500,
  maxAttempts: 10,
  pollIntervalMs: 100,
  leaseTtlMs: 10_000,
  historyLimit: 10,
  shutdownTimeoutMs: 15_000,
  publishTimeoutMs: 300_000,
});

/** What one batch did; emitted as 'batch' and returned by runOnce(). */
export interface BatchReport {
  readonly claimed: number;
  readonly published: readonly ClaimedEvent[];
  readonly retried: readonly FailedAttempt[];
  readonly dead: readonly FailedAttempt[];
  /** False when some outcomes were not recorded (a lease lost): the next owner redoes those. */
  readonly settled: boolean;
  /** Published or failed, but not recorded: their partition's lease was lost before the settle. */
  readonly fenced: readonly ClaimedEvent[];
  /** Not published: their partition's lease could no longer be trusted when their round came. */
  readonly skipped: readonly ClaimedEvent[];
}

export interface RelayDependencies {
  readonly store: Store;
  readonly publishers: ReadonlyMap<string, Publisher>;
  readonly router: Router;
}

const ERROR_SLEEP_MIN_MS = 100;
/** The first sleep after an empty claim; it doubles up to pollIntervalMs. */
const IDLE_SLEEP_MIN_MS = 1;
const ERROR_SLEEP_MAX_MS = 5_000;

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new OutboxError('INVALID_CONFIG', `relay.${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/**
 * Resolves to what `promise` gives, or to `onTimeout()` after `ms`, whichever comes first; an
 * `onTimeout` that throws rejects.
 */
async function settleWithin<T>(promise: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (error) {
        reject(error);
      }
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Compiles `onDeadLetter` into a function of the destination; throws INVALID_CONFIG when malformed. */
function deadLetterPolicy(option: RelayOptions['onDeadLetter']): (destination: string) => DeadLetterPolicy {
  const valid = (p: unknown): p is DeadLetterPolicy => p === 'continue' || p === 'park';
  if (option === undefined) return () => 'continue';
  if (typeof option === 'string') {
    if (!valid(option))
      throw new OutboxError('INVALID_CONFIG', `relay.onDeadLetter must be 'continue' or 'park'`);
    return () => option;
  }
  const rules = Object.entries(option).map(([glob, policy]) => {
    if (!valid(policy) || glob === '') {
      throw new OutboxError(
        'INVALID_CONFIG',
        `relay.onDeadLetter["${glob}"] must be 'continue' or 'park' for a non-empty destination glob`,
      );
    }
    return { match: globToRegExp(glob), policy };
  });
  return (destination) => rules.find((r) => r.match.test(destination))?.policy ?? 'continue';
}

/** A claim's events, with the epoch of each partition it ran under and its number (claims count up). */
interface Claimed {
  readonly batch: readonly ClaimedEvent[];
  readonly epochs: ReadonlyMap<number, number>;
  readonly number: number;
}

/** A failed attempt waiting for its settle. */
interface Failure {
  readonly flight: Flight;
  readonly attempt: FailedAttempt;
  readonly dead: boolean;
}

/** Outcomes not settled yet, and what happened since the last report. */
interface Unsettled {
  published: Flight[];
  failed: Failure[];
  skipped: ClaimedEvent[];
  claimed: number;
}

const nothingUnsettled = (): Unsettled => ({ published: [], failed: [], skipped: [], claimed: 0 });

/** Messages in flight at once per destination (dispatch.ts). */
const WINDOW_PER_DESTINATION = 500;
/**
 * The most messages in one publish() call. Results come back per call: a publisher that acks
 * one by one behind a small in-flight limit (MQTT's Receive Maximum) frees its keys sooner in
 * smaller calls (2× the drain rate to Mosquitto at 128 vs 500), and pipelining publishers
 * (Redis, Kafka) lose little.
 */
const MESSAGES_PER_CALL = 128;

/**
 * The relay. Create it with `outbox.relay(options)`; `start()` runs it in the background,
 * `stop()` shuts it down gracefully; `runOnce()` processes one batch (tests, cron jobs).
 * Events: 'batch' (BatchReport, one per settle), 'error' (Error, also logged), 'lease'
 * (LeaseEvent), 'stopped'. Timings of each claim, publish() call and settle go to observers
 * (`observe()`: metrics, tracing); a relay with none takes no timestamps.
 */
export class Relay extends EventEmitter {
  readonly id: string;
  readonly #deps: RelayDependencies;
  readonly #o: Required<
    Omit<RelayOptions, 'backoff' | 'logger' | 'relayId' | 'onDeadLetter' | 'retention'>
  > & {
    backoff: BackoffOptions;
  };
  readonly #policy: (destination: string) => DeadLetterPolicy;
  readonly #log: Logger;
  readonly #leases: PartitionLeases;
  readonly #dispatcher: Dispatcher;
  /** Metrics, tracing, readiness: nothing is timed while there are none. */
  readonly #observers: Observers;
  readonly #cleanup: PublishedCleanup | undefined;
  #running: Promise<void> | undefined;
  #stopping = false;
  /** Set when the loop ends: from then on nothing more is sent (runOnce() is not affected by stop()). */
  #halting = false;
  #wakePending = false;
  #wake: (() => void) | undefined;
  #unlisten: (() => Promise<void>) | undefined;

  /** Claimed and not settled yet, by id: what claims leave out. */
  readonly #flights = new Map<string, Flight>();
  /** Per key, the events waiting for their turn; the first one is being published. */
  readonly #lanes = new Map<string, ClaimedEvent[]>();
  /** Lanes running, and who waits for none to run. */
  #activeLanes = 0;
  #onQuiet: (() => void)[] = [];
  /**
   * Keys whose lane ended before its events were all published, with the number of the first
   * claim that may be trusted for them again: a claim started earlier left those events out as in
   * flight and may hold the key's later ones. A failure blocks its key until its settle commits
   * (Infinity until then: the settle is what holds a retrying key back); a lane handed back
   * unsent (its lease not trusted for a moment, a give-back) blocks it from there on.
   */
  readonly #blocked = new Map<string, number>();
  /** Claims started so far. */
  #claimsStarted = 0;
  #unsettled = nothingUnsettled();
  #settling: Promise<void> | undefined;
  #settleRetry: NodeJS.Timeout | undefined;
  #settleErrorSleep = ERROR_SLEEP_MIN_MS;
  /** Partitions about to be given back: nothing more of them is sent or taken from claims. */
  readonly #leaving = new Set<number>();
  /** Who waits for the next settle or lane end. */
  #onProgress: (() => void)[] = [];

  constructor(deps: RelayDependencies, options: RelayOptions = {}) {
    super();
    this.#deps = deps;
    this.#log = options.logger ?? consoleLogger();
    const backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    positiveInt('backoff.baseMs', backoff.baseMs, 1);
    positiveInt('backoff.capMs', backoff.capMs, 1);
    const setting = (name: keyof typeof RELAY_DEFAULTS) =>
      positiveInt(name, options[name], RELAY_DEFAULTS[name]);
    this.#o = {
      batchSize: setting('batchSize'),
      maxAttempts: setting('maxAttempts'),
      pollIntervalMs: setting('pollIntervalMs'),
      leaseTtlMs: setting('leaseTtlMs'),
      historyLimit: setting('historyLimit'),
      shutdownTimeoutMs: setting('shutdownTimeoutMs'),
      publishTimeoutMs: setting('publishTimeoutMs'),
      backoff,
    };
    this.#policy = deadLetterPolicy(options.onDeadLetter);
    this.id = options.relayId ?? `${hostname()}:${process.pid}`;
    this.#cleanup =
      options.retention && new PublishedCleanup(deps.store, options.retention, this.#log, { relay: this.id });
    this.#leases = new PartitionLeases({
      store: deps.store,
      // Unique per Relay object: two processes sharing a configured relayId never share a lease.
      owner: `${this.id}:${uuidv7().slice(-12)}`,
      ttlMs: this.#o.leaseTtlMs,
      acquireEveryMs: this.#o.pollIntervalMs,
      log: this.#log,
      logFields: { relay: this.id },
      onChange: (event: LeaseEvent) => this.emit('lease', event),
      beforeGiveBack: (partitions) => this.#letGo(partitions),
    });
    this.#observers = new Observers(this.#log);
    const spans = producerSpans(); // only when @opentelemetry/api is installed
    if (spans) this.#observers.add(spans);
    this.#dispatcher = new Dispatcher({
      publishers: deps.publishers,
      router: deps.router,
      windowPerDestination: WINDOW_PER_DESTINATION,
      messagesPerCall: MESSAGES_PER_CALL,
      publishTimeoutMs: this.#o.publishTimeoutMs,
      mayPublish: (f) =>
        !this.#halting &&
        !this.#leaving.has(f.event.partition) &&
        this.#leases.trusts(f.event.partition, f.epoch),
      observers: this.#observers,
    });
  }

  /** Partitions this relay holds and trusts now. */
  get partitions(): number[] {
    return this.#leases.owned();
  }

  /** True from the end of start() until stop() begins. */
  get running(): boolean {
    return this.#running !== undefined && !this.#stopping;
  }

  /** The store it relays from (for health checks and metrics). */
  get store(): Store {
    return this.#deps.store;
  }

  /**
   * Tells `observer` of every claim, publish() call and settle from now on (see observer.ts);
   * returns the function that stops it.
   */
  observe(observer: RelayObserver): () => void {
    return this.#observers.add(observer);
  }

  /** Starts the loop in the background (idempotent). Errors go to the logger and 'error' events. */
  async start(): Promise<void> {
    if (this.#running && !this.#stopping) return;
    await this.#running; // a loop that a timed-out stop() left finishing its publishes
    this.#stopping = false;
    this.#halting = false;
    await this.#deps.store.checkSchema();
    if (this.#deps.store.listen && this.#deps.store.capabilities.listenNotify) {
      const listener = await this.#deps.store.listen(() => this.wake());
      this.#unlisten = () => listener.close();
    }
    const running = this.#loop().finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    this.#cleanup?.start();
  }

  /** Wakes the loop now (new events committed). */
  wake(): void {
    this.#wakePending = true;
    this.#wake?.();
  }

  /** Sends nothing more, waits for the publishes in flight, settles them, gives the leases back. Safe to call twice. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.wake();
    const budget = this.#o.shutdownTimeoutMs;
    const startedAt = Date.now();
    const running = this.#running;
    let finished = true;
    if (running) {
      finished = await settleWithin(
        running.then(() => true),
        budget,
        () => false,
      );
      if (!finished) {
        // A publish is still in flight. The loop keeps its leases (heartbeating) so that no other
        // relay publishes the same keys meanwhile, and gives them back the moment it ends.
        this.#log.warn(
          'relay.stop timed out waiting for the publishes in flight; the leases are released when they end',
          { relay: this.id },
        );
        void running.finally(() => this.#leases.releaseAll());
      }
    }
    const left = () => Math.max(budget - (Date.now() - startedAt), 1);
    const unlisten = this.#unlisten;
    this.#unlisten = undefined;
    await settleWithin(
      (unlisten?.() ?? Promise.resolve()).catch((e) =>
        this.#log.warn('closing LISTEN failed', { error: describeError(e) }),
      ),
      left(),
      () => undefined,
    );
    await settleWithin(this.#cleanup?.stop() ?? Promise.resolve(), left(), () => undefined);
    if (finished) await settleWithin(this.#leases.releaseAll(), left(), () => undefined);
    this.emit('stopped');
  }

  /**
   * Takes this relay's share of partitions if needed, then claims one batch, publishes it and
   * settles it. Not for a relay that was started: the loop does this itself.
   */
  async runOnce(): Promise<BatchReport> {
    await this.#leases.maintain(true);
    const partitions = this.#leases.owned();
    if (partitions.length === 0) {
      throw new OutboxError(
        'LEASE_HELD',
        'other relays hold every partition of the outbox; theirs are released when they stop, or expire',
      );
    }
    const claimed = await this.#claim(partitions);
    const reports: BatchReport[] = [];
    const collect = (report: BatchReport) => reports.push(report);
    this.on('batch', collect);
    try {
      this.#enqueue(claimed);
      await this.#quiet();
      await this.#settleAll(true);
    } finally {
      this.off('batch', collect);
    }
    return {
      claimed: claimed.batch.length,
      published: reports.flatMap((r) => r.published),
      retried: reports.flatMap((r) => r.retried),
      dead: reports.flatMap((r) => r.dead),
      settled: reports.every((r) => r.settled),
      fenced: reports.flatMap((r) => r.fenced),
      skipped: reports.flatMap((r) => r.skipped),
    };
  }

  /** Runs batches until none is due; returns totals. For tests and one-shot jobs. */
  async drain(): Promise<{ published: number; retried: number; dead: number }> {
    const totals = { published: 0, retried: 0, dead: 0 };
    try {
      for (;;) {
        const report = await this.runOnce();
        totals.published += report.published.length;
        totals.retried += report.retried.length;
        totals.dead += report.dead.length;
        if (report.claimed === 0 || !report.settled) return totals;
      }
    } finally {
      await this.#leases.releaseAll();
    }
  }

  async #loop(): Promise<void> {
    let errorSleep = ERROR_SLEEP_MIN_MS;
    let idleSleep = IDLE_SLEEP_MIN_MS;
    while (!this.#stopping) {
      try {
        await this.#leases.maintain();
        if (this.#stopping) break; // stop() came while we waited for the database
        const partitions = this.#leases.owned();
        if (partitions.length === 0) {
          // Every partition is held by other relays: commits must not make a standby hammer the
          // database, so only stop() wakes it; it looks for free partitions every poll interval.
          await this.#sleep(this.#o.pollIntervalMs, false);
          continue;
        }
        if (this.#flights.size >= this.#o.batchSize) {
          // A batch and more in flight: the next settle wakes the loop.
          await this.#sleep(this.#o.pollIntervalMs);
          continue;
        }
        const taken = this.#enqueue(await this.#claim(partitions));
        errorSleep = ERROR_SLEEP_MIN_MS;
        if (taken > 0) {
          idleSleep = IDLE_SLEEP_MIN_MS;
        } else {
          // Adaptive polling: right after traffic the next event is likely soon.
          await this.#sleep(idleSleep);
          idleSleep = Math.min(idleSleep * 2, this.#o.pollIntervalMs);
        }
      } catch (error) {
        this.#loopFailed(error);
        await this.#sleep(errorSleep);
        errorSleep = Math.min(errorSleep * 2, ERROR_SLEEP_MAX_MS);
      }
    }
    this.#halting = true;
    await this.#quiet();
    await this.#settleAll(false);
  }

  #loopFailed(error: unknown): void {
    this.#log.error('relay loop failed; retrying', { relay: this.id, error: describeError(error) });
    // EventEmitter throws an 'error' nobody listens to: that must not end the loop.
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /** Sleeps up to `ms`, waking early for stop() and, when `wakeable`, for wake() (also one already pending). */
  #sleep(ms: number, wakeable = true): Promise<void> {
    if (this.#stopping || (wakeable && this.#wakePending)) {
      if (wakeable) this.#wakePending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        if (wakeable) this.#wakePending = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = () => {
        if (wakeable || this.#stopping) done();
      };
    });
  }

  /** Claims up to a batch of `partitions`' events, leaving out the events in flight. */
  async #claim(partitions: readonly number[]): Promise<Claimed> {
    // The epoch each partition is claimed under: the fence of its events' settle.
    const epochs = new Map<number, number>();
    for (const partition of partitions) epochs.set(partition, this.#leases.epochOf(partition)!);
    const number = this.#claimsStarted++;
    const inFlight = [...this.#flights.values()].map((f) => f.event);
    const timed = this.#observers.active;
    const startedAt = timed ? performance.now() : 0;
    const batch = await this.#deps.store.claim(partitions, this.#o.batchSize, inFlight);
    if (timed) this.#observers.claimed(batch.length, performance.now() - startedAt);
    await failpoint('relay.after-claim');
    return { batch, epochs, number };
  }

  /** Puts a claim's events in their keys' lanes; returns how many it took. */
  #enqueue(claimed: Claimed): number {
    let taken = 0;
    for (const event of claimed.batch) {
      const blockedUntil = this.#blocked.get(event.key);
      if (blockedUntil !== undefined && claimed.number < blockedUntil) continue;
      const epoch = claimed.epochs.get(event.partition)!;
      // Given back or lost since the claim began: its next owner publishes it.
      if (!this.#leases.trusts(event.partition, epoch) || this.#leaving.has(event.partition)) continue;
      if (this.#flights.has(event.id)) continue;
      this.#flights.set(event.id, { event, epoch });
      taken++;
      const lane = this.#lanes.get(event.key);
      if (lane) {
        lane.push(event);
      } else {
        const fresh = [event];
        this.#lanes.set(event.key, fresh);
        void this.#runLane(event.key, fresh);
      }
    }
    this.#unsettled.claimed += taken;
    // Claims run one at a time: the next one is numbered #claimsStarted or later.
    for (const [key, until] of this.#blocked) if (until <= this.#claimsStarted) this.#blocked.delete(key);
    return taken;
  }

  /** Publishes a key's events one after another until its lane is empty, a failure, or stop(). */
  async #runLane(key: string, lane: ClaimedEvent[]): Promise<void> {
    this.#activeLanes++;
    try {
      while (lane.length > 0) {
        const flight = this.#flights.get(lane[0]!.id)!;
        const outcome = await this.#dispatcher.send(flight);
        if (outcome.kind === 'published') {
          lane.shift();
          this.#unsettled.published.push(flight);
          this.#settleSoon();
          continue;
        }
        if (outcome.kind === 'failed') {
          lane.shift();
          const { attempt, deadLetter } = this.#failure(flight.event, outcome.error);
          this.#unsettled.failed.push({ flight, attempt, dead: deadLetter });
          this.#blocked.set(key, Number.POSITIVE_INFINITY);
          this.#settleSoon();
        } else {
          this.#unsettled.skipped.push(...lane);
          if (this.#blocked.get(key) !== Number.POSITIVE_INFINITY)
            this.#blocked.set(key, this.#claimsStarted);
        }
        // The rest of the key stays pending, untouched, for a later claim.
        for (const event of lane) this.#flights.delete(event.id);
        lane.length = 0;
      }
    } finally {
      this.#lanes.delete(key);
      if (--this.#activeLanes === 0) for (const resolve of this.#onQuiet.splice(0)) resolve();
      this.#progressed();
    }
  }

  #progressed(): void {
    for (const resolve of this.#onProgress.splice(0)) resolve();
  }

  /**
   * Before partitions are given back: sends nothing more of them and waits until what was sent
   * is settled, so their next owner does not publish it again. Gives up after half a lease TTL
   * (a settle that keeps failing): then the next owner does publish those events again.
   */
  async #letGo(partitions: readonly number[]): Promise<void> {
    for (const p of partitions) this.#leaving.add(p);
    const deadline = performance.now() + this.#o.leaseTtlMs / 2;
    try {
      const inFlight = () => [...this.#flights.values()].some((f) => this.#leaving.has(f.event.partition));
      while (inFlight() && performance.now() < deadline) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 50);
          this.#onProgress.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    } finally {
      for (const p of partitions) this.#leaving.delete(p);
    }
  }

  /** Resolves when no lane runs (every event claimed has an outcome). */
  #quiet(): Promise<void> {
    if (this.#activeLanes === 0) return Promise.resolve();
    return new Promise((resolve) => this.#onQuiet.push(resolve));
  }

  /** Starts a settle of what is unsettled, unless one is running (it starts the next when it ends). */
  #settleSoon(): void {
    if (this.#settling || this.#settleRetry) return;
    const settling = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#settle())
      .catch((error: unknown) => {
        this.#loopFailed(error);
        this.#settleRetry = setTimeout(() => {
          this.#settleRetry = undefined;
          this.#settleSoon();
        }, this.#settleErrorSleep).unref();
        this.#settleErrorSleep = Math.min(this.#settleErrorSleep * 2, ERROR_SLEEP_MAX_MS);
      })
      .finally(() => {
        this.#settling = undefined;
        if (this.#hasUnsettled()) this.#settleSoon();
      });
    this.#settling = settling;
  }

  #hasUnsettled(): boolean {
    const u = this.#unsettled;
    return u.published.length > 0 || u.failed.length > 0 || u.skipped.length > 0;
  }

  /**
   * Settles everything unsettled, after the settle in flight. `retry`: a failing settle throws
   * (runOnce) rather than being given up on (the loop's last settle at stop: the events stay
   * pending and their next owner publishes them again).
   */
  async #settleAll(retry: boolean): Promise<void> {
    clearTimeout(this.#settleRetry);
    this.#settleRetry = undefined;
    while (this.#settling) await this.#settling;
    clearTimeout(this.#settleRetry);
    this.#settleRetry = undefined;
    if (!this.#hasUnsettled()) return;
    try {
      await this.#settle();
    } catch (error) {
      if (retry) throw error;
      this.#log.warn('the last settle failed; its events stay pending and are published again', {
        relay: this.id,
        error: describeError(error),
      });
    }
  }

  /** Writes the outcomes gathered so far in one statement, fenced by their leases' epochs. */
  async #settle(): Promise<void> {
    const taken = this.#unsettled;
    this.#unsettled = nothingUnsettled();
    const attempted = [...taken.published, ...taken.failed.map((f) => f.flight)];
    // Outcomes claimed under a lease this relay no longer holds at that epoch (a settle that was
    // retried across a lost lease) are not written: their events are published again in order.
    const current = (f: Flight) => this.#leases.epochOf(f.event.partition) === f.epoch;
    const written = new Set(attempted.filter(current));
    const fence = new Map<number, number>();
    for (const f of written) fence.set(f.event.partition, f.epoch);
    let fencedOut = new Set<number>();
    let settleMs: number | undefined;
    if (fence.size > 0) {
      try {
        await failpoint('relay.after-publish');
        const timed = this.#observers.active;
        const startedAt = timed ? performance.now() : 0;
        const result = await this.#deps.store.settle(
          {
            published: taken.published.filter((f) => written.has(f)).map((f) => f.event.id),
            retry: taken.failed.filter((f) => !f.dead && written.has(f.flight)).map((f) => f.attempt),
            dead: taken.failed.filter((f) => f.dead && written.has(f.flight)).map((f) => f.attempt),
          },
          {
            owner: this.#leases.owner,
            leases: [...fence].map(([partition, epoch]) => ({ partition, epoch })),
          },
        );
        if (timed) settleMs = performance.now() - startedAt;
        fencedOut = new Set(result.fenced);
      } catch (error) {
        // Nothing was written: the outcomes wait for the next settle, their events stay in flight.
        this.#unsettled = {
          published: [...taken.published, ...this.#unsettled.published],
          failed: [...taken.failed, ...this.#unsettled.failed],
          skipped: [...taken.skipped, ...this.#unsettled.skipped],
          claimed: taken.claimed + this.#unsettled.claimed,
        };
        throw error;
      }
      this.#settleErrorSleep = ERROR_SLEEP_MIN_MS;
      if (fencedOut.size > 0) this.#leases.lose([...fencedOut], 'settle fenced: another relay took over');
    }
    const recorded = (f: Flight) => written.has(f) && !fencedOut.has(f.event.partition);
    for (const f of attempted) this.#flights.delete(f.event.id);
    for (const { flight } of taken.failed) {
      // Written: claims from now on see the key held back (or, dead and 'continue', moving on).
      // Not written: the event is pending as before and publishes again in order.
      this.#blocked.set(flight.event.key, this.#claimsStarted);
    }
    await failpoint('relay.after-settle');
    const retried = taken.failed.filter((f) => !f.dead && recorded(f.flight));
    const deadLetters = taken.failed.filter((f) => f.dead && recorded(f.flight));
    const report: BatchReport = {
      claimed: taken.claimed,
      published: taken.published.filter(recorded).map((f) => f.event),
      retried: retried.map((f) => f.attempt),
      dead: deadLetters.map((f) => f.attempt),
      settled: attempted.every(recorded),
      fenced: attempted.filter((f) => !recorded(f)).map((f) => f.event),
      skipped: taken.skipped,
    };
    for (const { flight, attempt } of deadLetters) {
      this.#log.warn('event dead-lettered', {
        relay: this.id,
        id: attempt.id,
        type: flight.event.type,
        destination: flight.event.destination,
        attempts: attempt.attempts,
        error: attempt.error,
        parked: attempt.park === true,
      });
    }
    if (report.fenced.length > 0) {
      this.#log.warn('settle fenced: outcomes not recorded, the new owner publishes them again', {
        relay: this.id,
        events: report.fenced.length,
        partitions: [...fencedOut],
      });
    }
    if (this.#observers.active) {
      this.#observers.settled({
        durationMs: settleMs,
        published: report.published,
        retried: retried.map((f) => f.flight.event),
        dead: deadLetters.map((f) => f.flight.event),
      });
    }
    this.wake(); // room in flight: the loop may claim again
    this.#progressed();
    this.emit('batch', report);
  }

  /** The failed attempt to record, and whether it dead-letters the event (permanent, or out of attempts). */
  #failure(event: ClaimedEvent, error: unknown): { attempt: FailedAttempt; deadLetter: boolean } {
    const attempts = event.attempts + 1;
    const text = describeError(error);
    const record: AttemptRecord = { at: new Date().toISOString(), error: text, relay: this.id };
    const history = [...event.history, record].slice(-this.#o.historyLimit);
    const permanent = error instanceof PublishError && !error.retryable;
    if (permanent || attempts >= this.#o.maxAttempts) {
      const park = this.#policy(event.destination) === 'park';
      return {
        attempt: { id: event.id, attempts, error: text, history, delayMs: 0, park },
        deadLetter: true,
      };
    }
    const retryAfterMs = error instanceof PublishError ? (error.retryAfterMs ?? 0) : 0;
    const delayMs = backoffDelayMs(attempts, this.#o.backoff, retryAfterMs);
    return { attempt: { id: event.id, attempts, error: text, history, delayMs }, deadLetter: false };
  }
}
