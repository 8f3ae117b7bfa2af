/**
 * Readiness of a relay, for `/readyz` (docs/observability.md). Ready means all of:
 *
 * - the relay is running (start() done, stop() not begun);
 * - the database answers: `store.checkSchema()` within `databaseTimeoutMs` (it also fails when the
 *   schema and the code disagree), asked at most once a second however often probes come;
 * - no publisher is unreachable: one whose every publish has failed with a retryable error for
 *   `brokerFailingMs` and more. Brokers are judged from the relay's own publishes, which costs
 *   nothing; a publisher with nothing to send is not judged;
 * - leases: holding partitions ("active") and holding none because other relays hold them all
 *   ("standby") are both ready.
 *
 * Going unreachable and back is logged once each way.
 */
import { performance } from 'node:perf_hooks';
import { describeError, PublishError } from '../core/errors.js';
import type { Store } from '../core/ports.js';
import type { Logger } from '../relay/logger.js';
import type { PublishCall, RelayObserver } from '../relay/observer.js';

export interface ReadinessOptions {
  /** How long the database may take to answer (default 2000 ms). */
  readonly databaseTimeoutMs?: number;
  /** How long every publish to a publisher must have failed before it counts as unreachable (default 30000 ms). */
  readonly brokerFailingMs?: number;
}

export const READINESS_DEFAULTS = Object.freeze({ databaseTimeoutMs: 2_000, brokerFailingMs: 30_000 });

/** A database answer is reused this long: a probe storm does not become a query storm. */
const DATABASE_CHECK_REUSE_MS = 1_000;

/** What readiness reads from a relay (a `Relay` is one). */
export interface CheckedRelay {
  readonly id: string;
  readonly running: boolean;
  readonly partitions: readonly number[];
  readonly store: Pick<Store, 'checkSchema'>;
  observe(observer: RelayObserver): () => void;
}

export type Check =
  | { readonly ok: true; readonly latencyMs: number }
  | { readonly ok: false; readonly error: string };

export type BrokerCheck =
  | { readonly ok: true }
  | { readonly ok: false; readonly failingForMs: number; readonly error: string };

/** The body of `/readyz`. */
export interface ReadinessReport {
  readonly ready: boolean;
  /** Why not, when not ready: the first failing check. */
  readonly reason?: string;
  readonly relay: {
    readonly id: string;
    readonly running: boolean;
    readonly role: 'active' | 'standby';
    readonly partitions: number;
  };
  readonly database: Check;
  /** By publisher name; only publishers the relay has sent to. */
  readonly brokers: Readonly<Record<string, BrokerCheck>>;
}

export interface RelayReadiness {
  check(): Promise<ReadinessReport>;
  /** Stops observing the relay. */
  close(): void;
}

interface BrokerState {
  /** performance.now() of the first failure since the last success. */
  failingSince: number | undefined;
  lastError: string;
  /** Logged as unreachable (so its recovery is logged too). */
  announced: boolean;
}

const retryable = (error: unknown) => !(error instanceof PublishError) || error.retryable;

export function relayReadiness(
  relay: CheckedRelay,
  log: Logger,
  options: ReadinessOptions = {},
): RelayReadiness {
  const o = { ...READINESS_DEFAULTS, ...options };
  const brokers = new Map<string, BrokerState>();
  const unreachable = (state: BrokerState, now: number) =>
    state.failingSince !== undefined && now - state.failingSince >= o.brokerFailingMs;
  const announce = (publisher: string, state: BrokerState, now: number) => {
    if (!state.announced && unreachable(state, now)) {
      state.announced = true;
      log.warn('publisher unreachable: every publish has failed', {
        relay: relay.id,
        publisher,
        failingForMs: Math.round(now - state.failingSince!),
        error: state.lastError,
      });
    }
  };

  const stopObserving = relay.observe({
    published(call: PublishCall) {
      let state = brokers.get(call.publisher);
      if (!state) {
        state = { failingSince: undefined, lastError: '', announced: false };
        brokers.set(call.publisher, state);
      }
      if (call.results.some((r) => r.ok)) {
        if (state.announced)
          log.info('publisher reachable again', { relay: relay.id, publisher: call.publisher });
        state.failingSince = undefined;
        state.announced = false;
        return;
      }
      const failure = call.results.find((r) => !r.ok && retryable(r.error));
      if (!failure || failure.ok) return; // refused for good (dead letters): the broker did answer
      state.failingSince ??= call.startedAt;
      state.lastError = describeError(failure.error);
      announce(call.publisher, state, call.endedAt);
    },
  });

  const database = databaseCheck(relay.store, o.databaseTimeoutMs);

  return {
    async check() {
      const db = await database();
      const now = performance.now();
      const brokerChecks: Record<string, BrokerCheck> = {};
      let brokerReason: string | undefined;
      for (const [name, state] of brokers) {
        announce(name, state, now);
        if (!unreachable(state, now)) {
          brokerChecks[name] = { ok: true };
          continue;
        }
        const failingForMs = Math.round(now - state.failingSince!);
        brokerChecks[name] = { ok: false, failingForMs, error: state.lastError };
        brokerReason ??= `publisher "${name}" unreachable for ${failingForMs} ms: ${state.lastError}`;
      }
      const partitions = relay.partitions.length;
      const reason = !relay.running
        ? 'relay not running'
        : !db.ok
          ? `database unreachable: ${db.error}`
          : brokerReason;
      return {
        ready: reason === undefined,
        ...(reason === undefined ? {} : { reason }),
        relay: {
          id: relay.id,
          running: relay.running,
          role: partitions > 0 ? 'active' : 'standby',
          partitions,
        },
        database: db,
        brokers: brokerChecks,
      };
    },
    close: stopObserving,
  };
}

/** `store.checkSchema()` within `timeoutMs`, one at a time, its answer reused for a second. */
function databaseCheck(store: Pick<Store, 'checkSchema'>, timeoutMs: number): () => Promise<Check> {
  let last: { at: number; check: Check } | undefined;
  let running: Promise<Check> | undefined;
  const run = async (): Promise<Check> => {
    const startedAt = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    let check: Check;
    try {
      await Promise.race([store.checkSchema(), timeout]);
      check = { ok: true, latencyMs: Math.round(performance.now() - startedAt) };
    } catch (error) {
      check = { ok: false, error: describeError(error) };
    } finally {
      clearTimeout(timer);
    }
    last = { at: performance.now(), check };
    return check;
  };
  return () => {
    if (last && performance.now() - last.at < DATABASE_CHECK_REUSE_MS) return Promise.resolve(last.check);
    running ??= run().finally(() => {
      running = undefined;
    });
    return running;
  };
}
