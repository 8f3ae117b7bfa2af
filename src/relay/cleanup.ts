/**
 * The relay's background cleanup of published events kept by retention (`retainPublished`):
 * every `purgeEveryMs` it deletes those published longer than `keepPublishedForMs` ago, at most
 * `batchSize` per statement with a pause between statements. It runs beside the relay's loop,
 * never inside it: a claim never waits for a purge, and a purge only ever touches published rows
 * (the claim reads pending ones), so neither holds a lock the other needs.
 */
import { describeError, OutboxError } from '../core/errors.js';
import type { Store } from '../core/ports.js';
import type { LogFields, Logger } from './logger.js';

export interface RetentionOptions {
  /** Published events are deleted once they have been published this long (e.g. 7 days). */
  readonly keepPublishedForMs: number;
  /** How often a cleanup pass starts (default 60 s); the first one at a random point of that interval. */
  readonly purgeEveryMs?: number;
  /** Rows deleted per statement (default 1000): each statement is a short transaction. */
  readonly batchSize?: number;
  /** Pause between two statements of a pass (default 100 ms), so a big backlog is deleted gently. */
  readonly pauseMs?: number;
}

export const RETENTION_DEFAULTS = Object.freeze({ purgeEveryMs: 60_000, batchSize: 1000, pauseMs: 100 });

/** `value` if it is an integer ≥ `min`, `fallback` when it is not given (and there is one). */
function checked(name: string, value: number | undefined, fallback: number | undefined, min = 1): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new OutboxError(
      'INVALID_CONFIG',
      `relay.retention.${name} must be an integer ≥ ${min}, got ${String(value)}`,
    );
  }
  return value;
}

/** What one cleanup pass did; also the 'cleanup' log line. */
export interface CleanupReport {
  readonly deleted: number;
  readonly statements: number;
}

/**
 * Deletes old published events in the background. `start()` schedules passes, `stop()` waits for
 * the statement in flight (never a whole pass) and cancels the rest; `runPass()` runs one pass now.
 */
export class PublishedCleanup {
  readonly #store: Store;
  readonly #keepMs: number;
  readonly #everyMs: number;
  readonly #batchSize: number;
  readonly #pauseMs: number;
  readonly #log: Logger;
  readonly #fields: LogFields;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<CleanupReport> | undefined;
  #stopping = false;
  #wakePause: (() => void) | undefined;

  constructor(store: Store, options: RetentionOptions, log: Logger, fields: LogFields = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new OutboxError('INVALID_CONFIG', 'relay.retention must be an object with keepPublishedForMs');
    }
    this.#store = store;
    this.#keepMs = checked('keepPublishedForMs', options.keepPublishedForMs, undefined);
    this.#everyMs = checked('purgeEveryMs', options.purgeEveryMs, RETENTION_DEFAULTS.purgeEveryMs);
    this.#batchSize = checked('batchSize', options.batchSize, RETENTION_DEFAULTS.batchSize);
    this.#pauseMs = checked('pauseMs', options.pauseMs, RETENTION_DEFAULTS.pauseMs, 0);
    this.#log = log;
    this.#fields = fields;
  }

  /** Schedules passes (idempotent). Relays started together spread their first pass over the interval. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#stopping = false;
    this.#schedule(Math.random() * this.#everyMs);
  }

  /** Cancels what is scheduled and waits for the statement in flight, if any. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#wakePause?.();
    await this.#pass?.catch(() => undefined);
  }

  /** One pass: statements of at most `batchSize` rows, a pause between, until one deletes fewer. */
  async runPass(): Promise<CleanupReport> {
    let deleted = 0;
    let statements = 0;
    for (;;) {
      const n = await this.#store.purge(this.#keepMs, this.#batchSize);
      deleted += n;
      statements++;
      if (n < this.#batchSize || this.#stopping) return { deleted, statements };
      await this.#pause();
      if (this.#stopping) return { deleted, statements };
    }
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      const pass = this.runPass();
      this.#pass = pass;
      void pass
        .then(
          (report) => {
            if (report.deleted > 0)
              this.#log.info('cleanup deleted published events', { ...this.#fields, ...report });
          },
          (error: unknown) =>
            this.#log.warn('cleanup of published events failed; trying again next interval', {
              ...this.#fields,
              error: describeError(error),
            }),
        )
        .finally(() => {
          if (this.#pass === pass) this.#pass = undefined;
          if (!this.#stopping) this.#schedule(this.#everyMs);
        });
    }, delayMs);
    // The relay's loop keeps the process alive; a cleanup timer alone must not.
    this.#timer.unref();
  }

  /** Sleeps `pauseMs`; stop() cuts it short. */
  async #pause(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.#pauseMs);
      this.#wakePause = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wakePause = undefined;
  }
}
