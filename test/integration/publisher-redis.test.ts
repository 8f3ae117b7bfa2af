/**
 * redisPublisher against real Redis: the shared conformance suite (its outage on a private
 * redis-server killed with SIGKILL, its lost ack through a proxy), then what is Redis's own: the
 * entry's fields, WRONGTYPE, MAXLEN trimming, a server that is down, a cut connection, a server
 * that does not answer. Every delivery is checked by reading the stream back with XRANGE on a
 * separate client, never by trusting the publisher's own results.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PublishError } from '../../src/core/errors.js';
import type { OutboundMessage, Publisher, PublishResult } from '../../src/core/ports.js';
import { type RedisPublisherOptions, redisPublisher } from '../../src/publishers/redis.js';
import { describePublisher } from '../conformance/publisher.suite.js';
import { outboundMessage } from '../helpers/brokers/messages.js';
import { decodeEntry, REDIS_URL, redisHarness, redisSkip, testClient } from '../helpers/brokers/redis.js';
import { expectOutboxError } from '../helpers/expect-error.js';
import {
  freePort,
  missingBinary,
  REDIS_SERVER,
  startRedisServer as startServer,
  stopProcess,
} from '../helpers/private-servers.js';
import { uniqueName } from '../helpers/services.js';

describePublisher('redis streams', redisHarness);

const skip = await redisSkip();
const noRedisServer = missingBinary(REDIS_SERVER);
const message = outboundMessage;

/** Every entry of a stream, oldest first (none when the key does not exist). */
async function entriesOf(client: Awaited<ReturnType<typeof testClient>>, key: string) {
  return (await client.xRange(key, '-', '+')) ?? [];
}

function failure(result: PublishResult | undefined): PublishError {
  expect(result?.ok).toBe(false);
  const error = (result as { error: unknown }).error;
  expect(error).toBeInstanceOf(PublishError);
  return error as PublishError;
}

describe('redisPublisher options', () => {
  const url = 'redis://127.0.0.1:6379';
  const make = (options: Partial<RedisPublisherOptions>) => () =>
    redisPublisher(options as RedisPublisherOptions);

  it('needs exactly one of client or url', () => {
    expectOutboxError(make({}), 'INVALID_CONFIG', 'exactly one of `client` or `url`');
    const xAdd = async () => '1-0';
    const client = { isReady: true, xAdd, withAbortSignal: () => ({ xAdd }) };
    expectOutboxError(make({ client, url }), 'INVALID_CONFIG', 'exactly one of `client` or `url`');
  });

  it('takes redis:// and rediss:// URLs only, with a database number as the path', () => {
    expectOutboxError(make({ url: 'nats://127.0.0.1:4222' }), 'UNSUPPORTED_URL', 'redis:// or rediss://');
    expectOutboxError(make({ url: 'http://127.0.0.1:6379' }), 'UNSUPPORTED_URL', 'redis:// or rediss://');
    expectOutboxError(make({ url: 'not a url' }), 'INVALID_CONFIG', '`url` is not a valid URL');
    expectOutboxError(make({ url: 'redis://127.0.0.1/orders' }), 'INVALID_CONFIG', 'database number');
    for (const ok of ['redis://127.0.0.1', 'rediss://user:pw@example.com:6380/2', 'redis://h:1/'])
      expect(redisPublisher({ url: ok }).kind).toBe('redis');
  });

  it('refuses a maxLen that is not a positive integer, and other bad options, naming the key', () => {
    for (const maxLen of [0, -5, 1.5, Number.NaN, '10'])
      expect(
        expectOutboxError(make({ url, maxLen: maxLen as number }), 'INVALID_CONFIG', '`maxLen`').details,
      ).toMatchObject({ key: 'maxLen' });
    expectOutboxError(make({ url, timeoutMs: 0 }), 'INVALID_CONFIG', '`timeoutMs`');
    expectOutboxError(make({ url, mode: 'text' as 'binary' }), 'INVALID_CONFIG', '`mode`');
    expectOutboxError(make({ url, source: '' }), 'INVALID_CONFIG', '`source`');
    // A node-redis v4 client has xAdd but no withAbortSignal.
    const v4 = { isReady: true, xAdd: async () => '1-0' } as unknown as RedisPublisherOptions['client'];
    expectOutboxError(make({ client: v4 }), 'INVALID_CONFIG', 'node-redis v5+');
  });

  it('declares its kind, no broker-side dedupe, and the generic destination grammar', () => {
    const publisher = redisPublisher({ url, maxLen: 1000 });
    expect(publisher.kind).toBe('redis');
    expect(publisher.capabilities).toEqual({ dedupeById: false });
    expect(publisher.validateDestination?.('orders:{eu}')).toBeUndefined();
    expect(publisher.validateDestination?.('')).toBe('is empty');
    expect(publisher.validateDestination?.('two words')).toMatch(/whitespace/);
  });
});

