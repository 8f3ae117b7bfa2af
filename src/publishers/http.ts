/**
 * HTTP (webhook) publisher: one POST per event, the JSON payload as the body, CloudEvents
 * attributes as headers (binary mode), `Idempotency-Key` = event id, and an optional Standard
 * Webhooks signature. The receiver's status decides: 2xx delivered; 408, 429, 5xx and network
 * failures retried (honouring Retry-After); any other 4xx dead-lettered at once.
 *
 * Built-in fetch and node:crypto only. Redirects are not followed: fetch would turn a 301/302 POST
 * into a GET, and a signed request should go where it was configured to go.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';
import { httpGrammar } from '../core/destination.js';
import {
  assertCloudEventsMode,
  type CloudEventsMode,
  cloudEventAttributes,
  eventHeaders,
  isReservedHeader,
  STRUCTURED_CONTENT_TYPE,
  structuredCloudEvent,
} from '../core/envelope.js';
import { describeError, OutboxError, PermanentError, PublishError } from '../core/errors.js';
import type { OutboundMessage, Publisher, PublishResult } from '../core/ports.js';

export interface HttpPublisherOptions {
  /** Receiver URL; `{destination}` in it is replaced by the event's destination (a URL path). */
  url: string;
  /** Standard Webhooks secret ('whsec_<base64>' or a raw string): requests get webhook-* signature headers. */
  secret?: string;
  /** Static headers for every request (Authorization, …); reserved names are refused. */
  headers?: Record<string, string>;
  /** Whole request (connect, send, status) limit; a timeout is retried. */
  timeoutMs?: number;
  /** CloudEvents `source` attribute. */
  source?: string;
  /** Requests in flight at once within one publish() call. */
  concurrency?: number;
  /**
   * CloudEvents content mode: 'binary' (default: attributes as `ce-*` headers, the payload as the
   * body) or 'structured' (the body is one `application/cloudevents+json` document).
   */
  mode?: CloudEventsMode;
}

export const HTTP_PUBLISHER_DEFAULTS = Object.freeze({
  timeoutMs: 10_000,
  source: 'outbox',
  concurrency: 32,
  mode: 'binary',
} as const);

const SNIPPET_CHARS = 200;
/** Bodies up to this size are read to the end so the socket goes back to the pool; bigger ones are cancelled. */
const DRAIN_LIMIT_BYTES = 64 * 1024;
const DESTINATION = '{destination}';

/** Resolved options; the secret already decoded to its HMAC key. */
type Config = Readonly<Required<Omit<HttpPublisherOptions, 'secret'>> & { key: Buffer | undefined }>;

/**
 * A publisher that POSTs each event to a webhook receiver.
 * @example
 * const publisher = httpPublisher({
 *   url: 'https://hooks.example.com/in/{destination}',
 *   secret: process.env.WEBHOOK_SECRET, // 'whsec_…'
 *   headers: { authorization: `Bearer ${process.env.HOOK_TOKEN}` },
 * });
 */
export function httpPublisher(options: HttpPublisherOptions): Publisher {
  const config = resolveOptions(options);
  return {
    kind: 'http',
    capabilities: { dedupeById: false },
    validateDestination: httpGrammar,
    publish: (messages) => mapConcurrent(messages, config.concurrency, (m) => deliver(config, m)),
  };
}

async function deliver(config: Config, m: OutboundMessage): Promise<PublishResult> {
  const templated = config.url.includes(DESTINATION);
  const bad = templated ? httpGrammar(m.destination) : undefined;
  if (bad) return failed(new PermanentError(`destination '${m.destination}' ${bad}`));
  // httpGrammar admits path characters only, so the destination goes in as is ('/' stays '/').
  const target = templated ? config.url.replaceAll(DESTINATION, m.destination) : config.url;
  const where = describeUrl(target);
  let headers: Headers;
  try {
    headers = requestHeaders(config, m);
  } catch (cause) {
    return failed(
      new PermanentError(`event headers cannot be sent over HTTP: ${describeError(cause)}`, { cause }),
    );
  }
  let response: Response;
  try {
    response = await fetch(target, {
      method: 'POST',
      headers,
      body: bodyOf(config, m),
      redirect: 'manual',
      signal: AbortSignal.timeout(config.timeoutMs),
    });
  } catch (cause) {
    const timedOut = (cause as Error | undefined)?.name === 'TimeoutError';
    const reason = timedOut
      ? `timed out after ${config.timeoutMs} ms (the receiver may have processed it; Idempotency-Key lets it tell)`
      : `failed: ${describeError((cause as Error | undefined)?.cause ?? cause)}`;
    return failed(new PublishError(`POST ${where} ${reason}`, { cause, details: { url: where } }));
  }
  return resultOf(response, where);
}

