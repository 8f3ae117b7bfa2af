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
  return Math.max(Math.floor(random() * ceiling), retryAfterMs);
}
