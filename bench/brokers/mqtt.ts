/**
 * MQTT (Mosquitto) in the brokers scenario: one topic per run (`outbox-bench/<tag>.<type>`) and a
 * real subscriber on it for the whole run, which records each message's CloudEvents `id` user
 * property in arrival order (QoS 0 subscription: the broker pushes without waiting for the
 * subscriber's acks, so a busy bench process does not throttle the publishers). The raw client is
 * MQTT.js publishing what src/publishers/mqtt.ts publishes: MQTT 5, QoS 1 (counted on PUBACK),
 * persistent session, the attributes as user properties, with no more in flight than the
 * broker's Receive Maximum (Mosquitto: 20), as our publisher.
 */
import { randomUUID } from 'node:crypto';
import { connectAsync, type IConnackPacket, type MqttClient } from 'mqtt';
import { cloudEventContext } from '../../src/core/envelope.js';
import { mqttPublisher } from '../../src/publishers/mqtt.js';
import { type BenchEnv, onCleanup } from '../env.js';
import { EVENT_TYPE } from '../workload.js';
import { type BrokerBench, type Delivered, settledCount } from './broker.js';

export const MQTT_URL = process.env.OUTBOX_BENCH_MQTT_URL ?? 'mqtt://127.0.0.1:1883';

const SESSION_EXPIRY_SECONDS = 3_600;

/** The broker's Receive Maximum from its CONNACK (65535 when absent), as our publisher reads it. */
function receiveMaximumOf(client: MqttClient): number {
  const connack = (client as unknown as { connackPacket?: IConnackPacket }).connackPacket;
  return connack?.properties?.receiveMaximum ?? 65_535;
}

export async function openMqtt(env: BenchEnv): Promise<BrokerBench> {
  const prefix = `outbox-bench/${env.tag}`;
  const topic = `${prefix}.${EVENT_TYPE}`;
  const subscriber = await connectAsync(MQTT_URL, {
    protocolVersion: 5,
    clientId: `outbox-bench-consumer-${env.tag}`,
    clean: true,
  });
  subscriber.on('error', () => {});
  let ids: string[] = [];
  subscriber.on('message', (_topic, _payload, packet) => {
    ids.push(String(packet.properties?.userProperties?.id));
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unhook();
    await subscriber.endAsync().catch(() => {});
  };
  const unhook = onCleanup(close);
  await subscriber.subscribeAsync(topic, { qos: 0 });

  return {
    label: 'MQTT (Mosquitto)',
    prefix,
    rawNote: 'MQTT.js alone: MQTT 5, QoS 1 counted on PUBACK, the same user properties, persistent session',
    verifyNote: 'a subscriber on the topic',
    publisher: () => mqttPublisher({ url: MQTT_URL }),
    async openRaw(window) {
      const client = await connectAsync(
        MQTT_URL,
        {
          protocolVersion: 5,
          clientId: `outbox-bench-raw-${env.tag}-${randomUUID().slice(0, 8)}`,
          clean: false,
          properties: { sessionExpiryInterval: SESSION_EXPIRY_SECONDS },
        },
        false,
      );
      client.on('error', () => {});
      return {
        window: Math.min(window, receiveMaximumOf(client)),
        async publish(m) {
          const { datacontenttype, ...userProperties } = cloudEventContext(m, 'outbox');
          await client.publishAsync(m.destination, m.payload, {
            qos: 1,
            properties: { contentType: datacontenttype, userProperties },
          });
        },
        async close() {
          await client.endAsync(false, { properties: { sessionExpiryInterval: 0 } }).catch(() => {});
        },
      };
    },
    async delivered(expected, withIds): Promise<Delivered> {
      const count = await settledCount(() => ids.length, expected);
      return withIds ? { count, ids: ids.slice(0, count) } : { count };
    },
    async reset() {
      ids = [];
    },
    close,
  };
}
