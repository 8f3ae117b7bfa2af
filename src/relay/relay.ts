/**
 * The relay: moves committed events from the outbox table to the brokers.
 *
 *   ┌────────────┐ lease held ┌───────┐ events ┌─────────────────────┐        ┌────────┐
 *   │ acquire    │───────────▶│ claim │───────▶│ publish, key rounds │───────▶│ settle │──┐
 *   │ lease      │◀─┐         └───────┘        └─────────────────────┘        └────────┘  │
 *   └────────────┘  │ lost        │ none due                                              │
 *                   │             ▼                                                       │
 *                   └──────── sleep until NOTIFY, a local add() or pollIntervalMs ◀───────┘
 *                                                  (no sleep while batches come back full)
 *
 * - One relay owns the outbox at a time through a lease row with an epoch (lease.ts); every settle is
 *   fenced by it, and the lease is renewed in the background while a batch is in flight.
 * - Claim is by status: due pending events in insertion order, minus any key held back by an
 *   earlier event that is retrying or delayed. Nothing is marked at claim, so a relay that dies
 *   leaves its events pending: the next owner publishes them again (at least once).
 * - A batch is published in rounds: round r holds the r-th event of every key, so a key's next
 *   event goes out only after its previous one was delivered; keys are concurrent. A failure
 *   stops its key for this batch (later events of that key stay pending, untouched).
 * - Outcomes are settled in one statement: delivered → deleted (or kept, with retention);
 *   failed → attempts+1 and the next attempt after exponential backoff with full jitter;
 *   out of attempts, or a PermanentError → dead-lettered with its attempt history.
 * - stop(): finishes the round in flight, settles it, releases the lease and resolves.
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
import type { Router } from '../core/routes.js';
import { LeaseHolder } from './lease.js';
import { consoleLogger, type Logger } from './logger.js';

export interface RelayOptions {
  /** Events claimed per batch (default 500). */
  readonly batchSize?: number;
  /** Attempts before an event is dead-lettered (default 10). */
  readonly maxAttempts?: number;
  /** Retry schedule (default base 500 ms, cap 60 s, full jitter). */
  readonly backoff?: Partial<BackoffOptions>;
  /** Longest sleep when idle; NOTIFY and local adds wake the relay sooner (default 250 ms). */
  readonly pollIntervalMs?: number;
  /** Lease time-to-live; a relay that stops renewing loses the outbox after this (default 10 s). */
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
}

