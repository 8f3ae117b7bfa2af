/** What the publisher tests of several brokers send and check: a message, and a result that must be a failure. */
import { expect } from 'vitest';
import { PublishError } from '../../../src/core/errors.js';
import type { OutboundMessage, PublishResult } from '../../../src/core/ports.js';
import { outboundMessage } from './messages.js';

/** The shared test message, with one more header of the event's own. */
export function tenantMessage(destination: string, over: Partial<OutboundMessage> = {}): OutboundMessage {
  const base = outboundMessage(destination);
  return { ...base, headers: { ...base.headers, tenant: 'acme' }, ...over };
}

/** The PublishError of a result that must have failed. */
export function failure(result: PublishResult | undefined): PublishError {
  expect(result?.ok).toBe(false);
  const error = (result as { error: unknown }).error;
  expect(error).toBeInstanceOf(PublishError);
  return error as PublishError;
}
