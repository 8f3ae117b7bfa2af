/**
 * RabbitMQ in the brokers scenario: one durable topic exchange and one durable queue bound to it
 * per run (`outbox-bench-<tag>`), purged between phases, deleted at the end. Destinations are
 * `outbox-bench-<tag>/bench.<type>` (exchange / routing key). The raw client is amqplib on a
 * confirm channel publishing what src/publishers/amqp.ts publishes: persistent, mandatory,
 * messageId, type, content type, timestamp, the `cloudEvents:*` headers; a publish counts when
 * confirmed and not returned. Verified by the queue's message count, and for our drain by a
 * consumer reading the queue back (the per-key order check).
 */
import { type ChannelModel, type ConsumeMessage, connect, type Options } from 'amqplib';
import { cloudEventContext, PAYLOAD_CONTENT_TYPE } from '../../src/core/envelope.js';
import type { OutboundMessage } from '../../src/index.js';
import { amqpPublisher } from '../../src/publishers/amqp.js';
import { type BenchEnv, onCleanup } from '../env.js';
import { type BrokerBench, type Delivered, settledCount } from './broker.js';

export const AMQP_URL = process.env.OUTBOX_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** The publish options src/publishers/amqp.ts sends (binary mode). */
function optionsOf(m: OutboundMessage): Options.Publish {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(cloudEventContext(m, 'outbox')))
    if (name !== 'datacontenttype') headers[`cloudEvents:${name}`] = value;
  return {
    persistent: true,
    mandatory: true,
    messageId: m.id,
    type: m.type,
    contentType: PAYLOAD_CONTENT_TYPE,
    timestamp: Math.floor(m.createdAt.getTime() / 1000),
    headers,
  };
}

export async function openAmqp(env: BenchEnv): Promise<BrokerBench> {
  const name = `outbox-bench-${env.tag}`;
  const model: ChannelModel = await connect(AMQP_URL);
  model.on('error', () => {});
  const admin = await model.createChannel();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unhook();
    try {
      await admin.deleteQueue(name);
      await admin.deleteExchange(name);
    } catch (e) {
      process.stderr.write(`warning: deleting RabbitMQ queue/exchange ${name}: ${String(e)}\n`);
    }
    await model.close().catch(() => {});
  };
  const unhook = onCleanup(close);
  await admin.assertExchange(name, 'topic', { durable: true });
  await admin.assertQueue(name, { durable: true });
  await admin.bindQueue(name, name, '#');

  /** Consumes the whole queue (emptying it): message ids in queue order. */
  const readIds = async (expected: number): Promise<string[]> => {
    const channel = await model.createChannel();
    try {
      const ids: string[] = [];
      const { consumerTag } = await channel.consume(
        name,
        (message: ConsumeMessage | null) => {
          if (message) ids.push(String(message.properties.messageId));
        },
        { noAck: true },
      );
      await settledCount(() => ids.length, expected);
      await channel.cancel(consumerTag);
      return ids;
    } finally {
      await channel.close().catch(() => {});
    }
  };

  return {
    label: 'RabbitMQ',
    prefix: `${name}/bench`,
    rawNote:
      'amqplib alone on a confirm channel: the same persistent, mandatory messages and headers, confirmed and not returned',
    verifyNote: 'the queue’s message count, and our drain consumed back',
    publisher: () => amqpPublisher({ url: AMQP_URL }),
    async openRaw(window) {
      const connection = await connect(AMQP_URL);
      connection.on('error', () => {});
      const channel = await connection.createConfirmChannel();
      const returned = new Set<string>();
      channel.on('return', (message: ConsumeMessage) => returned.add(String(message.properties.messageId)));
      return {
        window,
        publish(m) {
          const slash = m.destination.indexOf('/');
          const [exchange, key] = [m.destination.slice(0, slash), m.destination.slice(slash + 1)];
          return new Promise<void>((resolve, reject) => {
            channel.publish(exchange, key, Buffer.from(m.payload), optionsOf(m), (error: unknown) => {
              if (error) reject(error);
              else if (returned.has(m.id)) reject(new Error(`RabbitMQ returned ${m.id} as unroutable`));
              else resolve();
            });
          });
        },
        async close() {
          await connection.close().catch(() => {});
        },
      };
    },
    async delivered(expected, withIds): Promise<Delivered> {
      const { messageCount } = await admin.checkQueue(name);
      return withIds ? { count: messageCount, ids: await readIds(expected) } : { count: messageCount };
    },
    async reset() {
      await admin.purgeQueue(name);
    },
    close,
  };
}