/** 2xx delivered; 408, 429, 5xx (and 3xx) retried; any other 4xx dead-lettered at once. */
async function resultOf(response: Response, where: string): Promise<PublishResult> {
  const { status } = response;
  if (status >= 200 && status < 300) {
    await drainBody(response, 0);
    return { ok: true };
  }
  const snippet = (await drainBody(response, SNIPPET_CHARS * 4)).replace(/\s+/g, ' ').trim();
  const text = `POST ${where} answered HTTP ${status}${snippet ? `: ${snippet.slice(0, SNIPPET_CHARS)}` : ''}`;
  const details = { status, url: where };
  if (status >= 400 && status < 500 && status !== 408 && status !== 429)
    return failed(new PermanentError(text, { details }));
  if (status >= 300 && status < 400) {
    // Most likely a wrong URL; kept retryable so fixing the config redelivers without a DLQ trip.
    const location = response.headers.get('location');
    const hint = `${location ? ` (to ${location})` : ''}; redirects are not followed, configure the final URL`;
    return failed(new PublishError(`${text}${hint}`, { details }));
  }
  const retryAfterMs = retryAfterMsOf(response.headers.get('retry-after'));
  return failed(new PublishError(text, { details, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) }));
}

function bodyOf(config: Config, m: OutboundMessage): string {
  return config.mode === 'structured' ? structuredCloudEvent(m, config.source) : m.payload;
}

function requestHeaders(config: Config, m: OutboundMessage): Headers {
  const headers = new Headers();
  if (config.mode === 'structured') {
    // The attributes travel in the body; only the event's own headers stay headers.
    headers.set('content-type', STRUCTURED_CONTENT_TYPE);
    for (const [name, value] of Object.entries(eventHeaders(m))) headers.set(name, value);
  } else {
    for (const [name, value] of Object.entries(cloudEventAttributes(m, config.source)))
      headers.set(name, name.startsWith('ce-') ? percentEncode(value) : value);
  }
  // Static headers last among the free names: an operator's Authorization beats an event's header.
  for (const [name, value] of Object.entries(config.headers)) headers.set(name, value);
  headers.set('idempotency-key', m.id);
  if (config.key) {
    const timestamp = String(Math.floor(Date.now() / 1000));
    headers.set('webhook-id', m.id);
    headers.set('webhook-timestamp', timestamp);
    headers.set('webhook-signature', `v1,${sign(config.key, m.id, timestamp, bodyOf(config, m))}`);
  }
  return headers;
}

/** CloudEvents HTTP binding §3.1.3.2: outside printable ASCII, and space, '"' and '%', is percent-encoded. */
function percentEncode(value: string): string {
  return value.replace(/[^\x21\x23\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
}

/** Retry-After is delay-seconds or an HTTP-date (RFC 9110 §10.2.3). */
function retryAfterMsOf(value: string | null): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Reads (and returns the first `keepBytes` of) a body so the connection can be reused. */
async function drainBody(response: Response, keepBytes: number): Promise<string> {
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const kept: Uint8Array[] = [];
  let seen = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (seen < keepBytes) kept.push(value);
      seen += value.byteLength;
      if (seen >= DRAIN_LIMIT_BYTES) {
        await reader.cancel();
        break;
      }
    }
  } catch {
    // Body cut short (timeout, reset): the status already says what happened.
  }
  return Buffer.concat(kept).subarray(0, keepBytes).toString('utf8');
}

