/**
 * natsPublisher against the machine's real NATS JetStream: every delivery is checked by reading
 * the stream back with an ordered consumer, never by trusting the publisher's own result.
 */
import {
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PermanentError, PublishError } from '../../src/core/errors.js';
import type { OutboundMessage, PublishResult } from '../../src/core/ports.js';
import { natsPublisher } from '../../src/publishers/nats.js';
import { NATS_URL, natsSkip, uniqueName } from '../helpers/services.js';

const skip = await natsSkip();
const stream = uniqueName('outbox_nats');
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let seq = 0;

function message(subject: string, over: Partial<OutboundMessage> = {}): OutboundMessage {
  seq += 1;
  return {
    id: `0190c2d6-7d2a-7c4e-9a1b-${String(seq).padStart(12, '0')}`,
    key: `order:${seq}`,
    type: 'order.created',
    destination: `${stream}.${subject}`,
    aggregateType: 'order',
    aggregateId: String(seq),
    payload: JSON.stringify({ n: seq, text: 'grüße' }),
    headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    createdAt: new Date('2025-01-02T03:04:05.678Z'),
    attempt: 1,
    ...over,
  };
}

/**
 * Every message the stream holds on `subject`, read back by a fresh ordered consumer; the
 * stream's own per-subject count must match, so a duplicate would show.
 */
async function readBack(subject: string, expected: number): Promise<JsMsg[]> {
  const full = `${stream}.${subject}`;
  const info = await jsm.streams.info(stream, { subjects_filter: full });
  expect(info.state.subjects?.[full] ?? 0).toBe(expected);
  const consumer = await js.consumers.get(stream, { filter_subjects: full });
  const out: JsMsg[] = [];
  const batch = await consumer.fetch({ max_messages: expected, expires: 5000 });
  for await (const m of batch) out.push(m);
  return out;
}

function failure(result: PublishResult | undefined): PublishError {
  expect(result?.ok).toBe(false);
  const error = (result as { error: unknown }).error;
  expect(error).toBeInstanceOf(PublishError);
  return error as PublishError;
}

