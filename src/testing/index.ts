/**
 * Test helpers for code that uses outbox: an in-memory publisher, a failing publisher wrapper,
 * and runOnce() to relay everything due without starting a background loop.
 */
import type { Outbox } from '../outbox.js';
import type { RelayOptions } from '../relay/relay.js';

export {
  checkDelivery,
  type DeliveryResult,
  type LedgerEntry,
  percentile,
  type Reception,
} from './delivery-check.js';
export { type FaultyPublisherOptions, faultyPublisher, seededRandom } from './faulty-publisher.js';
export { type MemoryPublisher, memoryPublisher } from './memory-publisher.js';

/**
 * Relays every event that is due (repeating batches until none is), then releases the lease.
 * Returns how many events were published, scheduled for retry and dead-lettered.
 * @example
 * await runOnce(outbox); // in a test, after the code under test added events
 */
export function runOnce(
  outbox: Outbox,
  options: RelayOptions = {},
): Promise<{ published: number; retried: number; dead: number }> {
  const relay = outbox.relay(options);
  return relay.drain().finally(() => relay.stop());
}
