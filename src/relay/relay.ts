/**
 * The relay: moves committed events from the outbox table to the brokers.
 *
 *   ┌──────────────────┐ partitions ┌───────┐ events ┌─────────────────────┐        ┌────────┐
 *   │ heartbeat, take  │───────────▶│ claim │───────▶│ publish, key rounds │───────▶│ settle │──┐
 *   │ or give back     │◀─┐         └───────┘        └─────────────────────┘        └────────┘  │
 *   │ partition leases │  │             │ none due                                              │
 *   └──────────────────┘  │             ▼                                                       │
 *                         └──── sleep 1, 2, 4 … ms up to pollIntervalMs (a wake-up cuts it) ◀─┘
 *                                              (no sleep while claims return events)
 *
 * - Relays share the outbox through partition leases (lease.ts): partition = key hash mod P, each
 *   worked by one relay at a time, each relay holding its fair share. Every settle is fenced by
 *   the epochs of the leases the batch was claimed under, and before each round the relay checks
 *   that it still trusts each event's lease: a relay that lost a partition publishes nothing more
 *   of it and writes nothing for it.
 * - Claim is by status: due pending events of owned partitions in insertion order, minus any key
 *   held back by an earlier event that is retrying, delayed or parked. Nothing is marked at claim,
 *   so a relay that dies leaves its events pending: the next owner publishes them again.
 * - Where the store allows it (PostgreSQL), the next batch is claimed while the current one is
 *   published and settled. That claim leaves out the events in flight, and the keys the current
 *   batch did not finish (a failure, a skip) are dropped from it: they wait for what the settle
 *   records.
 * - A batch is published in rounds: round r holds the r-th event of every key, so a key's next
 *   event goes out only after its previous one was delivered; keys are concurrent. A failure
 *   stops its key for this batch (later events of that key stay pending, untouched).
 * - Outcomes are settled in one statement: delivered → deleted (or kept, with retention);
 *   failed → attempts+1 and the next attempt after exponential backoff with full jitter;
 *   out of attempts, or a PermanentError → dead-lettered with its attempt history, and with policy
 *   'park' for its destination the dead letter keeps holding its key back until an operator acts.
 * - stop(): finishes the round in flight, settles it, gives every lease back and resolves.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { type BackoffOptions, backoffDelayMs, DEFAULT_BACKOFF } from '../core/backoff.js';
import { describeError, OutboxError, PublishError } from '../core/errors.js';
import { failpoint } from '../core/failpoints.js';
import { uuidv7 } from '../core/ids.js';
import type {
  AttemptRecord,
  ClaimedEvent,
  FailedAttempt,
  OutboundMessage,
  Publisher,
  PublishResult,
  Store,
} from '../core/ports.js';
import { globToRegExp, type Router } from '../core/routes.js';
import { type LeaseEvent, PartitionLeases } from './lease.js';
import { consoleLogger, type Logger } from './logger.js';

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
/** A claimed batch with the lease epoch of each partition it was claimed under. */
interface Claimed {
  readonly batch: readonly ClaimedEvent[];
  readonly epochs: ReadonlyMap<number, number>;
  /** Events the store returned (some may since have been left out). */
  readonly found: number;
}

/**
 * The batch claimed ahead, once the batch before it is done: without the keys that batch did not
 * finish (a failure, a skip, a fenced settle). Their later events must wait for what the settle
 * recorded (a retry holds the key back), so they are left pending for a later claim.
 */
function afterBatch(next: Claimed, batch: readonly ClaimedEvent[], report: BatchReport): Claimed {
  const done = new Set(report.published.map((e) => e.id));
  const unfinished = new Set(batch.filter((e) => !done.has(e.id)).map((e) => e.key));
  if (unfinished.size === 0) return next;
  return { ...next, batch: next.batch.filter((e) => !unfinished.has(e.key)) };
}

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