/** Runs `fn` over `items` with at most `limit` in flight; results in input order; never rejects. */
async function mapConcurrent<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<PublishResult>,
): Promise<PublishResult[]> {
  const results: PublishResult[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) {
      try {
        results[i] = await fn(items[i]!);
      } catch (error) {
        results[i] = { ok: false, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const failed = (error: PublishError): PublishResult => ({ ok: false, error });

/** Origin and path only: a query string or userinfo may hold a token, and messages reach logs. */
function describeUrl(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}

function sign(key: Buffer, id: string, timestamp: string, body: string | Uint8Array): string {
  return createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64');
}

/** 'whsec_<base64>' → the decoded bytes (Standard Webhooks); any other string → its UTF-8 bytes. */
function secretKey(secret: string): Buffer {
  if (!secret.startsWith('whsec_')) return Buffer.from(secret, 'utf8');
  const encoded = secret.slice('whsec_'.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded))
    throw new OutboxError('INVALID_CONFIG', 'webhook `secret` after whsec_ must be base64', {
      details: { key: 'secret' },
    });
  return Buffer.from(encoded, 'base64');
}

function resolveOptions(options: HttpPublisherOptions): Config {
  const invalid = (key: string, message: string) =>
    new OutboxError('INVALID_CONFIG', `httpPublisher \`${key}\` ${message}`, { details: { key } });
  const { url, secret, headers = {} } = options;
  const {
    timeoutMs = HTTP_PUBLISHER_DEFAULTS.timeoutMs,
    source = HTTP_PUBLISHER_DEFAULTS.source,
    concurrency = HTTP_PUBLISHER_DEFAULTS.concurrency,
    mode = HTTP_PUBLISHER_DEFAULTS.mode,
  } = options;
  assertCloudEventsMode(mode, 'httpPublisher');
  let parsed: URL;
  try {
    parsed = new URL(String(url).replaceAll(DESTINATION, 'destination'));
  } catch {
    throw invalid('url', 'is not a valid URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new OutboxError('UNSUPPORTED_URL', 'httpPublisher `url` must start with http:// or https://', {
      details: { key: 'url' },
    });
  if (parsed.username || parsed.password)
    throw invalid('url', 'must not hold credentials: use headers.authorization');
  if (secret !== undefined && (typeof secret !== 'string' || secret === ''))
    throw invalid('secret', 'must be a non-empty string');
  for (const name of Object.keys(headers))
    if (isReservedHeader(name)) throw invalid(`headers.${name}`, 'is a header outbox sets itself');
  try {
    new Headers(headers);
  } catch (cause) {
    throw invalid('headers', `cannot be sent over HTTP: ${describeError(cause)}`);
  }
  for (const [key, value] of Object.entries({ timeoutMs, concurrency }))
    if (!Number.isInteger(value) || value <= 0) throw invalid(key, 'must be a positive integer');
  if (typeof source !== 'string' || source === '') throw invalid('source', 'must be a non-empty string');
  const key = secret === undefined ? undefined : secretKey(secret);
  return { url, key, headers: { ...headers }, timeoutMs, source, concurrency, mode };
}

export interface VerifyWebhookOptions {
  /** The same secret the publisher signs with. */
  secret: string;
  /** The request's headers: a fetch `Headers` or Node's `req.headers`. */
  headers: Headers | Record<string, string | string[] | undefined>;
  /** The raw request body, exactly as received. */
  body: string | Uint8Array;
  /** Largest accepted clock difference, against replays (default 300). */
  toleranceSeconds?: number;
}

/**
 * Checks a Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature) on a
 * received request; true only when one of its v1 signatures matches and the timestamp is fresh.
 * @example
 * const ok = verifyWebhookSignature({ secret: 'whsec_…', headers: req.headers, body: rawBody });
 * if (!ok) return res.writeHead(401).end();
 */
export function verifyWebhookSignature(options: VerifyWebhookOptions): boolean {
  const { secret, headers, body, toleranceSeconds = 300 } = options;
  const get = (name: string): string | undefined => {
    if (headers instanceof Headers) return headers.get(name) ?? undefined;
    const entry = Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
    return Array.isArray(entry) ? entry[0] : entry;
  };
  const id = get('webhook-id');
  const timestamp = get('webhook-timestamp');
  const signatures = get('webhook-signature');
  if (!id || !timestamp || !signatures || !/^\d+$/.test(timestamp)) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(sign(secretKey(secret), id, timestamp, body), 'base64');
  return signatures.split(' ').some((entry) => {
    const [version, signature] = entry.split(',', 2);
    if (version !== 'v1' || !signature) return false;
    const given = Buffer.from(signature, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
