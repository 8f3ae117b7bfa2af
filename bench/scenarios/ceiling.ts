/**
 * The raw JetStream acked-publish ceiling: no database, no relay — the NATS client alone
 * publishing the drain's messages to JetStream the way our publisher does (src/publishers/nats.ts):
 * one connection (async stack traces off), `js.publish` with an ack, the event id as
 * Nats-Msg-Id, the same CloudEvents headers and payload bytes, and a window of `window`
 * publishes in flight at once (our publisher publishes one call's messages concurrently; the
 * relay's largest call is a batch). What a relay could reach if claiming and settling were free.
 */
import { jetstream } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { cloudEventAttributes } from '../../src/core/envelope.js';
import { type OutboundMessage, uuidv7 } from '../../src/index.js';
import type { BenchEnv } from '../env.js';
import { timeDrain } from '../timed-drain.js';
import { AGGREGATE_TYPE, type Workload } from '../workload.js';

const encoder = new TextEncoder();

/** The messages, as the relay would hand them to the publisher (prepared before the clock starts). */
function messagesOf(w: Workload, count: number, subject: string): OutboundMessage[] {
  const createdAt = new Date();
  return Array.from({ length: count }, (_, i) => {
    const e = w.event(i);
    const key = `${AGGREGATE_TYPE}:${String(e.aggregateId)}`;
    return {
      id: uuidv7(),
      key,
      type: e.type,
      destination: `${subject}.${e.type}`,
      aggregateType: AGGREGATE_TYPE,
      aggregateId: String(e.aggregateId),
      payload: JSON.stringify(e.payload),
      headers: {},
      createdAt,
      attempt: 1,
    };
  });
}

/** Publishes `count` messages in windows of `window`; returns the time (ms). */
export async function jetstreamCeiling(
  env: BenchEnv,
  w: Workload,
  options: { count: number; window: number; subject: string },
): Promise<number> {
  const messages = messagesOf(w, options.count, options.subject);
  const nc = await connect({ servers: env.natsServers, name: 'outbox-bench-ceiling', noAsyncTraces: true });
  const js = jetstream(nc, { timeout: 5_000 });
  const publishOne = async (m: OutboundMessage) => {
    const h = headers();
    for (const [name, value] of Object.entries(cloudEventAttributes(m, 'outbox'))) h.set(name, value);
    await js.publish(m.destination, encoder.encode(m.payload), { msgID: m.id, headers: h, timeout: 5_000 });
  };
  let stopping = false;
  let running: Promise<void> | undefined;
  let onWindow: (n: number) => void = () => {};
  let onError: (error: unknown) => void = () => {};
  try {
    return await timeDrain('raw JetStream publish (ceiling)', options.count, {
      start: async () => {
        running = (async () => {
          for (let from = 0; from < messages.length && !stopping; from += options.window) {
            const window = messages.slice(from, from + options.window);
            await Promise.all(window.map(publishOne));
            onWindow(window.length);
          }
        })();
        running.catch((error: unknown) => onError(error));
      },
      stop: async () => {
        stopping = true;
        await running?.catch(() => {});
      },
      onPublished: (listener) => {
        onWindow = listener;
      },
      onFailed: (listener) => {
        onError = listener;
      },
    });
  } finally {
    await nc.drain().catch(() => {});
  }
}
