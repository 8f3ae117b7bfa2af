/**
 * amqpPublisher against the machine's real RabbitMQ: the conformance suite (its outage and lost
 * confirm through a TCP proxy), then what is particular to AMQP (returns of unroutable messages,
 * channels closed by a missing exchange, connections cut by the proxy right after a publish while
 * the relay runs). Every delivery is checked by a consumer on a separate connection, never by
 * trusting the publisher's own result.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PermanentError } from '../../src/core/errors.js';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { createOutbox, silentLogger } from '../../src/index.js';
import { AMQP_PUBLISHER_DEFAULTS, amqpGrammar, amqpPublisher } from '../../src/publishers/amqp.js';
import type { BatchReport } from '../../src/relay/relay.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { describePublisher } from '../conformance/publisher.suite.js';
import { AMQP_URL, type AmqpHarness, amqpHarness, createAmqpHarness } from '../helpers/brokers/amqp.js';
import { failure, tenantMessage } from '../helpers/brokers/publish-fixtures.js';
import { expectOutboxError } from '../helpers/expect-error.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

describePublisher('rabbitmq (amqp 0-9-1)', amqpHarness);

const WAIT_MS = 10_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('amqpPublisher options and destinations', () => {
  it('refuses bad options up front, naming the key', () => {
    expectOutboxError(() => amqpPublisher({}), 'INVALID_CONFIG', 'exactly one of `connection` or `url`');
    expectOutboxError(
      () => amqpPublisher({ url: AMQP_URL, connection: {} as never }),
      'INVALID_CONFIG',
      'exactly one',
    );
    expectOutboxError(() => amqpPublisher({ connection: {} as never }), 'INVALID_CONFIG', '`connection`');
    expectOutboxError(() => amqpPublisher({ url: 'nats://127.0.0.1' }), 'UNSUPPORTED_URL', 'amqp://');
    expectOutboxError(() => amqpPublisher({ url: 'amqp://[bad' }), 'INVALID_CONFIG', '`url`');
    expectOutboxError(
      () => amqpPublisher({ url: AMQP_URL, mode: 'both' as never }),
      'INVALID_CONFIG',
      '`mode`',
    );
    expectOutboxError(() => amqpPublisher({ url: AMQP_URL, source: '' }), 'INVALID_CONFIG', '`source`');
    for (const timeoutMs of [0, -1, 1.5])
      expectOutboxError(() => amqpPublisher({ url: AMQP_URL, timeoutMs }), 'INVALID_CONFIG', '`timeoutMs`');
    expect(AMQP_PUBLISHER_DEFAULTS).toEqual({ mode: 'binary', source: 'outbox', timeoutMs: 10_000 });
    expect(Object.isFrozen(AMQP_PUBLISHER_DEFAULTS)).toBe(true);
  });

  it('accepts <exchange>/<routing key> and a queue name alone; refuses what RabbitMQ cannot take', () => {
    for (const ok of [
      'orders/order.created',
      'billing-queue',
      'amq.topic/a.b.#',
      'fan_out:v1/',
      'ex/key with space/and/slashes',
    ])
      expect(amqpGrammar(ok), ok).toBeUndefined();
    expect(amqpGrammar('')).toBe('is empty');
    expect(amqpGrammar('/key')).toMatch(/empty exchange name/);
    expect(amqpGrammar('or ders/key')).toMatch(/exchange name with characters/);
    expect(amqpGrammar(`${'x'.repeat(256)}/key`)).toMatch(/exchange name longer than 255/);
    expect(amqpGrammar(`ex/${'é'.repeat(128)}`)).toMatch(/routing key longer than 255 bytes/);
    expect(amqpGrammar('x'.repeat(256))).toMatch(/routing key longer than 255 bytes/);
    expect(amqpGrammar('ex/a\nb')).toBe('contains control characters');
    expect(amqpPublisher({ url: AMQP_URL }).validateDestination?.('/key')).toMatch(/empty exchange/);
  });
});

describe('amqpPublisher (real RabbitMQ)', () => {
  let h: AmqpHarness;
  let skip: string | undefined;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    const made = await createAmqpHarness();
    if (typeof made === 'string') skip = made;
    else h = made;
  });
  afterAll(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await h?.close();
  });

  /** A publisher closed after the file's tests. */
  function publisher(options: Parameters<typeof amqpPublisher>[0] = { url: AMQP_URL }) {
    const p = amqpPublisher(options);
    closers.push(() => p.close());
    return p;
  }

  async function consumed(name: string, via: 'exchange' | 'queue' = 'exchange') {
    const destination = await h.destination(name, via);
    const consumer = await h.consume(destination);
    closers.push(() => consumer.close());
    return { destination, consumer };
  }

  it('sends a persistent message with messageId, type, timestamp, content type and cloudEvents:* headers (trace context included)', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { destination, consumer } = await consumed('props');
    const sent = tenantMessage(destination);
    expect(await publisher({ url: AMQP_URL, source: 'orders-service' }).publish([sent])).toEqual([
      { ok: true },
    ]);
    await consumer.waitFor(1, WAIT_MS);
    const got = consumer.messages[0];
    expect(got!.content.toString('utf8')).toBe(sent.payload);
    expect(got!.properties).toMatchObject({
      deliveryMode: 2,
      messageId: sent.id,
      type: 'order.created',
      contentType: 'application/json',
      timestamp: Math.floor(sent.createdAt.getTime() / 1000),
    });
    expect(got!.properties.headers).toEqual({
      'cloudEvents:specversion': '1.0',
      'cloudEvents:id': sent.id,
      'cloudEvents:type': 'order.created',
      'cloudEvents:source': 'orders-service',
      'cloudEvents:subject': sent.aggregateId,
      'cloudEvents:time': '2025-01-02T03:04:05.678Z',
      'cloudEvents:partitionkey': sent.key,
      'cloudEvents:traceparent': sent.headers.traceparent,
      tenant: 'acme',
    });
  });

  it('structured mode: the CloudEvents document (trace context included) as the body, application/cloudevents+json, own headers as headers', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { destination, consumer } = await consumed('structured');
    const sent = tenantMessage(destination);
    expect(await publisher({ url: AMQP_URL, mode: 'structured' }).publish([sent])).toEqual([{ ok: true }]);
    await consumer.waitFor(1, WAIT_MS);
    const got = consumer.messages[0]!;
    expect(got.properties).toMatchObject({
      contentType: 'application/cloudevents+json',
      messageId: sent.id,
      deliveryMode: 2,
    });
    expect(got.properties.headers).toEqual({ tenant: 'acme' });
    expect(JSON.parse(got.content.toString('utf8'))).toEqual({
      specversion: '1.0',
      id: sent.id,
      type: 'order.created',
      source: 'outbox',
      subject: sent.aggregateId,
      time: '2025-01-02T03:04:05.678Z',
      partitionkey: sent.key,
      traceparent: sent.headers.traceparent,
      datacontenttype: 'application/json',
      data: JSON.parse(sent.payload),
    });
  });

  it('a destination without "/" goes through the default exchange straight to the queue of that name', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { destination: queue, consumer } = await consumed('direct', 'queue');
    expect(queue).not.toContain('/');
    const sent = tenantMessage(queue);
    expect(await publisher().publish([sent])).toEqual([{ ok: true }]);
    const [got] = await consumer.waitFor(1, WAIT_MS);
    expect(got!.attributes.id).toBe(sent.id);
    expect(consumer.messages[0]!.fields).toMatchObject({ exchange: '', routingKey: queue });
  });

  it('an unroutable message (returned by the broker) is a retryable failure, never "published"', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { destination, consumer } = await consumed('routed');
    const exchange = destination.split('/')[0]!;
    const p = publisher();
    const results = await p.publish([
      tenantMessage(`${exchange}/nobody.binds.this`),
      tenantMessage(`outbox_no_such_queue_${process.pid}`),
      tenantMessage(destination),
    ]);
    const noBinding = failure(results[0]);
    expect(noBinding.retryable).toBe(true);
    expect(noBinding.message).toContain(
      `no queue is bound to exchange '${exchange}' for routing key 'nobody.binds.this'`,
    );
    expect(noBinding.message).toMatch(/312 NO_ROUTE/);
    const noQueue = failure(results[1]);
    expect(noQueue.retryable).toBe(true);
    expect(noQueue.message).toContain(`no queue named 'outbox_no_such_queue_${process.pid}' exists`);
    expect(results[2]).toEqual({ ok: true });
    await consumer.waitFor(1, WAIT_MS);
    await sleep(200);
    expect(consumer.received).toHaveLength(1);
    // The channel stays usable after returns.
    expect(await p.publish([tenantMessage(destination)])).toEqual([{ ok: true }]);
  });

  it('an unknown exchange fails only its own messages (retryable, naming the exchange), not the others in flight', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { destination, consumer } = await consumed('neighbour');
    const unknown = await h.unknownDestination();
    const p = publisher();
    const sent = [
      tenantMessage(destination),
      tenantMessage(unknown),
      tenantMessage(destination),
      tenantMessage(unknown),
      tenantMessage(destination),
    ];
    const results = await p.publish(sent);
    for (const i of [1, 3]) {
      const error = failure(results[i]);
      expect(error.retryable).toBe(true);
      expect(error.message).toContain(`exchange '${unknown.split('/')[0]}' does not exist`);
    }
    for (const i of [0, 2, 4]) expect(results[i]).toEqual({ ok: true });
    const got = await consumer.waitFor(3, WAIT_MS);
    expect(new Set(got.map((r) => r.attributes.id))).toEqual(
      new Set([sent[0]!.id, sent[2]!.id, sent[4]!.id]),
    );
  });

  it('an exchange deleted after its check fails the messages in flight, is looked up again, and the channel reopens', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { destination, consumer } = await consumed('deleted');
    const other = await consumed('survivor');
    const exchange = destination.split('/')[0]!;
    const p = publisher();
    expect(await p.publish([tenantMessage(destination)])).toEqual([{ ok: true }]);
    await h.admin.deleteExchange(exchange);
    // The cached check says it exists, so this goes out and RabbitMQ closes the channel (404).
    const closedBy = failure((await p.publish([tenantMessage(destination)]))[0]);
    expect(closedBy.retryable).toBe(true);
    expect(closedBy.message).toMatch(/404|NOT_FOUND/);
    // The next attempt checks again instead of closing the channel once more.
    const missing = failure((await p.publish([tenantMessage(destination)]))[0]);
    expect(missing.message).toContain(`exchange '${exchange}' does not exist`);
    // A fresh channel carries the rest.
    const next = tenantMessage(other.destination);
    expect(await p.publish([next])).toEqual([{ ok: true }]);
    expect((await other.consumer.waitFor(1, WAIT_MS))[0]!.attributes.id).toBe(next.id);
    expect(consumer.received).toHaveLength(1);
  });

  it('refuses, for good, a message it could never send: a bad destination or a CC/BCC header', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { destination } = await consumed('refused');
    const results = await publisher().publish([
      tenantMessage('/no-exchange'),
      tenantMessage(destination, { headers: { CC: 'elsewhere' } }),
      tenantMessage(destination, { headers: { BCC: 'elsewhere' } }),
    ]);
    for (const result of results) expect(failure(result)).toBeInstanceOf(PermanentError);
    expect(failure(results[0]).message).toContain("destination '/no-exchange' has an empty exchange name");
    expect(failure(results[1]).message).toContain("event header 'CC' cannot be sent over AMQP");
  });

  it('uses a connection you pass in and leaves it open on close()', async (ctx) => {
    if (skip) ctx.skip(skip);
    const connection = await connect(AMQP_URL);
    let closed = false;
    connection.on('close', () => {
      closed = true;
    });
    try {
      const { destination, consumer } = await consumed('given');
      const p = amqpPublisher({ connection });
      const sent = tenantMessage(destination);
      expect(await p.publish([sent])).toEqual([{ ok: true }]);
      await p.close();
      await sleep(100);
      expect(closed).toBe(false);
      expect((await consumer.waitFor(1, WAIT_MS))[0]!.attributes.id).toBe(sent.id);
      // Still usable by its owner.
      const channel = await connection.createChannel();
      await channel.close();
      // A closed publisher fails (retryably), it does not throw.
      expect(failure((await p.publish([tenantMessage(destination)]))[0]).message).toMatch(/closed/);
    } finally {
      await connection.close().catch(() => undefined);
    }
  });

  it('fails (retryable) once the connection you passed in is closed: it is yours to replace', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { destination } = await consumed('gone');
    const connection = await connect(AMQP_URL);
    const p = publisher({ connection });
    expect(await p.publish([tenantMessage(destination)])).toEqual([{ ok: true }]);
    await connection.close();
    const error = failure((await p.publish([tenantMessage(destination)]))[0]);
    expect(error.retryable).toBe(true);
    expect(error.message).toContain(`AMQP publish to '${destination}' failed`);
  });

  it('fails (retryable) when RabbitMQ cannot be reached, naming the host but not the password', async (ctx) => {
    if (skip) ctx.skip(skip);
    const p = publisher({ url: 'amqp://guest:s3cret@127.0.0.1:1/vhost' });
    const results = await p.publish([tenantMessage('q1'), tenantMessage('q2')]);
    for (const result of results) {
      const error = failure(result);
      expect(error.retryable).toBe(true);
      expect(error.message).toContain('cannot connect to RabbitMQ at amqp://127.0.0.1:1/vhost');
      expect(error.message).not.toContain('s3cret');
    }
  });

  it('through the relay, connections cut mid-run: nothing lost, order per key kept, duplicates share the messageId', async (ctx) => {
    if (skip) ctx.skip(skip);
    const total = 300;
    const proxy = await TcpProxy.start(AMQP_URL, 5672);
    closers.push(() => proxy.close());
    const cutAt = new Set([40, 110, 180, 250]);
    const destination = await h.destination('cuts');
    let arrived = 0;
    const consumer = await h.consume(destination, () => {
      arrived += 1;
      // Cut while the relay is publishing: confirms in flight are lost, the publisher reconnects.
      if (cutAt.has(arrived)) proxy.cutAfterNextSend = true;
    });
    closers.push(() => consumer.close());
    const dir = mkdtempSync(join(tmpdir(), 'outbox-amqp-'));
    const path = join(dir, 'app.db');
    const outbox = createOutbox({
      database: sqliteStore({ path }),
      publishers: { rabbit: publisher({ url: proxy.url(AMQP_URL), timeoutMs: 3000 }) },
      routes: [{ destination }],
      relay: { logger: silentLogger, batchSize: 50, maxAttempts: 1000, backoff: { baseMs: 5, capMs: 100 } },
    });
    const relay = outbox.relay();
    let db: Database.Database | undefined;
    try {
      await outbox.migrate();
      const app = new Database(path);
      db = app;
      app.exec('CREATE TABLE ledger (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, key TEXT NOT NULL)');
      const record = app.prepare('INSERT INTO ledger (id, key) VALUES (?, ?)');
      for (let i = 0; i < total; i++)
        app.transaction(() => {
          const event = {
            type: 'order.updated',
            aggregateType: 'order',
            aggregateId: `k${i % 7}`,
            payload: { i },
          };
          record.run(outbox.add(fromBetterSqlite3(app), event) as string, `order:k${i % 7}`);
        })();
      let retried = 0;
      relay.on('batch', (report: BatchReport) => {
        retried += report.retried.length;
      });
      await relay.start();
      const deadline = Date.now() + 30_000;
      for (;;) {
        const status = await outbox.status();
        if (status.pending === 0 || Date.now() > deadline) break;
        await sleep(50);
      }
      await relay.stop();
      expect(await outbox.status()).toMatchObject({ pending: 0, dead: 0 });
      // Confirmed means queued: the consumer gets every one shortly (duplicates count once).
      const distinct = () => new Set(consumer.received.map((r) => r.attributes.id)).size;
      for (const until = Date.now() + WAIT_MS; distinct() < total && Date.now() < until; ) await sleep(50);

      const ledger = app.prepare('SELECT id, key FROM ledger ORDER BY seq').all() as {
        id: string;
        key: string;
      }[];
      const got = consumer.received;
      expect(new Set(got.map((r) => r.attributes.id))).toEqual(new Set(ledger.map((e) => e.id)));
      for (const m of consumer.messages)
        expect(m.properties.messageId).toBe(m.properties.headers?.['cloudEvents:id']);
      for (const key of new Set(ledger.map((e) => e.key))) {
        const expected = ledger.filter((e) => e.key === key).map((e) => e.id);
        const seen: string[] = [];
        for (const { attributes: a } of got)
          if (a.partitionkey === key && a.id !== undefined && !seen.includes(a.id)) seen.push(a.id);
        expect(seen, `order of key ${key}`).toEqual(expected);
      }
      // The cuts failed publishes in flight (retried later) and forced new connections.
      expect(retried).toBeGreaterThan(0);
      expect(proxy.connections).toBeGreaterThan(1);
    } finally {
      await relay.stop();
      db?.close();
      await outbox.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