/**
 * The relay. Create it with `outbox.relay(options)`; `start()` runs it in the background,
 * `stop()` shuts it down gracefully; `runOnce()` processes one batch (tests, cron jobs).
 * Events: 'batch' (BatchReport), 'error' (Error, also logged), 'lease' (LeaseEvent), 'stopped'.
 */
export class Relay extends EventEmitter {
  readonly id: string;
  readonly #deps: RelayDependencies;
  readonly #o: Required<Omit<RelayOptions, 'backoff' | 'logger' | 'relayId' | 'onDeadLetter'>> & {
    backoff: BackoffOptions;
  };
  readonly #policy: (destination: string) => DeadLetterPolicy;
  readonly #log: Logger;
  readonly #leases: PartitionLeases;
  #running: Promise<void> | undefined;
  #stopping = false;
  #wakePending = false;
  #wake: (() => void) | undefined;
  #unlisten: (() => Promise<void>) | undefined;

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
    this.#leases = new PartitionLeases({
      store: deps.store,
      // Unique per Relay object: two processes sharing a configured relayId never share a lease.
      owner: `${this.id}:${uuidv7().slice(-12)}`,
      ttlMs: this.#o.leaseTtlMs,
      acquireEveryMs: this.#o.pollIntervalMs,
      log: this.#log,
      logFields: { relay: this.id },
      onChange: (event: LeaseEvent) => this.emit('lease', event),
    });
  }

  /** Partitions this relay holds and trusts now. */
  get partitions(): number[] {
    return this.#leases.owned();
  }

  /** Starts the loop in the background (idempotent). Errors go to the logger and 'error' events. */
  async start(): Promise<void> {
    if (this.#running && !this.#stopping) return;
    await this.#running; // a loop that a timed-out stop() left finishing its round
    this.#stopping = false;
    await this.#deps.store.checkSchema();
    if (this.#deps.store.listen && this.#deps.store.capabilities.listenNotify) {
      const listener = await this.#deps.store.listen(() => this.wake());
      this.#unlisten = () => listener.close();
    }
    const running = this.#loop().finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
  }

  /** Wakes the loop now (new events committed). */
  wake(): void {
    this.#wakePending = true;
    this.#wake?.();
  }

  /** Finishes the round in flight, settles it, gives the leases back. Safe to call twice. */
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
        // A round is still publishing. The loop keeps its leases (heartbeating) so that no other
        // relay publishes the same keys meanwhile, and gives them back the moment it ends.
        this.#log.warn(
          'relay.stop timed out waiting for the batch in flight; the leases are released when it ends',
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
    if (finished) await settleWithin(this.#leases.releaseAll(), left(), () => undefined);
    this.emit('stopped');
  }

  /** Takes this relay's share of partitions if needed, then claims, publishes and settles one batch. */
  async runOnce(): Promise<BatchReport> {
    await this.#leases.maintain(true);
    const partitions = this.#leases.owned();
    if (partitions.length === 0) {
      throw new OutboxError(
        'LEASE_HELD',
        'other relays hold every partition of the outbox; theirs are released when they stop, or expire',
      );
    }
    return this.#claimAndProcess(partitions);
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
    // The next batch, claimed while the current one is published and settled.
    let ahead: Promise<Claimed | { error: unknown }> | undefined;
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
        const claimed = ahead ? await this.#takeAhead(ahead) : await this.#claim(partitions);
        ahead = undefined;
        if (claimed.batch.length > 0) {
          if (this.#deps.store.capabilities.claimAhead) {
            ahead = this.#claim(partitions, claimed.batch).catch((error: unknown) => ({ error }));
          }
          const report = await this.#process(claimed.batch, claimed.epochs);
          if (ahead)
            ahead = ahead.then((next) => ('error' in next ? next : afterBatch(next, claimed.batch, report)));
        }
        errorSleep = ERROR_SLEEP_MIN_MS;
        if (claimed.found > 0) {
          idleSleep = IDLE_SLEEP_MIN_MS;
        } else {
          // Adaptive polling: right after traffic the next event is likely soon.
          await this.#sleep(idleSleep);
          idleSleep = Math.min(idleSleep * 2, this.#o.pollIntervalMs);
        }
      } catch (error) {
        // A batch that did not finish leaves its keys' order unknown to the claim ahead: drop it.
        ahead = undefined;
        this.#log.error('relay loop failed; retrying', { relay: this.id, error: describeError(error) });
        // EventEmitter throws an 'error' nobody listens to: that must not end the loop.
        if (this.listenerCount('error') > 0) this.emit('error', error);
        await this.#sleep(errorSleep);
        errorSleep = Math.min(errorSleep * 2, ERROR_SLEEP_MAX_MS);
      }
    }
    await ahead; // its events stay pending; the query must not outlive the loop
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

  /** Claims a batch of `partitions` and processes it (an empty batch reports nothing). */
  async #claimAndProcess(partitions: readonly number[]): Promise<BatchReport> {
    const { batch, epochs } = await this.#claim(partitions);
    if (batch.length === 0) {
      return { claimed: 0, published: [], retried: [], dead: [], settled: true, fenced: [], skipped: [] };
    }
    return this.#process(batch, epochs);
  }

  /** Claims a batch of `partitions`, leaving out `inFlight` (the batch being published). */
  async #claim(partitions: readonly number[], inFlight: readonly ClaimedEvent[] = []): Promise<Claimed> {
    // The epoch each partition is claimed under: the fence of this batch's settle.
    const epochs = new Map<number, number>();
    for (const partition of partitions) epochs.set(partition, this.#leases.epochOf(partition)!);
    const batch = await this.#deps.store.claim(partitions, this.#o.batchSize, inFlight);
    return { batch, epochs, found: batch.length };
  }

  /**
   * The batch claimed ahead, without the events of partitions given back or lost since (their
   * next owner publishes them).
   */
  async #takeAhead(ahead: Promise<Claimed | { error: unknown }>): Promise<Claimed> {
    const claimed = await ahead;
    if ('error' in claimed) throw claimed.error;
    const batch = claimed.batch.filter((e) =>
      this.#leases.trusts(e.partition, claimed.epochs.get(e.partition)!),
    );
    return { ...claimed, batch };
  }

  async #process(batch: readonly ClaimedEvent[], epochs: ReadonlyMap<number, number>): Promise<BatchReport> {
    await failpoint('relay.after-claim');
    const lanes = new Map<string, ClaimedEvent[]>();
    for (const event of batch) {
      const lane = lanes.get(event.key);
      if (lane) lane.push(event);
      else lanes.set(event.key, [event]);
    }
    const published: ClaimedEvent[] = [];
    const retried: FailedAttempt[] = [];
    const dead: FailedAttempt[] = [];
    const skipped: ClaimedEvent[] = [];
    let round = [...lanes.values()].map((lane) => lane[0]!);
    for (let r = 1; round.length > 0; r++) {
      await failpoint('relay.before-publish');
      // Checked before every round, right before the publish: a partition whose lease can no
      // longer be trusted is left alone from here on (its next owner publishes what remains).
      const trusted: ClaimedEvent[] = [];
      for (const event of round) {
        const epoch = epochs.get(event.partition);
        if (epoch !== undefined && this.#leases.trusts(event.partition, epoch)) trusted.push(event);
        else skipped.push(...lanes.get(event.key)!.slice(r - 1));
      }
      if (trusted.length === 0) break;
      const results = await this.#publishRound(trusted);
      const next: ClaimedEvent[] = [];
      trusted.forEach((event, i) => {
        const result = results[i]!;
        if (result.ok) {
          published.push(event);
          const following = lanes.get(event.key)![r];
          if (following) next.push(following);
        } else {
          const { attempt, deadLetter } = this.#failure(event, result.error);
          (deadLetter ? dead : retried).push(attempt);
        }
      });
      if (this.#stopping) break; // shutting down: settle what is done
      round = next;
    }
    await failpoint('relay.after-publish');
    const byId = new Map(batch.map((e) => [e.id, e]));
    const attempted = [...published, ...[...retried, ...dead].map((f) => byId.get(f.id)!)];
    let fencedOut = new Set<number>();
    if (attempted.length > 0) {
      const partitions = new Set(attempted.map((e) => e.partition));
      const result = await this.#deps.store.settle(
        { published: published.map((e) => e.id), retry: retried, dead },
        {
          owner: this.#leases.owner,
          leases: [...partitions].map((partition) => ({ partition, epoch: epochs.get(partition)! })),
        },
      );
      fencedOut = new Set(result.fenced);
      if (fencedOut.size > 0) this.#leases.lose([...fencedOut], 'settle fenced: another relay took over');
    }
    await failpoint('relay.after-settle');
    const recorded = (id: string) => !fencedOut.has(byId.get(id)!.partition);
    const report: BatchReport = {
      claimed: batch.length,
      published: published.filter((e) => recorded(e.id)),
      retried: retried.filter((f) => recorded(f.id)),
      dead: dead.filter((f) => recorded(f.id)),
      settled: fencedOut.size === 0,
      fenced: attempted.filter((e) => fencedOut.has(e.partition)),
      skipped,
    };
    for (const d of report.dead) {
      this.#log.warn('event dead-lettered', {
        relay: this.id,
        id: d.id,
        error: d.error,
        parked: d.park === true,
      });
    }
    if (report.fenced.length > 0) {
      this.#log.warn('settle fenced: outcomes not recorded, the new owner publishes them again', {
        relay: this.id,
        events: report.fenced.length,
        partitions: [...fencedOut],
      });
    }
    this.emit('batch', report);
    return report;
  }

  /** Publishes events with distinct keys, grouped by publisher; one result per event, in order. */
  async #publishRound(round: readonly ClaimedEvent[]): Promise<PublishResult[]> {
    const results: PublishResult[] = new Array(round.length);
    const groups = new Map<Publisher, { indexes: number[]; messages: OutboundMessage[] }>();
    round.forEach((event, i) => {
      const name = this.#deps.router.publisherFor(event.type, event.aggregateType);
      const publisher = name === undefined ? undefined : this.#deps.publishers.get(name);
      if (!publisher) {
        const why =
          name === undefined
            ? `no route takes type "${event.type}"`
            : `publisher "${name}" is not configured`;
        results[i] = { ok: false, error: new OutboxError('PUBLISHER_NOT_FOUND', why) };
        return;
      }
      let group = groups.get(publisher);
      if (!group) {
        group = { indexes: [], messages: [] };
        groups.set(publisher, group);
      }
      group.indexes.push(i);
      group.messages.push({
        id: event.id,
        key: event.key,
        type: event.type,
        destination: event.destination,
        aggregateType: event.aggregateType,
        aggregateId: event.aggregateId,
        payload: event.payload,
        headers: event.headers,
        createdAt: event.createdAt,
        attempt: event.attempts + 1,
      });
    });
    await Promise.all(
      [...groups].map(async ([publisher, { indexes, messages }]) => {
        let outcome: PublishResult[];
        try {
          // A backstop: a publish() that never settles must not hold every key forever.
          const limit = this.#o.publishTimeoutMs;
          outcome = await settleWithin(publisher.publish(messages), limit, () => {
            throw new PublishError(`publisher "${publisher.kind}" did not answer within ${limit} ms`);
          });
          if (outcome.length !== messages.length)
            throw new Error(
              `publisher "${publisher.kind}" returned ${outcome.length} results for ${messages.length} messages`,
            );
        } catch (error) {
          outcome = messages.map(() => ({ ok: false, error }));
        }
        indexes.forEach((index, j) => {
          results[index] = outcome[j]!;
        });
      }),
    );
    return results;
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
