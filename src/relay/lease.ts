/**
 * A relay's partition leases. Every relay registers in the database and heartbeats; it holds up
 * to its fair share, ceil(P / live relays), of the partition leases, takes free or expired ones,
 * and gives extras back when another relay joins. Nothing else coordinates relays.
 *
 * A lease is trusted locally only until 90 % of its TTL after the start of the statement that
 * last renewed (or took) it: a relay stops publishing a partition before anyone else can take it
 * over, and every settle is fenced by the epochs besides.
 *
 * Cadence: a heartbeat (register, renew, count relays) every TTL/3 and an attempt to take free
 * partitions every poll interval, both from a timer, so they also happen while a batch is in
 * flight: a partition a stopping relay gives back is re-owned within about one poll interval
 * (a partition taken mid-batch is only claimed from at the next claim). Extras are given back
 * from the relay's loop only, after `beforeGiveBack` (the relay stops publishing them and settles
 * what it published), so no partition changes hands with outcomes unwritten.
 */
import { performance } from 'node:perf_hooks';
import { describeError } from '../core/errors.js';
import type { PartitionLease, Store } from '../core/ports.js';
import type { Logger } from './logger.js';

export type LeaseChange = 'acquired' | 'lost' | 'released';

/** Emitted as the relay's 'lease' event. */
export interface LeaseEvent {
  readonly change: LeaseChange;
  readonly partitions: readonly number[];
  readonly epochs: readonly number[];
}

const TRUSTED_SHARE_OF_TTL = 0.9;

interface Held {
  readonly epoch: number;
  trustedUntil: number;
}

