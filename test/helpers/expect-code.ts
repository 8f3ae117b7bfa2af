/** Assertions on the typed errors of outbox calls that may be asynchronous (a store's methods). */
import { expect } from 'vitest';
import { type ErrorCode, OutboxError } from '../../src/core/errors.js';

/**
 * Awaits `promise` (or what `promise()` returns, a throw included), expects it to fail with an
 * OutboxError with `code`, and returns the error.
 */
export async function expectCode(
  promise: Promise<unknown> | (() => unknown),
  code: ErrorCode,
): Promise<OutboxError> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    expect(error).toBeInstanceOf(OutboxError);
    expect((error as OutboxError).code).toBe(code);
    return error as OutboxError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}
