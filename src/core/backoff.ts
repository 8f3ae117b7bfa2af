/**
 * Retry schedule: exponential backoff with full jitter (delay uniform in [0, min(cap, base·2^(n-1))]),
 * so a crowd of failing events spreads out instead of retrying in lock-step.
 */

export interface BackoffOptions {
  /** Ceiling of the first retry's delay. */
  readonly baseMs: number;
  /** No delay grows beyond this. */
  readonly capMs: number;
}

/** The longest Retry-After honoured (24 h). */
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ baseMs: 500, capMs: 60_000 });

/**
 * The delay before the next attempt after `attempts` failures (1 = the first failure).
 * A broker's Retry-After is a floor, never shortened by jitter.
 */
export function backoffDelayMs(
  attempts: number,
  options: BackoffOptions,
  retryAfterMs = 0,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(attempts - 1, 0), 30);
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** exponent);
  // A receiver's Retry-After is honoured up to a day: an absurd one must not overflow the schedule.
  const floor = Number.isFinite(retryAfterMs) ? Math.min(Math.max(retryAfterMs, 0), MAX_RETRY_AFTER_MS) : 0;
  return Math.max(Math.floor(random() * ceiling), floor);
}
