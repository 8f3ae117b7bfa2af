/**
 * A publisher that keeps messages in memory, for tests of your own code (and ours).
 */
import { natsGrammar } from '../core/destination.js';
import type { OutboundMessage, Publisher, PublishResult } from '../core/ports.js';

export interface MemoryPublisher extends Publisher {
  /** Every message delivered, in delivery order (a redelivery appears twice). */
  readonly messages: OutboundMessage[];
  /** Decides each message's result; default: delivered. Return an Error (or PublishError) to fail it. */
  behaviour: (message: OutboundMessage) => Error | undefined | Promise<Error | undefined>;
  /** Forgets every message. */
  clear(): void;
}

/**
 * @example
 * const publisher = memoryPublisher();
 * const outbox = createOutbox({ database: store, publishers: { memory: publisher } });
 * … await runOnce(outbox); expect(publisher.messages.map((m) => m.type)).toEqual(['order.created']);
 */
export function memoryPublisher(options: { kind?: string } = {}): MemoryPublisher {
  const publisher: MemoryPublisher = {
    kind: options.kind ?? 'memory',
    capabilities: { dedupeById: false },
    messages: [],
    behaviour: () => undefined,
    validateDestination: options.kind === 'nats' ? natsGrammar : undefined,
    clear() {
      publisher.messages.length = 0;
    },
    async publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]> {
      return Promise.all(
        messages.map(async (m): Promise<PublishResult> => {
          const error = await publisher.behaviour(m);
          if (error) return { ok: false, error };
          publisher.messages.push(m);
          return { ok: true };
        }),
      );
    },
  };
  return publisher;
}