describe.skipIf(skip)('natsPublisher (real JetStream)', () => {
  beforeAll(async () => {
    nc = await connect({ servers: NATS_URL });
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], duplicate_window: 60_000_000_000 });
  });

  afterAll(async () => {
    await jsm?.streams.delete(stream).catch(() => undefined);
    await nc?.drain();
  });

  it('delivers each message with its id as Nats-Msg-Id, CloudEvents headers and payload', async () => {
    const publisher = natsPublisher({ connection: nc, source: 'orders-service' });
    const sent = [message('a'), message('a'), message('a')];
    expect(await publisher.publish(sent)).toEqual([{ ok: true }, { ok: true }, { ok: true }]);

    const got = await readBack('a', sent.length);
    expect(got).toHaveLength(3);
    const byId = new Map(got.map((m) => [m.headers?.get('Nats-Msg-Id'), m]));
    for (const m of sent) {
      const received = byId.get(m.id);
      expect(received, `message ${m.id} in the stream`).toBeDefined();
      const h = received!.headers!;
      expect(received!.subject).toBe(m.destination);
      expect(received!.string()).toBe(m.payload);
      expect(h.get('ce-specversion')).toBe('1.0');
      expect(h.get('ce-id')).toBe(m.id);
      expect(h.get('ce-type')).toBe('order.created');
      expect(h.get('ce-source')).toBe('orders-service');
      expect(h.get('ce-subject')).toBe(m.aggregateId);
      expect(h.get('ce-time')).toBe('2025-01-02T03:04:05.678Z');
      expect(h.get('ce-partitionkey')).toBe(m.key);
      expect(h.get('content-type')).toBe('application/json');
      // The trace context travels as the CloudEvents attribute, not as the transport's own header.
      expect(h.get('ce-traceparent')).toBe(m.headers.traceparent);
      expect(h.has('traceparent')).toBe(false);
    }
  });

  it('publishes many messages concurrently and returns results in order', async () => {
    const publisher = natsPublisher({ connection: nc });
    const sent = Array.from({ length: 50 }, () => message('many'));
    const results = await publisher.publish(sent);
    expect(results).toEqual(sent.map(() => ({ ok: true })));
    const got = await readBack('many', sent.length);
    expect(new Set(got.map((m) => m.headers?.get('Nats-Msg-Id')))).toEqual(new Set(sent.map((m) => m.id)));
  });

  it('counts a redelivered id as delivered while the stream keeps one copy', async () => {
    const publisher = natsPublisher({ connection: nc });
    const first = message('dup');
    expect(await publisher.publish([first])).toEqual([{ ok: true }]);
    // The relay's retry after a lost ack: same id, next attempt.
    expect(await publisher.publish([{ ...first, attempt: 2 }])).toEqual([{ ok: true }]);
    const got = await readBack('dup', 1);
    expect(got.map((m) => m.headers?.get('Nats-Msg-Id'))).toEqual([first.id]);
    // The broker itself saw the second copy as a duplicate.
    expect((await js.publish(first.destination, '{}', { msgID: first.id })).duplicate).toBe(true);
  });

  it('fails (retryable) on a subject that no stream captures, never reporting it published', async () => {
    const publisher = natsPublisher({ connection: nc });
    const orphan = message('x', { destination: `${uniqueName('nostream')}.orders` });
    const error = failure((await publisher.publish([orphan]))[0]);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/no JetStream stream captures subject/);
    expect(error.message).toContain(orphan.destination);
  });

  it('fails (retryable) on an ack timeout: a plain subscriber that never answers', async () => {
    const subject = `${uniqueName('silent')}.orders`;
    const sub = nc.subscribe(subject); // listens, never replies
    try {
      const publisher = natsPublisher({ connection: nc, timeoutMs: 300 });
      const error = failure((await publisher.publish([message('x', { destination: subject })]))[0]);
      expect(error.retryable).toBe(true);
      expect(error.message).toMatch(/no JetStream ack .* within 300 ms/);
    } finally {
      sub.unsubscribe();
    }
  });

  it('fails (retryable) when a subscriber that is not a stream answers', async () => {
    const subject = `${uniqueName('impostor')}.orders`;
    const sub = nc.subscribe(subject, {
      callback: (_err, m) => {
        m.respond('hello');
      },
    });
    try {
      const publisher = natsPublisher({ connection: nc });
      const error = failure((await publisher.publish([message('x', { destination: subject })]))[0]);
      expect(error.retryable).toBe(true);
      expect(error.message).toMatch(/not a JetStream stream/);
    } finally {
      sub.unsubscribe();
    }
  });

  it('fails (retryable) on a closed connection, and leaves a user connection to its owner', async () => {
    const own = await connect({ servers: NATS_URL });
    const publisher = natsPublisher({ connection: own });
    expect(await publisher.publish([message('closed')])).toEqual([{ ok: true }]);
    await publisher.close();
    expect(own.isClosed()).toBe(false); // close() never closes a connection it did not create
    await own.close();
    const again = natsPublisher({ connection: own });
    const error = failure((await again.publish([message('closed')]))[0]);
    expect(error.retryable).toBe(true);
  });

  it('dead-letters at once a header NATS cannot carry', async () => {
    const publisher = natsPublisher({ connection: nc });
    const results = await publisher.publish([
      message('bad', { headers: { 'bad name': 'v' } }),
      message('bad'),
    ]);
    expect(failure(results[0])).toBeInstanceOf(PermanentError);
    expect(results[1]).toEqual({ ok: true }); // one bad event does not fail its batch
  });

  it('connects from a URL on first publish and closes that connection on close()', async () => {
    const sockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const before = sockets();
    const publisher = natsPublisher({ url: NATS_URL, source: 'cli' });
    expect(sockets()).toBe(before); // lazy: nothing opened yet
    const m = message('url');
    expect(await publisher.publish([m])).toEqual([{ ok: true }]);
    expect(sockets()).toBe(before + 1);
    const [received] = await readBack('url', 1);
    expect(received?.headers?.get('ce-source')).toBe('cli');
    await publisher.close();
    await expect.poll(sockets, { timeout: 5000 }).toBe(before);
    const error = failure((await publisher.publish([message('url')]))[0]);
    expect(error.message).toMatch(/closed/);
  });

  it('fails (retryable) while the URL cannot be reached, then recovers without a new publisher', async () => {
    const publisher = natsPublisher({ url: 'nats://127.0.0.1:1', timeoutMs: 1000 });
    const error = failure((await publisher.publish([message('x')]))[0]);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/cannot connect to NATS at 127\.0\.0\.1:1/);
    await publisher.close();
  });

  it('validates subjects with the NATS grammar and declares broker-side dedupe', () => {
    const publisher = natsPublisher({ connection: nc });
    expect(publisher.kind).toBe('nats');
    expect(publisher.capabilities.dedupeById).toBe(true);
    expect(publisher.validateDestination?.('orders.created')).toBeUndefined();
    expect(publisher.validateDestination?.('orders.*')).toMatch(/wildcard/);
  });
});

describe('natsPublisher options', () => {
  it('needs exactly one of connection or url, and a nats:// url', () => {
    expect(() => natsPublisher({})).toThrow(/exactly one/);
    expect(() => natsPublisher({ url: 'http://127.0.0.1:4222' })).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED_URL' }),
    );
    expect(() => natsPublisher({ url: NATS_URL, timeoutMs: 0 })).toThrow(
      expect.objectContaining({ code: 'INVALID_CONFIG' }),
    );
  });
});
