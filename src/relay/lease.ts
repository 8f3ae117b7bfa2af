/**
 * The relay's hold on the outbox: a lease row in the database with an owner and an epoch,
 * renewed in the background, and trusted locally only until 90 % of its TTL after the start of
 * the last renewal that succeeded — so a relay stops publishing before another can take over.
 */
import { performance } from 'node:perf_hooks';
import { describeError } from '../core/errors.js';
import type { LeaseToken, Store } from '../core/ports.js';
import type { Logger } from './logger.js';

export type LeaseChange = 'acquired' | 'lost' | 'released';

const TRUSTED_SHARE_OF_TTL = 0.9;

export class LeaseHolder {
  readonly #store: Store;
  readonly #owner: string;
  readonly #ttlMs: number;
  readonly #log: Logger;
  readonly #logFields: Record<string, unknown>;
  readonly #onChange: (change: LeaseChange) => void;
  #token: LeaseToken | null = null;
  #trustedUntil = 0;
  #renewTimer: NodeJS.Timeout | undefined;

  constructor(options: {
    store: Store;
    owner: string;
    ttlMs: number;
    log: Logger;
    logFields: Record<string, unknown>;
    onChange: (change: LeaseChange) => void;
  }) {
    this.#store = options.store;
    this.#owner = options.owner;
    this.#ttlMs = options.ttlMs;
    this.#log = options.log;
    this.#logFields = options.logFields;
    this.#onChange = options.onChange;
  }

  /** The current token, or null when the lease is not held. */
  get token(): LeaseToken | null {
    return this.#token;
  }

  /** True while the lease can be trusted without asking the database. */
  get trusted(): boolean {
    return this.#token !== null && performance.now() < this.#trustedUntil;
  }

  /** Holds the lease: trusted as is, renewed, or acquired; false when another relay holds it. */
  async hold(): Promise<boolean> {
    if (this.trusted) return true;
    const startedAt = performance.now();
    if (this.#token && (await this.#store.renewLease(this.#token, this.#ttlMs))) {
      this.#trustedUntil = startedAt + this.#ttlMs * TRUSTED_SHARE_OF_TTL;
      return true;
    }
    if (this.#token) this.lose('renewal refused');
    const token = await this.#store.acquireLease(this.#owner, this.#ttlMs);
    if (!token) return false;
    this.#token = token;
    this.#trustedUntil = startedAt + this.#ttlMs * TRUSTED_SHARE_OF_TTL;
    this.#log.info('lease acquired', { ...this.#logFields, epoch: token.epoch });
    this.#onChange('acquired');
    this.#renewTimer ??= setInterval(() => void this.#renewInBackground(), this.#ttlMs / 3);
    this.#renewTimer.unref();
    return true;
  }

  /** Drops a lease the database says is no longer ours. */
  lose(reason: string): void {
    this.#log.warn('lease lost', { ...this.#logFields, reason });
    this.#token = null;
    this.#trustedUntil = 0;
    this.#onChange('lost');
  }

  /** Stops renewing and forgets the lease without releasing it: it expires by itself. */
  forget(): LeaseToken | null {
    clearInterval(this.#renewTimer);
    this.#renewTimer = undefined;
    const token = this.#token;
    this.#token = null;
    this.#trustedUntil = 0;
    return token;
  }

  /** Gives the lease back at once, so another relay can take over without waiting for expiry. */
  async release(): Promise<void> {
    const token = this.forget();
    if (!token) return;
    try {
      await this.#store.releaseLease(token);
      this.#onChange('released');
    } catch (error) {
      this.#log.warn('releasing the lease failed; it expires by itself', {
        ...this.#logFields,
        error: describeError(error),
      });
    }
  }

  async #renewInBackground(): Promise<void> {
    const token = this.#token;
    if (!token) return;
    const startedAt = performance.now();
    try {
      if (await this.#store.renewLease(token, this.#ttlMs)) {
        if (this.#token === token) this.#trustedUntil = startedAt + this.#ttlMs * TRUSTED_SHARE_OF_TTL;
      } else if (this.#token === token) {
        this.lose('renewal refused');
      }
    } catch (error) {
      // Still trusted until its local deadline; the loop checks before every round.
      this.#log.warn('lease renewal failed', { ...this.#logFields, error: describeError(error) });
    }
  }
}
