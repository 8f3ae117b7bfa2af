/**
 * Errors. One `OutboxError` with an UPPER_SNAKE `code` for every failure a caller may meet;
 * `PublishError` and `PermanentError` exist because the relay must branch on them.
 * Every code is documented in docs/errors.md (a test keeps the two in step).
 */

/** Every error code outbox throws. */
export const ERROR_CODES = [
  'INVALID_EVENT',
  'MISSING_TYPE',
  'MISSING_AGGREGATE',
  'INVALID_KEY',
  'INVALID_ID',
  'INVALID_AVAILABLE_AT',
  'INVALID_CHARACTERS',
  'PAYLOAD_NOT_SERIALIZABLE',
  'PAYLOAD_NOT_FINITE',
  'PAYLOAD_NOT_PLAIN',
  'PAYLOAD_TOO_LARGE',
  'INVALID_HEADER',
  'INVALID_DESTINATION',
  'NO_ROUTE',
  'DESTINATION_NOT_ALLOWED',
  'NOT_IN_TRANSACTION',
  'TRANSACTION_ABORTED',
  'INVALID_EXECUTOR',
  'DIALECT_MISMATCH',
  'INVALID_CONFIG',
  'INVALID_IDENTIFIER',
  'UNSUPPORTED_URL',
  'UNSUPPORTED_CHARSET',
  'DRIVER_MISSING',
  'SCHEMA_OUTDATED',
  'SCHEMA_TOO_NEW',
  'PUBLISH_FAILED',
  'PUBLISH_PERMANENT',
  'PUBLISHER_NOT_FOUND',
  'LEASE_HELD',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface OutboxErrorOptions {
  cause?: unknown;
  /** Machine-readable context: the offending path, index, limit… never payload contents. */
  details?: Record<string, unknown>;
}

/**
 * The one error type of outbox. Branch on `code`, never on the message.
 * @example
 * try { outbox.add(exec, event) } catch (e) { if (e instanceof OutboxError && e.code === 'PAYLOAD_TOO_LARGE') … }
 */
export class OutboxError extends Error {
  override readonly name: string = 'OutboxError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: OutboxErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }
}

/**
 * A publisher failed to deliver a message. `retryable` tells the relay whether to try again
 * (with backoff) or dead-letter at once; `retryAfterMs` is a floor the broker asked for.
 */
export class PublishError extends OutboxError {
  override readonly name: string = 'PublishError';
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(
    message: string,
    options: OutboxErrorOptions & { retryable?: boolean; retryAfterMs?: number } = {},
  ) {
    super(options.retryable === false ? 'PUBLISH_PERMANENT' : 'PUBLISH_FAILED', message, options);
    this.retryable = options.retryable ?? true;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/**
 * Throw (or return) this from a publisher to dead-letter the event at once, without retries:
 * the broker said the message can never be accepted (HTTP 400, message too large, …).
 * @example
 * throw new PermanentError('receiver rejected the payload (HTTP 422)')
 */
export class PermanentError extends PublishError {
  override readonly name: string = 'PermanentError';
  constructor(message: string, options: OutboxErrorOptions = {}) {
    super(message, { ...options, retryable: false });
  }
}

/** A short, single-line description of any thrown value, for logs and the attempt history. */
export function describeError(error: unknown, maxLength = 500): string {
  let text: string;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    text =
      typeof code === 'string' && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
    if (!text) text = error.name;
  } else {
    text = String(error);
  }
  // It is stored with the event: no NUL (PostgreSQL refuses it) and no lone surrogates.
  text = (text.replace(/\s+/g, ' ').replace(/\0/g, '\uFFFD') as string & { toWellFormed(): string })
    .toWellFormed()
    .trim();
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}
