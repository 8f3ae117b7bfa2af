/** Assertions on the typed errors outbox throws (synchronous calls). */
import { expect } from 'vitest';
import { type ErrorCode, OutboxError } from '../../src/core/errors.js';

/** Runs `fn`, expects it to throw an OutboxError with `code`, and returns the error. */
export function expectOutboxError(
  fn: () => unknown,
  code: ErrorCode,
  ...messageParts: string[]
): OutboxError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  if (thrown === undefined) throw new Error(`expected OutboxError ${code}, nothing was thrown`);
  if (!(thrown instanceof OutboxError)) throw thrown;
  expect({ code: thrown.code, message: thrown.message }).toMatchObject({ code });
  for (const part of messageParts) expect(thrown.message).toContain(part);
  return thrown;
}