describe.skipIf(skip)('redisPublisher (real Redis)', () => {
  let admin: Awaited<ReturnType<typeof testClient>>;
  const streams: string[] = [];
  const stream = (name: string) => {
    const key = uniqueName(`outbox-redis-${name}`);
    streams.push(key);
    return key;
  };

  beforeAll(async () => {
    admin = await testClient(REDIS_URL);
  });
  afterAll(async () => {
    if (streams.length > 0) await admin?.del(streams);
    admin?.destroy();
  });

  it('binary mode: ce- attributes (trace context included), content-type, the own headers and data as fields, in that order', async () => {
    const client = await testClient(REDIS_URL);
    const publisher = redisPublisher({ client, source: 'orders-service' });
    const key = stream('binary');
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const sent = message(key, { headers: { traceparent, tenant: 'acme' } });
    expect(await publisher.publish([sent])).toEqual([{ ok: true }]);
    const [entry] = await entriesOf(admin, key);
    expect(Object.entries(entry!.message)).toEqual([
      ['ce-specversion', '1.0'],
      ['ce-id', sent.id],
      ['ce-type', 'order.created'],
      ['ce-source', 'orders-service'],
      ['ce-subject', sent.aggregateId],
      ['ce-time', '2025-01-02T03:04:05.678Z'],
      ['ce-partitionkey', sent.key],
      ['ce-traceparent', traceparent],
      ['content-type', 'application/json'],
      ['tenant', 'acme'],
      ['data', sent.payload],
    ]);
    // The user's client is theirs: close() leaves it open.
    await publisher.close();
    expect(await client.ping()).toBe('PONG');
    client.destroy();
  });

  it('structured mode: content-type application/cloudevents+json, own headers, the document as data', async () => {
    const publisher = redisPublisher({ url: REDIS_URL, mode: 'structured' });
    const key = stream('structured');
    const sent = message(key, { headers: { tenant: 'acme' } });
    try {
      expect(await publisher.publish([sent])).toEqual([{ ok: true }]);
    } finally {
      await publisher.close();
    }
    const [entry] = await entriesOf(admin, key);
    expect(Object.keys(entry!.message)).toEqual(['content-type', 'tenant', 'data']);
    expect(entry!.message['content-type']).toBe('application/cloudevents+json');
    expect(JSON.parse(entry!.message.data!)).toMatchObject({
      specversion: '1.0',
      id: sent.id,
      source: 'outbox',
      datacontenttype: 'application/json',
      data: JSON.parse(sent.payload),
    });
    expect(decodeEntry(key, entry!.message).attributes.id).toBe(sent.id);
  });

  it('publishes a whole call at once: one result per message, in order, each entry once', async () => {
    const publisher = redisPublisher({ url: REDIS_URL });
    const key = stream('batch');
    const sent = Array.from({ length: 200 }, () => message(key));
    try {
      expect(await publisher.publish(sent)).toEqual(sent.map(() => ({ ok: true })));
    } finally {
      await publisher.close();
    }
    const ids = (await entriesOf(admin, key)).map((e) => e.message['ce-id']);
    expect(new Set(ids)).toEqual(new Set(sent.map((m) => m.id)));
    expect(ids).toHaveLength(200);
  });

  it('a key that exists and is not a stream (WRONGTYPE) is a retryable failure saying so; the rest go through', async () => {
    const publisher = redisPublisher({ url: REDIS_URL });
    const wrong = stream('wrongtype');
    const good = stream('good');
    await admin.set(wrong, 'a plain string');
    try {
      const results = await publisher.publish([message(good), message(wrong), message(good)]);
      expect(results[0]).toEqual({ ok: true });
      expect(results[2]).toEqual({ ok: true });
      const error = failure(results[1]);
      expect(error.retryable).toBe(true);
      expect(error.message).toContain(`Redis key '${wrong}' exists and is not a stream (WRONGTYPE)`);
      expect(error.details).toEqual({ stream: wrong });
      // An operator removes the key: the same publisher then creates the stream.
      await admin.del(wrong);
      expect(await publisher.publish([message(wrong)])).toEqual([{ ok: true }]);
    } finally {
      await publisher.close();
    }
    expect(await admin.xLen(good)).toBe(2);
    expect(await admin.type(wrong)).toBe('stream');
  });

  it('maxLen trims each stream to about maxLen entries (MAXLEN ~), the oldest first', async () => {
    const publisher = redisPublisher({ url: REDIS_URL, maxLen: 50 });
    const key = stream('trim');
    const sent = Array.from({ length: 1000 }, () => message(key));
    try {
      for (let i = 0; i < sent.length; i += 100)
        expect((await publisher.publish(sent.slice(i, i + 100))).every((r) => r.ok)).toBe(true);
    } finally {
      await publisher.close();
    }
    // Approximate trimming removes whole radix-tree nodes (stream-node-max-entries, 100 by default).
    const left = await entriesOf(admin, key);
    expect(left.length).toBeGreaterThanOrEqual(50);
    expect(left.length).toBeLessThan(sent.length);
    expect(left.map((e) => e.message['ce-id'])).toEqual(sent.slice(-left.length).map((m) => m.id));
  });
});

