/**
 * The MQTT harness for the publisher conformance suite: mqttPublisher against the machine's
 * Mosquitto, verified by a separate MQTT client subscribed with QoS 1 on a persistent session
 * (so it also gets what was published while it was reconnecting). Its outage runs on a private
 * Mosquitto (persistence in a temp dir), its lost acks through a TCP proxy in front of the
 * machine's broker.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type IPublishPacket, type MqttClient } from 'mqtt';
import { STRUCTURED_CONTENT_TYPE } from '../../../src/core/envelope.js';
import { mqttPublisher } from '../../../src/publishers/mqtt.js';
import type { Consumer, HarnessFactory, Received } from '../../conformance/publisher.suite.js';
import { freePort, MOSQUITTO, missingBinary, startMosquitto, stopProcess } from '../private-servers.js';
import { serviceSkipReason } from '../services.js';
import { TcpProxy } from '../tcp-proxy.js';

export const MQTT_URL = process.env.OUTBOX_TEST_MQTT_URL ?? 'mqtt://127.0.0.1:1883';

/** The CloudEvents attributes the binary mode sends as user properties (all others are own headers). */
const ATTRIBUTE_NAMES = new Set([
  'specversion',
  'id',
  'type',
  'source',
  'subject',
  'time',
  'partitionkey',
  'traceparent',
  'tracestate',
]);

/** A fresh topic unique to this run and `name`. */
export function mqttTopic(name: string): string {
  return `outbox-test/${randomUUID()}/${name}`;
}

/** Decodes one received message, binary or structured, MQTT 5 or 3.1.1. */
export function decodeMqtt(topic: string, payload: Buffer, packet: IPublishPacket): Received {
  const properties = packet.properties ?? {};
  // MQTT 3.1.1 has no properties at all: there the publisher only sends structured documents.
  const structured = packet.properties === undefined || properties.contentType === STRUCTURED_CONTENT_TYPE;
  const headers: Record<string, string> = {};
  const attributes: Record<string, string> = {};
  for (const [name, value] of Object.entries(properties.userProperties ?? {})) {
    // A repeated name arrives as an array: keep every value visible rather than pick one.
    const text = Array.isArray(value) ? value.join(',') : value;
    if (!structured && ATTRIBUTE_NAMES.has(name)) attributes[name] = text;
    else headers[name] = text;
  }
  if (!structured)
    return {
      destination: topic,
      attributes,
      contentType: properties.contentType ?? '',
      headers,
      data: payload.toString(),
    };
  const { data, datacontenttype, ...context } = JSON.parse(payload.toString()) as Record<string, unknown>;
  for (const [name, value] of Object.entries(context)) attributes[name] = String(value);
  return {
    destination: topic,
    attributes,
    contentType: String(datacontenttype),
    headers,
    data: JSON.stringify(data),
  };
}

export interface MqttConsumer extends Consumer {
  readonly client: MqttClient;
}

/**
 * A real subscriber on `topic`: QoS 1, persistent session (clean: false), subscribed before this
 * resolves. It keeps reconnecting until closed, and its session then goes away with it.
 */
export async function startMqttConsumer(
  topic: string,
  options: { url?: string; protocolVersion?: 4 | 5 } = {},
): Promise<MqttConsumer> {
  const { url = MQTT_URL, protocolVersion = 5 } = options;
  const client = await connectAsync(url, {
    protocolVersion,
    clientId: `outbox-test-consumer-${randomUUID()}`,
    clean: false,
    reconnectPeriod: 200,
    ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
  });
  client.on('error', () => undefined); // reconnects by itself; a test sees missing messages instead
  const received: Received[] = [];
  const waiters = new Set<() => void>();
  client.on('message', (t, payload, packet) => {
    received.push(decodeMqtt(t, payload, packet));
    for (const check of waiters) check();
  });
  await client.subscribeAsync(topic, { qos: 1 });
  return {
    client,
    received,
    waitFor(count, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `MQTT consumer on '${topic}': ${received.length} of ${count} messages after ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
        function check() {
          if (received.length < count) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(received);
        }
        waiters.add(check);
        check();
      });
    },
    async close() {
      // Session expiry 0 on DISCONNECT: the broker forgets this consumer's session at once (MQTT 5).
      await client.endAsync(false, protocolVersion === 5 ? { properties: { sessionExpiryInterval: 0 } } : {});
    },
  };
}

export const mqttHarness: HarnessFactory = async () => {
  const skip = await serviceSkipReason('Mosquitto', MQTT_URL, 1883);
  if (skip) return skip;
  const noServer = missingBinary(MOSQUITTO);
  return {
    label: 'mqtt (mosquitto)',
    capabilities: {
      dedupeById: false,
      unknownDestination:
        'MQTT has no unknown topics: the broker takes any topic, and drops a message no subscription matches',
      structured: true,
    },
    publisher: (mode) => mqttPublisher({ url: MQTT_URL, mode, source: 'conformance' }),
    destination: async (name) => mqttTopic(name),
    unknownDestination: () => Promise.reject(new Error('MQTT has no unknown destinations')),
    consume: (destination) => startMqttConsumer(destination),
    ...(noServer
      ? { outageUnsupported: `no private Mosquitto: ${noServer}` }
      : {
          async outage() {
            const dir = mkdtempSync(join(tmpdir(), 'outbox-mosquitto-'));
            const port = await freePort();
            let server = await startMosquitto(port, dir);
            const url = `mqtt://127.0.0.1:${port}`;
            const destination = mqttTopic('outage');
            const consumer = await startMqttConsumer(destination, { url });
            return {
              publisher: mqttPublisher({ url, timeoutMs: 1000 }),
              destination,
              consumer,
              // SIGTERM: Mosquitto saves the consumer's session (and what it queued for it) on the way out.
              stop: () => stopProcess(server),
              async start() {
                server = await startMosquitto(port, dir);
              },
              async close() {
                await consumer.close();
                await stopProcess(server);
                rmSync(dir, { recursive: true, force: true });
              },
            };
          },
        }),
    async lostAck() {
      const proxy = await TcpProxy.start(MQTT_URL, 1883);
      const destination = mqttTopic('lostack');
      const consumer = await startMqttConsumer(destination);
      return {
        // Long enough for MQTT.js to reconnect (every second) and send the message again itself.
        publisher: mqttPublisher({ url: proxy.url(MQTT_URL), timeoutMs: 10_000 }),
        destination,
        consumer,
        clientResends:
          'MQTT.js keeps an unacknowledged QoS 1 publish and sends it again after reconnecting, so the broker acks that copy',
        loseReplies: () => proxy.loseReplies(),
        cut: () => proxy.cut(),
        async close() {
          await consumer.close();
          await proxy.close();
        },
      };
    },
    close: async () => undefined,
  };
};
