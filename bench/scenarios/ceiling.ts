/**
 * Raw acked-publish ceilings: no database, no relay — a broker's own client publishing the
 * drain's messages the way a good hand-written producer would, one connection, the same headers
 * and payload bytes as our publisher, each publish waiting for the broker's ack, with a window
 * of `window` publishes in flight (a new one goes out as each ack comes back), or, where the
 * client acks batches (Kafka), batches of `window` one after the other. What a relay could reach
 * if claiming and settling were free. JetStream's is here; the other brokers' raw
 * clients are in bench/brokers/.
 */
import { jetstream } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { cloudEventAttributes } from '../../src/core/envelope.js';
import { type OutboundMessage, uuidv7 } from '../../src/index.js';
import type { BenchEnv } from '../env.js';
import { timeDrain } from '../timed-drain.js';
import { AGGREGATE_TYPE, type Workload } from '../workload.js';

const encoder = new TextEncoder();

/** Issue 4: each publisher drains at least this share of its broker's raw acked-publish ceiling. */
export const CEILING_SHARE_BAR = 0.8;

/**
 * The messages, as the relay would hand them to the publisher (prepared before the clock
 * starts): destination `${prefix}.<type>`, as our route `${prefix}.{type}` renders it.
 */
export function messagesOf(w: Workload, count: number, prefix: string): OutboundMessage[] {
  const createdAt = new Date();
  return Array.from({ length: count }, (_, i) => {
    const e = w.event(i);
    const key = `${AGGREGATE_TYPE}:${String(e.aggregateId)}`;
    return {
      id: uuidv7(),
      key,
      type: e.type,
      destination: `${prefix}.${e.type}`,
      aggregateType: AGGREGATE_TYPE,
      aggregateId: String(e.aggregateId),
      payload: JSON.stringify(e.payload),
      headers: {},
      createdAt,
      attempt: 1,
    };
  });
}

/**
 * Times `publish` over every message with at most `window` in flight; returns the time (ms).
 * A failed publish ends the measurement with its error (a ceiling that drops messages is no ceiling).
 */
export async function timeRawPublish(
  label: string,
  messages: readonly OutboundMessage[],
  window: number,
  publish: (m: OutboundMessage) => Promise<unknown>,
): Promise<number> {
  let stopping = false;
  let running: Promise<void> | undefined;
  let onAcked: (n: number) => void = () => {};
  let onError: (error: unknown) => void = () => {};
  let next = 0;
  const lane = async () => {
    while (!stopping && next < messages.length) {
      await publish(messages[next++]!);
      onAcked(1);
    }
  };
  return timeDrain(label, messages.length, {
    start: async () => {
      running = Promise.all(Array.from({ length: Math.min(window, messages.length) }, lane)).then(() => {});
      running.catch((error: unknown) => onError(error));
    },
    stop: async () => {
      stopping = true;
      await running?.catch(() => {});
    },
    onPublished: (listener) => {
      onAcked = listener;
    },
    onFailed: (listener) => {
      onError = listener;
    },
  });
}

/** Times `publishBatch` over every message, `batch` at a time, one batch after the other. */
export async function timeRawBatches(
  label: string,
  messages: readonly OutboundMessage[],
  batch: number,
  publishBatch: (batch: readonly OutboundMessage[]) => Promise<unknown>,
): Promise<number> {
  let stopping = false;
  let running: Promise<void> | undefined;
  let onAcked: (n: number) => void = () => {};
  let onError: (error: unknown) => void = () => {};
  return timeDrain(label, messages.length, {
    start: async () => {
      running = (async () => {
        for (let from = 0; from < messages.length && !stopping; from += batch) {
          const slice = messages.slice(from, from + batch);
          await publishBatch(slice);
          onAcked(slice.length);
        }
      })();
      running.catch((error: unknown) => onError(error));
    },
    stop: async () => {
      stopping = true;
      await running?.catch(() => {});
    },
    onPublished: (listener) => {
      onAcked = listener;
    },
    onFailed: (listener) => {
      onError = listener;
    },
  });
}

/**
 * The JetStream ceiling, publishing as src/publishers/nats.ts does: `js.publish` with an ack, the
 * event id as Nats-Msg-Id, the same CloudEvents headers, async stack traces off.
 */
export async function jetstreamCeiling(
  env: BenchEnv,
  w: Workload,
  options: { count: number; window: number; subject: string },
): Promise<number> {
  const messages = messagesOf(w, options.count, options.subject);
  const nc = await connect({ servers: env.natsServers, name: 'outbox-bench-ceiling', noAsyncTraces: true });
  const js = jetstream(nc, { timeout: 5_000 });
  try {
    return await timeRawPublish('raw JetStream publish (ceiling)', messages, options.window, async (m) => {
      const h = headers();
      for (const [name, value] of Object.entries(cloudEventAttributes(m, 'outbox'))) h.set(name, value);
      await js.publish(m.destination, encoder.encode(m.payload), { msgID: m.id, headers: h, timeout: 5_000 });
    });
  } finally {
    await nc.drain().catch(() => {});
  }
}
