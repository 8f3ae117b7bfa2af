/**
 * mqttPublisher against real Mosquitto brokers: the conformance suite on the machine's broker (its
 * outage on a private Mosquitto, its lost ack through a proxy), then what is MQTT's own: QoS 0
 * refused, MQTT 3.1.1 structured-only, PUBACK reason codes, a broker that stops answering.
 * Every delivery is checked by a separate subscriber, never by the publisher's own result.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, connectAsync } from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { PermanentError, PublishError } from '../../src/core/errors.js';
import type { PublishResult } from '../../src/core/ports.js';
import { MQTT_PUBLISHER_DEFAULTS, mqttGrammar, mqttPublisher } from '../../src/publishers/mqtt.js';
import { describePublisher } from '../conformance/publisher.suite.js';
import { outboundMessage } from '../helpers/brokers/messages.js';
import { MQTT_URL, mqttHarness, mqttTopic, startMqttConsumer } from '../helpers/brokers/mqtt.js';
import { expectOutboxError } from '../helpers/expect-error.js';
import { freePort, startMosquitto, stopProcess } from '../helpers/private-servers.js';
import { serviceSkipReason } from '../helpers/services.js';

describePublisher('mqtt (mosquitto)', mqttHarness);

const WAIT_MS = 10_000;
const message = outboundMessage;

function failure(result: PublishResult | undefined): PublishError {
  expect(result?.ok).toBe(false);
  const error = (result as { error: unknown }).error;
  expect(error).toBeInstanceOf(PublishError);
  return error as PublishError;
}

describe('mqttPublisher options', () => {
  const url = 'mqtt://127.0.0.1:1883';

  it('refuses QoS 0: fire-and-forget cannot back at-least-once delivery', () => {
    expectOutboxError(
      () => mqttPublisher({ url, qos: 0 as 1 }),
      'INVALID_CONFIG',
      '`qos`',
      'fire-and-forget',
    );
    expectOutboxError(() => mqttPublisher({ url, qos: 3 as 1 }), 'INVALID_CONFIG', '`qos`');
  });

  it('refuses binary mode on MQTT 3.1.1, which has no properties to carry the attributes', () => {
    expectOutboxError(
      () => mqttPublisher({ url, protocolVersion: 4, mode: 'binary' }),
      'INVALID_CONFIG',
      '`mode`',
      'no properties',
    );
    expectOutboxError(
      () => mqttPublisher({ url, protocolVersion: 3 as 4 }),
      'INVALID_CONFIG',
      'protocolVersion',
    );
  });

  it('needs exactly one of client or url, an mqtt:// url, and sane values', () => {
    expectOutboxError(() => mqttPublisher({}), 'INVALID_CONFIG', 'exactly one');
    expectOutboxError(() => mqttPublisher({ url: 'http://127.0.0.1:1883' }), 'UNSUPPORTED_URL', 'mqtt://');
    expectOutboxError(() => mqttPublisher({ url, timeoutMs: 0 }), 'INVALID_CONFIG', 'timeoutMs');
    expectOutboxError(() => mqttPublisher({ url, source: '' }), 'INVALID_CONFIG', 'source');
    expectOutboxError(() => mqttPublisher({ url, clientId: '' }), 'INVALID_CONFIG', 'clientId');
    expectOutboxError(() => mqttPublisher({ url, mode: 'text' as 'binary' }), 'INVALID_CONFIG', 'mode');
    // The client you build decides its protocol and client id.
    const client = connect(url, { manualConnect: true });
    expectOutboxError(() => mqttPublisher({ client, clientId: 'x' }), 'INVALID_CONFIG', 'clientId');
    expectOutboxError(
      () => mqttPublisher({ client, protocolVersion: 5 }),
      'INVALID_CONFIG',
      'protocolVersion',
    );
    expectOutboxError(() => mqttPublisher({ client, url }), 'INVALID_CONFIG', 'exactly one');
  });

  it('validates topics with the MQTT grammar and declares no broker-side dedupe', () => {
    const publisher = mqttPublisher({ url });
    expect(publisher.kind).toBe('mqtt');
    expect(publisher.capabilities.dedupeById).toBe(false);
    expect(publisher.validateDestination).toBe(mqttGrammar);
    expect(MQTT_PUBLISHER_DEFAULTS).toMatchObject({ qos: 1, protocolVersion: 5, mode: 'binary' });
    expect(mqttGrammar('orders/eu west/créé')).toBeUndefined();
    expect(mqttGrammar('')).toMatch(/empty/);
    expect(mqttGrammar('orders/+/created')).toMatch(/wildcard/);
    expect(mqttGrammar('orders/#')).toMatch(/wildcard/);
    expect(mqttGrammar('$SYS/broker')).toMatch(/\$/);
    expect(mqttGrammar('a\u0000b')).toMatch(/NUL/);
    expect(mqttGrammar('a\tb')).toMatch(/control/);
    expect(mqttGrammar('a\ud800b')).toMatch(/UTF-16/);
    expect(mqttGrammar('é'.repeat(32_768))).toMatch(/65535/);
  });
});

const skip = await serviceSkipReason('Mosquitto', MQTT_URL, 1883);

describe.skipIf(skip)('mqttPublisher (real Mosquitto)', () => {
  const dirs: string[] = [];
  const brokers: ChildProcess[] = [];
  afterAll(async () => {
    await Promise.all(brokers.map((broker) => stopProcess(broker)));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** A private Mosquitto (own port, own persistence dir), stopped after the file's tests. */
  async function privateBroker(acl?: string) {
    const dir = mkdtempSync(join(tmpdir(), 'outbox-mosquitto-'));
    dirs.push(dir);
    if (acl !== undefined) writeFileSync(join(dir, 'acl'), acl);
    const port = await freePort();
    const proc = await startMosquitto(port, dir, acl === undefined ? '' : `acl_file ${join(dir, 'acl')}`);
    brokers.push(proc);
    return { dir, port, url: `mqtt://127.0.0.1:${port}`, proc };
  }

  it('MQTT 3.1.1 (protocolVersion 4) sends structured documents, which a 3.1.1 subscriber reads', async () => {
    const topic = mqttTopic('v311');
    const consumer = await startMqttConsumer(topic, { protocolVersion: 4 });
    const publisher = mqttPublisher({ url: MQTT_URL, protocolVersion: 4, source: 'orders' });
    try {
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const sent = message(topic, { headers: { tenant: 'acme', traceparent } });
      expect(await publisher.publish([sent])).toEqual([{ ok: true }]);
      const [got] = await consumer.waitFor(1, WAIT_MS);
      expect(got!.attributes).toMatchObject({
        specversion: '1.0',
        id: sent.id,
        source: 'orders',
        partitionkey: sent.key,
        traceparent, // an attribute in the document, so it travels even without user properties
      });
      expect(got!.contentType).toBe('application/json');
      expect(JSON.parse(got!.data)).toEqual(JSON.parse(sent.payload));
      // 3.1.1 has no user properties: the event's own headers cannot travel (documented).
      expect(got!.headers).toEqual({});
    } finally {
      await publisher.close();
      await consumer.close();
    }
  });

  it("QoS 2: a batch beyond the broker's Receive Maximum (Mosquitto: 20) arrives, exactly once each", async () => {
    const topic = mqttTopic('qos2');
    const consumer = await startMqttConsumer(topic);
    const publisher = mqttPublisher({ url: MQTT_URL, qos: 2 });
    try {
      const sent = Array.from({ length: 100 }, () => message(topic));
      expect(await publisher.publish(sent)).toEqual(sent.map(() => ({ ok: true })));
      const got = await consumer.waitFor(100, WAIT_MS);
      await sleep(200); // a duplicate would arrive right behind
      expect(got.map((r) => r.attributes.id).sort()).toEqual(sent.map((m) => m.id).sort());
    } finally {
      await publisher.close();
      await consumer.close();
    }
  });

  it('dead-letters at once a topic or a header MQTT cannot carry, and the connection keeps working', async () => {
    const topic = mqttTopic('bad');
    const consumer = await startMqttConsumer(topic);
    const publisher = mqttPublisher({ url: MQTT_URL });
    try {
      const good = message(topic);
      const results = await publisher.publish([
        message('orders/#'),
        message(topic, { headers: { note: 'a\tb' } }),
        message(topic, { headers: { type: 'forged' } }),
        good,
      ]);
      expect(failure(results[0])).toBeInstanceOf(PermanentError);
      expect(failure(results[0]).message).toMatch(/'orders\/#' contains a wildcard/);
      expect(failure(results[1])).toBeInstanceOf(PermanentError);
      expect(failure(results[1]).message).toMatch(/header 'note'/);
      expect(failure(results[2]).message).toMatch(/header 'type' clashes with the CloudEvents attribute/);
      expect(results[3]).toEqual({ ok: true });
      const got = await consumer.waitFor(1, WAIT_MS);
      expect(got.map((r) => r.attributes.id)).toEqual([good.id]);
    } finally {
      await publisher.close();
      await consumer.close();
    }
  });

  it('a message nobody subscribes to is acked (0x10 no matching subscribers): the broker drops it', async () => {
    const publisher = mqttPublisher({ url: MQTT_URL });
    try {
      expect(await publisher.publish([message(mqttTopic('nobody'))])).toEqual([{ ok: true }]);
    } finally {
      await publisher.close();
    }
  });

  it('a PUBACK with a failure reason code (0x87 not authorized) is a retryable failure naming the code', async () => {
    // Anonymous clients may write under allowed/ only.
    const broker = await privateBroker('topic readwrite allowed/#\n');
    const v5 = mqttPublisher({ url: broker.url });
    const v311 = mqttPublisher({ url: broker.url, protocolVersion: 4 });
    try {
      const error = failure((await v5.publish([message('denied/orders')]))[0]);
      expect(error.retryable).toBe(true);
      expect(error.message).toMatch(/refused the publish to 'denied\/orders': .*Not authorized.*0x87/);
      expect(error.details).toMatchObject({ reasonCode: 0x87 });
      // MQTT 3.1.1 acks have no reason code: the same refusal is acked and dropped (documented).
      expect(await v311.publish([message('denied/orders')])).toEqual([{ ok: true }]);
    } finally {
      await v5.close();
      await v311.close();
    }
  });

  it('fails (retryable) while the broker cannot be reached, and leaves a user client open', async () => {
    const unreachable = mqttPublisher({ url: 'mqtt://127.0.0.1:1', timeoutMs: 1000 });
    const error = failure((await unreachable.publish([message(mqttTopic('x'))]))[0]);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/cannot connect to MQTT broker at mqtt:\/\/127\.0\.0\.1:1/);
    await unreachable.close();

    const client = await connectAsync(MQTT_URL, { protocolVersion: 5 });
    const mine = mqttPublisher({ client });
    expect(await mine.publish([message(mqttTopic('user-client'))])).toEqual([{ ok: true }]);
    await mine.close();
    expect(client.connected).toBe(true); // close() never ends a client it did not create
    await client.endAsync();
    const closed = failure((await mqttPublisher({ client }).publish([message(mqttTopic('x'))]))[0]);
    expect(closed.retryable).toBe(true);
  });

  it('a publish that gets no PUBACK in time fails (retryable) and says the client is not connected', async () => {
    const broker = await privateBroker();
    const publisher = mqttPublisher({ url: broker.url, timeoutMs: 500 });
    try {
      expect(await publisher.publish([message(mqttTopic('before'))])).toEqual([{ ok: true }]);
      await stopProcess(broker.proc);
      const error = failure((await publisher.publish([message(mqttTopic('during'))]))[0]);
      expect(error.retryable).toBe(true);
      expect(error.message).toMatch(/no PUBACK .* within 500 ms \(not connected to the broker\)/);
    } finally {
      await publisher.close();
    }
  });
});
