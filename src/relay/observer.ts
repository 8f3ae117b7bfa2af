/**
 * What a relay tells its observers (metrics, tracing, readiness): each claim, each publish()
 * call and each settle, with their timings. A relay nobody observes measures nothing: the relay
 * and the dispatcher ask `active` before taking a single timestamp.
 */
import { describeError } from '../core/errors.js';
import type { ClaimedEvent, PublishResult } from '../core/ports.js';
import type { Logger } from './logger.js';

/** One publish() call and its answer. Times are `performance.now()` milliseconds. */
export interface PublishCall {
  /** The publisher's name in the configuration. */
  readonly publisher: string;
  /** Its broker family ('nats', 'http', 'kafka', …). */
  readonly kind: string;
  readonly destination: string;
  /** The events sent, in the order of `results`. */
  readonly events: readonly ClaimedEvent[];
  readonly results: readonly PublishResult[];
  readonly startedAt: number;
  readonly endedAt: number;
}

/** One settle statement and the outcomes it recorded. */
export interface SettleObservation {
  /** How long the statement took; undefined when nothing needed writing (outcomes all fenced). */
  readonly durationMs: number | undefined;
  readonly published: readonly ClaimedEvent[];
  /** Failed, recorded for a retry. */
  readonly retried: readonly ClaimedEvent[];
  /** Failed, recorded as dead letters. */
  readonly dead: readonly ClaimedEvent[];
}

/**
 * Attach one with `relay.observe(observer)`. Methods run synchronously on the relay's path: keep
 * them short. An observer that throws is logged and does not disturb the relay.
 */
export interface RelayObserver {
  /** A claim returned `events` events; `durationMs` is the claim query's time. */
  claimed?(events: number, durationMs: number): void;
  published?(call: PublishCall): void;
  settled?(settle: SettleObservation): void;
}

/** The relay's observers, called in turn, each one's failures kept from the others and the relay. */
export class Observers {
  readonly #list: RelayObserver[] = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** True when someone listens: only then is anything measured. */
  get active(): boolean {
    return this.#list.length > 0;
  }

  /** Adds an observer; returns the function that removes it. */
  add(observer: RelayObserver): () => void {
    this.#list.push(observer);
    return () => {
      const i = this.#list.indexOf(observer);
      if (i >= 0) this.#list.splice(i, 1);
    };
  }

  claimed(events: number, durationMs: number): void {
    for (const o of this.#list) this.#call(() => o.claimed?.(events, durationMs));
  }

  published(call: PublishCall): void {
    for (const o of this.#list) this.#call(() => o.published?.(call));
  }

  settled(settle: SettleObservation): void {
    for (const o of this.#list) this.#call(() => o.settled?.(settle));
  }

  #call(notify: () => void): void {
    try {
      notify();
    } catch (error) {
      this.#log.error('a relay observer failed', { error: describeError(error) });
    }
  }
}