export class PartitionLeases {
  readonly #store: Store;
  readonly #owner: string;
  readonly #ttlMs: number;
  readonly #acquireEveryMs: number;
  readonly #log: Logger;
  readonly #logFields: Record<string, unknown>;
  readonly #onChange: (event: LeaseEvent) => void;
  readonly #beforeGiveBack: (partitions: readonly number[]) => Promise<void>;
  readonly #held = new Map<number, Held>();
  /** Being given back: a heartbeat that read the database before the release must not adopt them again. */
  readonly #releasing = new Set<number>();
  /** Fair share from the last heartbeat; Infinity until the first one. */
  #share = Number.POSITIVE_INFINITY;
  #partitions = 0;
  #lastHeartbeat = Number.NEGATIVE_INFINITY;
  #lastAcquire = Number.NEGATIVE_INFINITY;
  #heartbeating: Promise<void> | undefined;
  #acquiring: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: {
    store: Store;
    owner: string;
    ttlMs: number;
    acquireEveryMs: number;
    log: Logger;
    logFields: Record<string, unknown>;
    onChange: (event: LeaseEvent) => void;
    /** Awaited before extras are given back (not before releaseAll: the relay has stopped then). */
    beforeGiveBack?: (partitions: readonly number[]) => Promise<void>;
  }) {
    this.#store = options.store;
    this.#owner = options.owner;
    this.#ttlMs = options.ttlMs;
    this.#acquireEveryMs = options.acquireEveryMs;
    this.#log = options.log;
    this.#logFields = options.logFields;
    this.#onChange = options.onChange;
    this.#beforeGiveBack = options.beforeGiveBack ?? (() => Promise.resolve());
  }

  get owner(): string {
    return this.#owner;
  }

  /** Partitions held and trusted now, ascending. */
  owned(): number[] {
    const now = performance.now();
    return [...this.#held]
      .filter(([, h]) => now < h.trustedUntil)
      .map(([p]) => p)
      .sort((a, b) => a - b);
  }

  /** True while `partition` is held at `epoch` and can be trusted without asking the database. */
  trusts(partition: number, epoch: number): boolean {
    const held = this.#held.get(partition);
    return held !== undefined && held.epoch === epoch && performance.now() < held.trustedUntil;
  }

  /** The epoch `partition` is held at, if held. */
  epochOf(partition: number): number | undefined {
    return this.#held.get(partition)?.epoch;
  }

  /**
   * Between batches: heartbeat when due, give back partitions beyond the fair share, and take
   * free ones while below it. `eager` takes at once (runOnce), whatever the cadence.
   */
  async maintain(eager = false): Promise<void> {
    this.#timer ??= setInterval(
      () => void this.#inBackground(),
      Math.min(this.#acquireEveryMs, this.#ttlMs / 3),
    ).unref();
    const now = performance.now();
    if (eager || now - this.#lastHeartbeat >= this.#ttlMs / 3) await this.#heartbeat();
    const extra = this.#held.size - this.#share;
    if (extra > 0) {
      // Highest partitions first: relays converge on stable, disjoint sets.
      const giveBack = [...this.#held.keys()].sort((a, b) => b - a).slice(0, extra);
      await this.#beforeGiveBack(giveBack);
      await this.#release(giveBack.filter((p) => this.#held.has(p)));
    } else if (eager || now - this.#lastAcquire >= this.#acquireEveryMs) {
      await this.#acquire();
    }
  }

  /** Drops partitions the database says are no longer ours (a fenced settle). */
  lose(partitions: readonly number[], reason: string): void {
    const lost: PartitionLease[] = [];
    for (const partition of partitions) {
      const held = this.#held.get(partition);
      if (!held) continue;
      this.#held.delete(partition);
      lost.push({ partition, epoch: held.epoch });
    }
    if (lost.length === 0) return;
    this.#log.warn('leases lost', { ...this.#logFields, partitions: lost.map((l) => l.partition), reason });
    this.#announce('lost', lost);
  }

  /** Gives every lease back and unregisters, so the other relays take over at once. */
  async releaseAll(): Promise<void> {
    this.#stopTimer();
    // A take or heartbeat the timer started may still be running: one that ended after the
    // release would take partitions back and leave them held by a relay that is gone.
    await Promise.allSettled([this.#acquiring, this.#heartbeating]);
    const released = [...this.#held].map(([partition, h]) => ({ partition, epoch: h.epoch }));
    this.#held.clear();
    this.#share = Number.POSITIVE_INFINITY;
    try {
      await this.#store.releaseLeases(this.#owner, 'all');
      if (released.length > 0) this.#announce('released', released);
    } catch (error) {
      this.#log.warn('releasing the leases failed; they expire by themselves', {
        ...this.#logFields,
        error: describeError(error),
      });
    }
  }

  #stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #trustEnd(startedAt: number): number {
    return startedAt + this.#ttlMs * TRUSTED_SHARE_OF_TTL;
  }

  /** One heartbeat at a time: the background timer and the loop may both ask for one. */
  #heartbeat(): Promise<void> {
    this.#heartbeating ??= this.#runHeartbeat().finally(() => {
      this.#heartbeating = undefined;
    });
    return this.#heartbeating;
  }

  async #runHeartbeat(): Promise<void> {
    const startedAt = performance.now();
    const membership = await this.#store.heartbeat(this.#owner, this.#ttlMs);
    this.#lastHeartbeat = startedAt;
    this.#partitions = membership.partitions;
    this.#share = Math.ceil(membership.partitions / Math.max(1, membership.relays));
    const renewed = new Map(membership.held.map((l) => [l.partition, l.epoch]));
    const lost: number[] = [];
    for (const [partition, held] of this.#held) {
      if (renewed.get(partition) === held.epoch) held.trustedUntil = this.#trustEnd(startedAt);
      else lost.push(partition);
    }
    this.lose(lost, 'taken over or expired');
    // Leases the database says are ours and we did not know of (a take whose answer was lost)
    // are adopted; the relay trusts the database, not its memory.
    const adopted = membership.held.filter(
      (l) => !this.#held.has(l.partition) && !lost.includes(l.partition) && !this.#releasing.has(l.partition),
    );
    for (const lease of adopted) {
      this.#held.set(lease.partition, { epoch: lease.epoch, trustedUntil: this.#trustEnd(startedAt) });
    }
    if (adopted.length > 0) this.#announce('acquired', adopted);
  }

  /** One take at a time (the loop and the timer may both ask). */
  #acquire(): Promise<void> {
    this.#acquiring ??= this.#runAcquire().finally(() => {
      this.#acquiring = undefined;
    });
    return this.#acquiring;
  }

  async #runAcquire(): Promise<void> {
    const startedAt = performance.now();
    this.#lastAcquire = startedAt;
    const taken = await this.#store.acquireLeases(this.#owner, this.#ttlMs);
    if (taken.length === 0) return;
    for (const lease of taken) {
      this.#held.set(lease.partition, { epoch: lease.epoch, trustedUntil: this.#trustEnd(startedAt) });
    }
    this.#announce('acquired', taken);
  }

  /** The timer: heartbeat and take partitions when due, also while the loop is in a batch. */
  async #inBackground(): Promise<void> {
    const now = performance.now();
    try {
      if (now - this.#lastHeartbeat >= this.#ttlMs / 3 - 50) await this.#heartbeat();
      // Asked whatever the last known share: a relay that left changes it before our next heartbeat.
      if (this.#timer && now - this.#lastAcquire >= this.#acquireEveryMs - 10) {
        await this.#acquire();
      }
    } catch (error) {
      // Still trusted until each lease's local deadline; the loop checks before every round.
      this.#log.warn('lease heartbeat failed', { ...this.#logFields, error: describeError(error) });
    }
  }

  async #release(partitions: readonly number[]): Promise<void> {
    if (partitions.length === 0) return;
    const released = partitions.map((partition) => ({ partition, epoch: this.#held.get(partition)!.epoch }));
    for (const p of partitions) {
      this.#held.delete(p);
      this.#releasing.add(p);
    }
    this.#log.info('leases given back', {
      ...this.#logFields,
      partitions,
      share: this.#share,
      of: this.#partitions,
    });
    try {
      // A heartbeat already under way may have read these as ours: wait for it before they can be adopted.
      await this.#store.releaseLeases(this.#owner, partitions);
      await Promise.allSettled([this.#heartbeating]);
    } finally {
      for (const p of partitions) this.#releasing.delete(p);
    }
    this.#announce('released', released);
  }

  #announce(change: LeaseChange, leases: readonly PartitionLease[]): void {
    if (change === 'acquired') {
      this.#log.info('leases acquired', { ...this.#logFields, partitions: leases.map((l) => l.partition) });
    }
    this.#onChange({
      change,
      partitions: leases.map((l) => l.partition),
      epochs: leases.map((l) => l.epoch),
    });
  }
}