/** Private redis-servers started by this file, killed after its tests whatever happened. */
const servers = new Set<ChildProcess>();

async function startRedisServer(port: number, dir: string): Promise<ChildProcess> {
  const child = await startServer(port, dir);
  servers.add(child);
  child.once('exit', () => servers.delete(child));
  return child;
}

const killRedisServer = (child: ChildProcess) => stopProcess(child, 'SIGKILL');

/** Publishes `m` again until it goes through (each failure must be retryable); 10 s at most. */
async function publishUntilOk(publisher: Publisher, m: OutboundMessage): Promise<void> {
  for (let i = 0; i < 40; i++) {
    const [result] = await publisher.publish([m]);
    if (result?.ok) return;
    expect(failure(result).retryable).toBe(true);
    await sleep(250);
  }
  throw new Error(`'${m.id}' was not published within 40 attempts`);
}

describe.skipIf(noRedisServer)('redisPublisher (private redis-server)', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'outbox-redis-'));
  });
  afterAll(async () => {
    await Promise.all([...servers].map(killRedisServer));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a server that is down is a retryable failure naming it within timeoutMs; the same publisher recovers', async () => {
    const port = await freePort();
    const withPassword = redisPublisher({ url: `redis://:secret@127.0.0.1:${port}`, timeoutMs: 500 });
    const publisher = redisPublisher({ url: `redis://127.0.0.1:${port}`, timeoutMs: 500 });
    let child: ChildProcess | undefined;
    try {
      const startedAt = Date.now();
      const error = failure((await withPassword.publish([message('down')]))[0]);
      expect(Date.now() - startedAt).toBeLessThan(5000);
      expect(error.retryable).toBe(true);
      expect(error.message).toContain(`Redis at 127.0.0.1:${port} is not connected`);
      expect(error.message).toContain('ECONNREFUSED');
      expect(error.message).not.toContain('secret');
      failure((await publisher.publish([message('down')]))[0]);
      child = await startRedisServer(port, mkdtempSync(join(dir, 'down-')));
      // node-redis reconnects on its own backoff (at most ~2.2 s between attempts).
      await publishUntilOk(publisher, message('down'));
    } finally {
      await withPassword.close();
      await publisher.close();
      if (child) await killRedisServer(child);
    }
  }, 30_000);

  it('close() of a publisher whose server is down returns at once', async () => {
    const publisher = redisPublisher({ url: `redis://127.0.0.1:${await freePort()}`, timeoutMs: 10_000 });
    const pending = publisher.publish([message('closing')]);
    await sleep(100);
    const startedAt = Date.now();
    await publisher.close();
    expect(Date.now() - startedAt).toBeLessThan(1000);
    // The call in flight ends as a retryable failure, not a hang.
    failure((await pending)[0]);
    failure((await publisher.publish([message('closing')]))[0]);
  });

  it('a connection cut by the server (CLIENT KILL) is reconnected: the same publisher publishes again', async () => {
    const port = await freePort();
    const child = await startRedisServer(port, mkdtempSync(join(dir, 'kill-')));
    const url = `redis://127.0.0.1:${port}`;
    const publisher = redisPublisher({ url, timeoutMs: 5000 });
    const reader = await testClient(url);
    try {
      expect(await publisher.publish([message('cut')])).toEqual([{ ok: true }]);
      await reader.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes']);
      // A call racing the cut may fail (retryably); the publisher itself reconnects.
      const after = message('cut');
      await publishUntilOk(publisher, after);
      const ids = (await entriesOf(reader, 'cut')).map((e) => e.message['ce-id']);
      expect(ids).toContain(after.id);
    } finally {
      await publisher.close();
      reader.destroy();
      await killRedisServer(child);
    }
  });

  it('no reply within timeoutMs (CLIENT PAUSE WRITE) is a retryable failure: not known to be published', async () => {
    const port = await freePort();
    const child = await startRedisServer(port, mkdtempSync(join(dir, 'pause-')));
    const url = `redis://127.0.0.1:${port}`;
    const publisher = redisPublisher({ url, timeoutMs: 300 });
    const admin = await testClient(url);
    try {
      expect(await publisher.publish([message('paused')])).toEqual([{ ok: true }]);
      await admin.sendCommand(['CLIENT', 'PAUSE', '1500', 'WRITE']);
      const late = message('paused');
      const error = failure((await publisher.publish([late]))[0]);
      expect(error.retryable).toBe(true);
      expect(error.message).toContain("no reply from Redis within 300 ms to XADD on stream 'paused'");
      // Why it says "not known": the command was sent, and Redis applies it once the pause ends.
      for (let i = 0; i < 40 && (await admin.xLen('paused')) < 2; i++) await sleep(100);
      expect((await entriesOf(admin, 'paused')).map((e) => e.message['ce-id'])).toContain(late.id);
    } finally {
      await publisher.close();
      admin.destroy();
      await killRedisServer(child);
    }
  });
});
