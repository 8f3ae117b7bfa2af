/**
 * httpPublisher against a real node:http receiver on a random loopback port: every status the
 * receiver answers, and what it received (headers, body, signature), are checked on its side.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PermanentError, PublishError } from '../../src/core/errors.js';
import type { OutboundMessage, PublishResult } from '../../src/core/ports.js';
import { httpPublisher, verifyWebhookSignature } from '../../src/publishers/http.js';

interface Received {
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

interface Receiver {
  readonly url: string;
  readonly requests: Received[];
  /** TCP connections accepted so far (1 for many requests = sockets are reused). */
  connections(): number;
  /** TCP connections still open now. */
  openConnections(): number;
  maxInFlight(): number;
  close(): Promise<void>;
}

const open: Receiver[] = [];

async function receiver(
  handle: (req: Received, res: ServerResponse, n: number) => void | Promise<void>,
): Promise<Receiver> {
  const requests: Received[] = [];
  let connections = 0;
  let openConnections = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.once('close', () => {
      inFlight -= 1;
    });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const received = {
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    requests.push(received);
    await handle(received, res, requests.length);
  });
  server.on('connection', (socket) => {
    connections += 1;
    openConnections += 1;
    socket.once('close', () => {
      openConnections -= 1;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const r: Receiver = {
    url: `http://127.0.0.1:${port}`,
    requests,
    connections: () => connections,
    openConnections: () => openConnections,
    maxInFlight: () => maxInFlight,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  open.push(r);
  return r;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

let seq = 0;
function message(over: Partial<OutboundMessage> = {}): OutboundMessage {
  seq += 1;
  return {
    id: `0190c2d6-7d2a-7c4e-9a1b-${String(seq).padStart(12, '0')}`,
    key: `order:${seq}`,
    type: 'order.created',
    destination: 'orders',
    aggregateType: 'order',
    aggregateId: String(seq),
    payload: JSON.stringify({ n: seq, text: 'grüße' }),
    headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    createdAt: new Date('2025-01-02T03:04:05.678Z'),
    attempt: 1,
    ...over,
  };
}

function reply(res: ServerResponse, status: number, body = '', headers: Record<string, string> = {}): void {
  res.writeHead(status, headers).end(body);
}

function failure(result: PublishResult | undefined): PublishError {
  expect(result?.ok).toBe(false);
  const error = (result as { error: unknown }).error;
  expect(error).toBeInstanceOf(PublishError);
  return error as PublishError;
}

describe('httpPublisher (real HTTP receiver)', () => {
  it('POSTs the payload with CloudEvents headers (trace context included), event headers, static headers and Idempotency-Key', async () => {
    const r = await receiver((_req, res) => reply(res, 204));
    const publisher = httpPublisher({
      url: `${r.url}/hook`,
      source: 'orders-service',
      headers: { Authorization: 'Bearer t0k' },
    });
    const m = message({
      aggregateId: 'Zoë "Ü" 100%',
      headers: {
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        tracestate: 'congo=t61rcWkgMzE, rojo=00f067aa0ba902b7',
        'x-tenant': 'acme',
      },
    });
    expect(await publisher.publish([m])).toEqual([{ ok: true }]);
    const [got] = r.requests;
    expect(got?.url).toBe('/hook');
    expect(got?.body).toBe(m.payload);
    expect(got?.headers).toMatchObject({
      'ce-specversion': '1.0',
      'ce-id': m.id,
      'ce-type': 'order.created',
      'ce-source': 'orders-service',
      // CloudEvents HTTP binding: non-ASCII, space, '"' and '%' are percent-encoded
      'ce-subject': 'Zo%C3%AB%20%22%C3%9C%22%20100%25',
      'ce-time': '2025-01-02T03:04:05.678Z',
      'ce-partitionkey': m.key,
      // The trace context is a CloudEvents attribute (Distributed Tracing extension), encoded like the others.
      'ce-traceparent': m.headers.traceparent,
      'ce-tracestate': 'congo=t61rcWkgMzE,%20rojo=00f067aa0ba902b7',
      'content-type': 'application/json',
      'x-tenant': 'acme',
      authorization: 'Bearer t0k',
      'idempotency-key': m.id,
    });
    expect(decodeURIComponent(got?.headers['ce-subject'] as string)).toBe('Zoë "Ü" 100%');
    expect(got?.headers.traceparent).toBeUndefined(); // the transport hop's header, not the event's
    expect(got?.headers['webhook-signature']).toBeUndefined(); // no secret, no signature
  });

  it('retries 503 and succeeds on the third call, each call reflected in its result', async () => {
    const r = await receiver((_req, res, n) => (n <= 2 ? reply(res, 503, 'busy') : reply(res, 200, 'ok')));
    const publisher = httpPublisher({ url: r.url });
    const m = message();
    const first = failure((await publisher.publish([m]))[0]);
    expect(first.retryable).toBe(true);
    expect(first.message).toMatch(/HTTP 503: busy/);
    expect(first.details).toMatchObject({ status: 503 });
    expect(failure((await publisher.publish([{ ...m, attempt: 2 }]))[0]).retryable).toBe(true);
    expect(await publisher.publish([{ ...m, attempt: 3 }])).toEqual([{ ok: true }]);
    expect(r.requests).toHaveLength(3);
    expect(new Set(r.requests.map((q) => q.headers['idempotency-key']))).toEqual(new Set([m.id]));
  });

  it('honours Retry-After in seconds and as an HTTP-date', async () => {
    const r = await receiver((_req, res, n) =>
      n === 1
        ? reply(res, 429, '', { 'retry-after': '2' })
        : reply(res, 503, '', { 'retry-after': new Date(Date.now() + 30_000).toUTCString() }),
    );
    const publisher = httpPublisher({ url: r.url });
    const limited = failure((await publisher.publish([message()]))[0]);
    expect(limited.retryable).toBe(true);
    expect(limited.retryAfterMs).toBe(2000);
    const dated = failure((await publisher.publish([message()]))[0]);
    expect(dated.retryAfterMs).toBeGreaterThan(20_000);
    expect(dated.retryAfterMs).toBeLessThanOrEqual(30_000);
  });

  it('retries 408', async () => {
    const r = await receiver((_req, res) => reply(res, 408));
    const error = failure((await httpPublisher({ url: r.url }).publish([message()]))[0]);
    expect(error.retryable).toBe(true);
    expect(error).not.toBeInstanceOf(PermanentError);
  });

  it('dead-letters other 4xx at once, with the status and a short snippet of the body', async () => {
    const r = await receiver((_req, res, n) =>
      n === 1
        ? reply(res, 400, 'invalid payload:\n  field "total" missing')
        : reply(res, 422, 'x'.repeat(5000)),
    );
    const publisher = httpPublisher({ url: r.url });
    const bad = failure((await publisher.publish([message()]))[0]);
    expect(bad).toBeInstanceOf(PermanentError);
    expect(bad.retryable).toBe(false);
    expect(bad.message).toContain('HTTP 400: invalid payload: field "total" missing');
    expect(bad.details).toMatchObject({ status: 400 });
    const long = failure((await publisher.publish([message()]))[0]);
    expect(long).toBeInstanceOf(PermanentError);
    expect(long.message).toContain('x'.repeat(200));
    expect(long.message).not.toContain('x'.repeat(201));
  });

  it('retries when the connection is refused', async () => {
    const r = await receiver((_req, res) => reply(res, 200));
    await r.close();
    const error = failure((await httpPublisher({ url: r.url }).publish([message()]))[0]);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/ECONNREFUSED/);
  });

  it('retries when the receiver does not answer in time', async () => {
    const r = await receiver(() => undefined); // reads the request, never answers
    const error = failure((await httpPublisher({ url: r.url, timeoutMs: 300 }).publish([message()]))[0]);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/timed out after 300 ms/);
  });

  it('does not follow redirects (a 302 would turn the POST into a GET), and retries', async () => {
    const r = await receiver((req, res) =>
      req.url === '/old' ? reply(res, 302, '', { location: '/new' }) : reply(res, 200),
    );
    const error = failure((await httpPublisher({ url: `${r.url}/old` }).publish([message()]))[0]);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/HTTP 302 \(to \/new\)/);
    expect(r.requests.map((q) => q.url)).toEqual(['/old']);
  });

  it('signs with Standard Webhooks; the receiver verifies with the helper and an independent HMAC', async () => {
    const rawKey = randomBytes(32);
    const secret = `whsec_${rawKey.toString('base64')}`;
    const verdicts: boolean[] = [];
    const r = await receiver((req, res) => {
      verdicts.push(verifyWebhookSignature({ secret, headers: req.headers, body: req.body }));
      reply(res, 200);
    });
    const m = message();
    expect(await httpPublisher({ url: r.url, secret }).publish([m])).toEqual([{ ok: true }]);
    expect(verdicts).toEqual([true]);

    const { headers, body } = r.requests[0]!;
    expect(headers['webhook-id']).toBe(m.id);
    const timestamp = headers['webhook-timestamp'] as string;
    expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(60);
    const expected = createHmac('sha256', rawKey).update(`${m.id}.${timestamp}.${body}`).digest('base64');
    expect(headers['webhook-signature']).toBe(`v1,${expected}`);

    // What a receiver must refuse: a changed body, another secret, a replayed old request.
    expect(verifyWebhookSignature({ secret, headers, body: `${body} ` })).toBe(false);
    expect(
      verifyWebhookSignature({ secret: `whsec_${randomBytes(32).toString('base64')}`, headers, body }),
    ).toBe(false);
    const old = String(Number(timestamp) - 3600);
    const replay = { ...headers, 'webhook-timestamp': old };
    expect(verifyWebhookSignature({ secret, headers: replay, body })).toBe(false);
    expect(verifyWebhookSignature({ secret, headers: replay, body, toleranceSeconds: 7200 })).toBe(false); // signed ts differs
    expect(
      verifyWebhookSignature({ secret, headers: new Headers(headers as Record<string, string>), body }),
    ).toBe(true);
    expect(verifyWebhookSignature({ secret, headers: {}, body })).toBe(false);
  });

  it('signs with a raw (non-whsec) secret as its UTF-8 bytes', async () => {
    const r = await receiver((_req, res) => reply(res, 200));
    expect(await httpPublisher({ url: r.url, secret: 'plain secret' }).publish([message()])).toEqual([
      { ok: true },
    ]);
    const { headers, body } = r.requests[0]!;
    const expected = createHmac('sha256', 'plain secret')
      .update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`)
      .digest('base64');
    expect(headers['webhook-signature']).toBe(`v1,${expected}`);
    expect(verifyWebhookSignature({ secret: 'plain secret', headers, body: Buffer.from(body) })).toBe(true);
  });

  it('puts the destination into the URL path without encoding its slashes', async () => {
    const r = await receiver((_req, res) => reply(res, 200));
    const templated = httpPublisher({ url: `${r.url}/in/{destination}?v=1` });
    expect(
      await templated.publish([
        message({ destination: 'orders/created' }),
        message({ destination: 'a:b@c' }),
      ]),
    ).toEqual([{ ok: true }, { ok: true }]);
    const fixed = httpPublisher({ url: `${r.url}/all` });
    expect(await fixed.publish([message({ destination: 'orders/created' })])).toEqual([{ ok: true }]);
    expect(r.requests.map((q) => q.url).sort()).toEqual(['/all', '/in/a:b@c?v=1', '/in/orders/created?v=1']);
  });

  it('sends a batch concurrently within its limit and returns results in order', async () => {
    const r = await receiver(async (req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const n = (JSON.parse(req.body) as { n: number }).n;
      reply(res, n % 2 === 0 ? 500 : 200);
    });
    const sent = Array.from({ length: 20 }, () => message());
    const results = await httpPublisher({ url: r.url, concurrency: 4 }).publish(sent);
    expect(results.map((x) => x.ok)).toEqual(
      sent.map((m) => (JSON.parse(m.payload) as { n: number }).n % 2 !== 0),
    );
    expect(r.maxInFlight()).toBeLessThanOrEqual(4);
    expect(r.maxInFlight()).toBeGreaterThan(1);
  });

  it('reads every small response body, so sockets go back to the pool', async () => {
    const r = await receiver((_req, res, n) =>
      reply(res, [200, 400, 503, 201][n % 4]!, 'b'.repeat(32 * 1024)),
    );
    const publisher = httpPublisher({ url: r.url });
    for (let i = 0; i < 12; i++) await publisher.publish([message()]);
    expect(r.requests).toHaveLength(12);
    // Unread bodies would pin one socket per request; undici alternates between at most two.
    expect(r.connections()).toBeLessThanOrEqual(2);
  });

  it('cancels a large response body, so its socket is not left hanging', async () => {
    const r = await receiver((_req, res, n) => reply(res, n % 2 ? 200 : 500, 'b'.repeat(4 << 20)));
    const publisher = httpPublisher({ url: r.url });
    for (let i = 0; i < 6; i++) await publisher.publish([message()]);
    expect(r.requests).toHaveLength(6);
    await expect.poll(() => r.openConnections(), { timeout: 10_000 }).toBeLessThanOrEqual(2);
  });

  it('dead-letters an event whose header HTTP cannot carry, without failing the rest', async () => {
    const r = await receiver((_req, res) => reply(res, 200));
    const results = await httpPublisher({ url: r.url }).publish([
      message({ headers: { note: 'party 🎉' } }),
      message(),
    ]);
    expect(failure(results[0])).toBeInstanceOf(PermanentError);
    expect(results[1]).toEqual({ ok: true });
    expect(r.requests).toHaveLength(1);
  });
});

describe('httpPublisher options', () => {
  it('declares its kind, grammar and capabilities', () => {
    const publisher = httpPublisher({ url: 'https://hooks.example.com/in/{destination}' });
    expect(publisher.kind).toBe('http');
    expect(publisher.capabilities.dedupeById).toBe(false);
    expect(publisher.validateDestination?.('orders/created')).toBeUndefined();
    expect(publisher.validateDestination?.('../admin')).toMatch(/path segment/);
  });

  it('refuses bad options, naming the key', () => {
    const code = (c: string) => expect.objectContaining({ code: c });
    expect(() => httpPublisher({ url: 'ftp://x' })).toThrow(code('UNSUPPORTED_URL'));
    expect(() => httpPublisher({ url: 'not a url' })).toThrow(/`url`/);
    expect(() => httpPublisher({ url: 'https://u:p@x.example' })).toThrow(/credentials/);
    expect(() => httpPublisher({ url: 'https://x.example', headers: { 'Idempotency-Key': 'x' } })).toThrow(
      /headers.Idempotency-Key/,
    );
    expect(() => httpPublisher({ url: 'https://x.example', headers: { 'ce-type': 'x' } })).toThrow(
      code('INVALID_CONFIG'),
    );
    expect(() => httpPublisher({ url: 'https://x.example', secret: 'whsec_%%%' })).toThrow(/base64/);
    expect(() => httpPublisher({ url: 'https://x.example', timeoutMs: -1 })).toThrow(/timeoutMs/);
    expect(() => httpPublisher({ url: 'https://x.example', concurrency: 0 })).toThrow(/concurrency/);
  });
});
