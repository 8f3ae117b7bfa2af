/**
 * The RabbitMQ harness of the publisher conformance suite: unique exchanges and queues per test
 * (deleted in close()), and a real consumer on a separate connection that acks what it decodes.
 * The shared RabbitMQ is never stopped: its outage is a TCP proxy in front of it that cuts and
 * refuses the publisher's connections, and its lost acks a proxy that drops the broker's replies.
 * It also serves the AMQP publisher's own tests (raw messages, an admin channel, queues reached
 * through the default exchange).
 */
import { type Channel, type ChannelModel, type ConsumeMessage, connect } from 'amqplib';
import type { CloudEventsMode } from '../../../src/core/envelope.js';
import { amqpPublisher } from '../../../src/publishers/amqp.js';
import type {
  Consumer,
  HarnessFactory,
  PublisherHarness,
  Received,
} from '../../conformance/publisher.suite.js';
import { serviceSkipReason, uniqueName } from '../services.js';
import { TcpProxy } from '../tcp-proxy.js';

export const AMQP_URL = process.env.OUTBOX_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

const ATTRIBUTE_PREFIX = 'cloudEvents:';

/** A consumer that also keeps the raw messages (properties, fields) for the publisher's own tests. */
export interface AmqpConsumer extends Consumer {
  readonly messages: readonly ConsumeMessage[];
}

export interface AmqpHarness extends PublisherHarness {
  /** 'exchange' (default): `<unique exchange>/<key>` with a bound queue; 'queue': a unique queue name (default exchange). */
  destination(name: string, via?: 'exchange' | 'queue'): Promise<string>;
  consume(destination: string, onMessage?: (message: ConsumeMessage) => void): Promise<AmqpConsumer>;
  /** A channel on the harness's own connection, to delete or declare things behind the publisher's back. */
  readonly admin: Channel;
}

/** What a consumer makes of a message: binary mode reads `cloudEvents:*` headers, structured mode the body. */
function decode(message: ConsumeMessage): Received {
  const { exchange, routingKey } = message.fields;
  const destination = exchange === '' ? routingKey : `${exchange}/${routingKey}`;
  const headers: Record<string, string> = {};
  const attributes: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.properties.headers ?? {})) {
    if (name.startsWith(ATTRIBUTE_PREFIX)) attributes[name.slice(ATTRIBUTE_PREFIX.length)] = String(value);
    else headers[name] = String(value);
  }
  const body = message.content.toString('utf8');
  if (message.properties.contentType !== 'application/cloudevents+json')
    return { destination, attributes, contentType: message.properties.contentType, headers, data: body };
  const { data, datacontenttype, ...context } = JSON.parse(body) as Record<string, unknown>;
  return {
    destination,
    attributes: Object.fromEntries(Object.entries(context).map(([k, v]) => [k, String(v)])),
    contentType: String(datacontenttype),
    headers,
    data: JSON.stringify(data),
  };
}

async function startConsumer(
  model: ChannelModel,
  queue: string,
  onMessage?: (message: ConsumeMessage) => void,
): Promise<AmqpConsumer> {
  const channel = await model.createChannel();
  const messages: ConsumeMessage[] = [];
  const received: Received[] = [];
  let waiters: (() => void)[] = [];
  await channel.prefetch(100);
  const { consumerTag } = await channel.consume(
    queue,
    (message) => {
      if (message === null) return;
      messages.push(message);
      received.push(decode(message));
      channel.ack(message);
      onMessage?.(message);
      for (const wake of waiters) wake();
    },
    { noAck: false },
  );
  return {
    messages,
    received,
    waitFor(count, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (received.length < count) return;
          clearTimeout(timer);
          waiters = waiters.filter((w) => w !== check);
          resolve([...received]);
        };
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== check);
          reject(
            new Error(
              `${received.length} of ${count} messages arrived on queue ${queue} within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
        waiters.push(check);
        check();
      });
    },
    async close() {
      await channel.cancel(consumerTag).catch(() => undefined);
      await channel.close().catch(() => undefined);
    },
  };
}

export async function createAmqpHarness(): Promise<AmqpHarness | string> {
  const skip = await serviceSkipReason('RabbitMQ', AMQP_URL, 5672);
  if (skip) return skip;
  // Declarations and consumers each on their own connection, apart from the publisher's.
  const adminConnection = await connect(AMQP_URL);
  const consumerConnection = await connect(AMQP_URL);
  const admin = await adminConnection.createChannel();
  const queues = new Map<string, string>(); // destination → the queue a consumer reads
  const exchanges: string[] = [];

  const destination = async (name: string, via: 'exchange' | 'queue' = 'exchange') => {
    const unique = uniqueName(`outbox_${name}`);
    const queue = `${unique}_q`;
    await admin.assertQueue(queue, { durable: false });
    if (via === 'queue') {
      queues.set(queue, queue);
      return queue;
    }
    await admin.assertExchange(unique, 'direct', { durable: false });
    exchanges.push(unique);
    await admin.bindQueue(queue, unique, `${name}.events`);
    const d = `${unique}/${name}.events`;
    queues.set(d, queue);
    return d;
  };
  const consume = async (d: string, onMessage?: (message: ConsumeMessage) => void) => {
    const queue = queues.get(d);
    if (queue === undefined) throw new Error(`no queue for ${d}: make it with destination() first`);
    return startConsumer(consumerConnection, queue, onMessage);
  };
  /** A destination, its consumer (on the broker directly) and a proxy for the publisher's connections. */
  const proxied = async (name: string) => {
    const proxy = await TcpProxy.start(AMQP_URL, 5672);
    const d = await destination(name);
    const consumer = await consume(d);
    const close = async () => {
      await consumer.close();
      await proxy.close();
    };
    return { proxy, destination: d, consumer, close };
  };

  return {
    label: 'rabbitmq (amqp 0-9-1)',
    capabilities: { dedupeById: false, unknownDestination: true, structured: true },
    admin,
    publisher: (mode: CloudEventsMode) => amqpPublisher({ url: AMQP_URL, mode, source: 'conformance' }),
    destination,
    async unknownDestination() {
      return `${uniqueName('outbox_missing')}/nowhere`;
    },
    consume,
    async outage() {
      const { proxy, ...rest } = await proxied('outage');
      return {
        ...rest,
        publisher: amqpPublisher({ url: proxy.url(AMQP_URL), timeoutMs: 2000 }),
        stop: () => proxy.refuse(),
        start: () => proxy.accept(),
      };
    },
    async lostAck() {
      const { proxy, ...rest } = await proxied('lostack');
      return {
        ...rest,
        publisher: amqpPublisher({ url: proxy.url(AMQP_URL), timeoutMs: 5000 }),
        loseReplies: () => proxy.loseReplies(),
        cut: () => proxy.cut(),
      };
    },
    async close() {
      for (const queue of new Set(queues.values())) await admin.deleteQueue(queue).catch(() => undefined);
      for (const exchange of exchanges) await admin.deleteExchange(exchange).catch(() => undefined);
      await consumerConnection.close().catch(() => undefined);
      await adminConnection.close().catch(() => undefined);
    },
  };
}

export const amqpHarness: HarnessFactory = createAmqpHarness;