export const RELAY_DEFAULTS = Object.freeze({
  batchSize: 500,
  maxAttempts: 10,
  pollIntervalMs: 250,
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
  /** False when the lease was lost before settling: nothing was recorded, the next owner redoes it. */
  readonly settled: boolean;
}

export interface RelayDependencies {
  readonly store: Store;
  readonly publishers: ReadonlyMap<string, Publisher>;
  readonly router: Router;
}

const ERROR_SLEEP_MIN_MS = 100;
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

/**
 * The relay. Create it with `outbox.relay(options)`; `start()` runs it in the background,
 * `stop()` shuts it down gracefully; `runOnce()` processes one batch (tests, cron jobs).
 * Events: 'batch' (BatchReport), 'error' (Error, also logged), 'lease' ('acquired' | 'lost' | 'released').
 */
export class Relay extends EventEmitter {
  readonly id: string;
  readonly #deps: RelayDependencies;
  readonly #o: Required<Omit<RelayOptions, 'backoff' | 'logger' | 'relayId'>> & { backoff: BackoffOptions };
  readonly #log: Logger;
  readonly #lease: LeaseHolder;
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
    this.id = options.relayId ?? `${hostname()}:${process.pid}`;
    this.#lease = new LeaseHolder({
      store: deps.store,
      // Unique per Relay object: two processes sharing a configured relayId never share a lease.
      owner: `${this.id}:${uuidv7().slice(-12)}`,
      ttlMs: this.#o.leaseTtlMs,
      log: this.#log,
      logFields: { relay: this.id },
      onChange: (change) => this.emit('lease', change),
    });
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

  /** Finishes the round in flight, settles it, releases the lease. Safe to call twice. */
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
        // A round is still publishing. The loop keeps the lease (renewed) so that no other relay
        // publishes the same keys meanwhile, and gives it back the moment it ends.
        this.#log.warn(
          'relay.stop timed out waiting for the batch in flight; the lease is released when it ends',
          {
            relay: this.id,
          },
        );
        void running.finally(() => this.#lease.release());
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
    if (finished) await settleWithin(this.#lease.release(), left(), () => undefined);
    this.emit('stopped');
  }

  /** Acquires the lease if needed, then claims, publishes and settles one batch. */
  async runOnce(): Promise<BatchReport> {
    if (!(await this.#lease.hold())) {
      throw new OutboxError(
        'LEASE_HELD',
        'another relay holds the outbox lease; it is released when that relay stops, or expires',
      );
    }
    const batch = await this.#deps.store.claim(this.#o.batchSize);
    return this.#process(batch);
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
      await this.#lease.release();
    }
  }

  async #loop(): Promise<void> {
    let errorSleep = ERROR_SLEEP_MIN_MS;
    while (!this.#stopping) {
      try {
        const held = await this.#lease.hold();
        if (this.#stopping) break; // stop() came while we waited for the database
        if (!held) {
          // A standby: commits must not make it hammer the lease row, so only stop() wakes it.
          await this.#sleep(Math.max(this.#o.leaseTtlMs / 4, this.#o.pollIntervalMs), false);
          continue;
        }
        const batch = await this.#deps.store.claim(this.#o.batchSize);
        if (batch.length > 0) await this.#process(batch);
        errorSleep = ERROR_SLEEP_MIN_MS;
        if (batch.length < this.#o.batchSize) await this.#sleep(this.#o.pollIntervalMs);
      } catch (error) {
        this.#log.error('relay loop failed; retrying', { relay: this.id, error: describeError(error) });
        // EventEmitter throws an 'error' nobody listens to: that must not end the loop.
        if (this.listenerCount('error') > 0) this.emit('error', error);
        await this.#sleep(errorSleep);
        errorSleep = Math.min(errorSleep * 2, ERROR_SLEEP_MAX_MS);
      }
    }
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

  async #process(batch: readonly ClaimedEvent[]): Promise<BatchReport> {
    await failpoint('relay.after-claim');
    const lease = this.#lease.token;
    // The background renewal may have lost the lease while claim() ran: publish nothing then.
    if (!lease) return { claimed: batch.length, published: [], retried: [], dead: [], settled: false };
    const lanes = new Map<string, ClaimedEvent[]>();
    for (const event of batch) {
      const lane = lanes.get(event.key);
      if (lane) lane.push(event);
      else lanes.set(event.key, [event]);
    }
    const published: ClaimedEvent[] = [];
    const retried: FailedAttempt[] = [];
    const dead: FailedAttempt[] = [];
    let round = [...lanes.values()].map((lane) => lane[0]!);
    for (let r = 1; round.length > 0; r++) {
      const results = await this.#publishRound(round);
      const next: ClaimedEvent[] = [];
      round.forEach((event, i) => {
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
      // Stop between rounds when shutting down, or when the lease can no longer be trusted.
      if (this.#stopping || !this.#lease.trusted) break;
      round = next;
    }
    await failpoint('relay.after-publish');
    let settled = false;
    if (published.length + retried.length + dead.length > 0) {
      const result = await this.#deps.store.settle(
        { published: published.map((e) => e.id), retry: retried, dead },
        lease,
      );
      settled = result.applied;
      if (!settled && this.#lease.token === lease)
        this.#lease.lose('settle fenced: another relay took the lease');
    }
    await failpoint('relay.after-settle');
    const report: BatchReport = { claimed: batch.length, published, retried, dead, settled };
    if (dead.length > 0 && settled) {
      for (const d of dead)
        this.#log.warn('event dead-lettered', { relay: this.id, id: d.id, error: d.error });
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
      return { attempt: { id: event.id, attempts, error: text, history, delayMs: 0 }, deadLetter: true };
    }
    const retryAfterMs = error instanceof PublishError ? (error.retryAfterMs ?? 0) : 0;
    const delayMs = backoffDelayMs(attempts, this.#o.backoff, retryAfterMs);
    return { attempt: { id: event.id, attempts, error: text, history, delayMs }, deadLetter: false };
  }
}
