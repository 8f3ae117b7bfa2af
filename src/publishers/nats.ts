/**
 * NATS JetStream publisher. Each event is published with an ack (`js.publish`), its id as
 * `Nats-Msg-Id` so the stream drops a redelivered duplicate, and the CloudEvents attributes as
 * headers. Core NATS publishes are fire-and-forget, so they cannot back an at-least-once promise:
 * a subject that no stream captures is a failure here, never "published".
 *
 * The @nats-io packages are optional peer dependencies, loaded on first use: importing this file
 * never requires them, and a missing one is named in a DRIVER_MISSING error.
 */

import type { JetStreamClient } from '@nats-io/jetstream';
import type { MsgHdrs, NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import { kindOfUrl, natsGrammar } from '../core/destination.js';
import {
  assertCloudEventsMode,
  type CloudEventsMode,
  cloudEventAttributes,
  eventHeaders,
  STRUCTURED_CONTENT_TYPE,
  structuredCloudEvent,
} from '../core/envelope.js';
import { describeError, OutboxError, PermanentError, PublishError } from '../core/errors.js';
import type { OutboundMessage, Publisher, PublishResult } from '../core/ports.js';

export interface NatsPublisherOptions {
  /** A connection you built with `@nats-io/transport-node`; you keep ownership (close() leaves it open). */
  connection?: NatsConnection;
  /** 'nats://[user:pass@]host:port' or 'tls://…' (the CLI's form): connected on first publish, closed by close(). */
  url?: string;
  /** CloudEvents `source` attribute. */
  source?: string;
  /** How long to wait for the stream's ack before counting the publish as failed (retryable). */
  timeoutMs?: number;
  /**
   * CloudEvents content mode: 'binary' (default: attributes as `ce-*` headers, the payload as the
   * data) or 'structured' (the data is one `application/cloudevents+json` document).
   */
  mode?: CloudEventsMode;
}

/** A Publisher whose close() always exists (it drains the connection it created, if any). */
export interface NatsPublisher extends Publisher {
  close(): Promise<void>;
}

export const NATS_PUBLISHER_DEFAULTS = Object.freeze({
  source: 'outbox',
  timeoutMs: 5000,
  mode: 'binary',
} as const);

interface Session {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly headers: () => MsgHdrs;
}

const encoder = new TextEncoder();
/** JetStream API error: "message size exceeds maximum allowed" — retrying the same bytes cannot help. */
const JS_MESSAGE_TOO_LARGE = 10054;

/**
 * A publisher for NATS JetStream. Give it your connection, or a URL to let it connect (and close).
 * The destination of an event is its subject; a stream must capture it.
 * @example
 * import { connect } from '@nats-io/transport-node';
 * const publisher = natsPublisher({ connection: await connect({ servers: '127.0.0.1:4222' }) });
 * // or, owning its connection: natsPublisher({ url: 'nats://127.0.0.1:4222', source: 'orders' })
 */
export function natsPublisher(options: NatsPublisherOptions): NatsPublisher {
  const { connection, url } = options;
  if ((connection === undefined) === (url === undefined))
    throw new OutboxError('INVALID_CONFIG', 'natsPublisher needs exactly one of `connection` or `url`');
  if (url !== undefined && kindOfUrl(url) !== 'nats')
    throw new OutboxError('UNSUPPORTED_URL', 'natsPublisher `url` must start with nats:// or tls://', {
      details: { key: 'url' },
    });
  const source = options.source ?? NATS_PUBLISHER_DEFAULTS.source;
  const timeoutMs = options.timeoutMs ?? NATS_PUBLISHER_DEFAULTS.timeoutMs;
  const mode = options.mode ?? NATS_PUBLISHER_DEFAULTS.mode;
  assertCloudEventsMode(mode, 'natsPublisher');
  if (typeof source !== 'string' || source === '')
    throw new OutboxError('INVALID_CONFIG', 'natsPublisher `source` must be a non-empty string', {
      details: { key: 'source' },
    });
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw new OutboxError('INVALID_CONFIG', 'natsPublisher `timeoutMs` must be a positive integer', {
      details: { key: 'timeoutMs', value: timeoutMs },
    });

  let session: Promise<Session> | undefined;
  let closed = false;

  const open = async (): Promise<Session> => {
    const [{ jetstream }, transport] = await Promise.all([
      loadDriver('@nats-io/jetstream', () => import('@nats-io/jetstream')),
      // Needed even with a user's connection: it is where `headers()` lives.
      loadDriver('@nats-io/transport-node', () => import('@nats-io/transport-node')),
    ]);
    let nc = connection;
    if (nc === undefined) {
      const connectOptions = connectOptionsOf(url!, timeoutMs);
      try {
        nc = await transport.connect(connectOptions);
      } catch (cause) {
        throw new PublishError(
          `cannot connect to NATS at ${connectOptions.servers}: ${describeError(cause)}`,
          {
            cause,
            details: { servers: connectOptions.servers },
          },
        );
      }
    }
    return { nc, js: jetstream(nc, { timeout: timeoutMs }), headers: () => transport.headers() };
  };

  const getSession = async (): Promise<Session> => {
    if (closed) throw new PublishError('the NATS publisher is closed');
    const current = session;
    if (current) {
      const s = await current;
      // Our own connection only closes for good when we close it; if it did anyway, connect again.
      if (connection !== undefined || !s.nc.isClosed()) return s;
      if (session === current) session = undefined;
    }
    session ??= open().catch((error: unknown) => {
      session = undefined; // a failed connect is retried on the next publish, not cached
      throw error;
    });
    return session;
  };

  return {
    kind: 'nats',
    capabilities: { dedupeById: true },
    validateDestination: natsGrammar,
    async publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]> {
      let s: Session;
      try {
        s = await getSession();
      } catch (error) {
        return messages.map(() => ({ ok: false, error }));
      }
      // Distinct keys in one call (the relay's contract), so no order to keep between them.
      return Promise.all(messages.map((m) => publishOne(s, m, { source, timeoutMs, mode })));
    },
    async close(): Promise<void> {
      closed = true;
      const current = session;
      session = undefined;
      if (connection !== undefined || current === undefined) return;
      const s = await current.catch(() => undefined);
      if (s === undefined || s.nc.isClosed()) return;
      // drain() lets acks of in-flight publishes arrive before the socket closes.
      await s.nc.drain().catch(() => s.nc.close());
    },
  };
}

interface PublishSettings {
  readonly source: string;
  readonly timeoutMs: number;
  readonly mode: CloudEventsMode;
}

async function publishOne(s: Session, m: OutboundMessage, { source, timeoutMs, mode }: PublishSettings) {
  let headers: MsgHdrs;
  try {
    headers = s.headers();
    const structured = mode === 'structured';
    // Structured mode: the attributes travel in the document; only the event's own headers stay.
    const fields = structured
      ? { 'content-type': STRUCTURED_CONTENT_TYPE, ...eventHeaders(m) }
      : cloudEventAttributes(m, source);
    for (const [name, value] of Object.entries(fields)) headers.set(name, value);
  } catch (cause) {
    // A header name NATS cannot carry: the same event will fail the same way on every attempt.
    const error = new PermanentError(`event headers cannot be sent over NATS: ${describeError(cause)}`, {
      cause,
    });
    return { ok: false, error } satisfies PublishResult;
  }
  try {
    // An ack with `duplicate: true` means the stream already holds this id (an earlier attempt's ack
    // was lost): delivered, exactly once in the stream.
    const data = mode === 'structured' ? structuredCloudEvent(m, source) : m.payload;
    await s.js.publish(m.destination, encoder.encode(data), {
      msgID: m.id,
      headers,
      timeout: timeoutMs,
    });
    return { ok: true } satisfies PublishResult;
  } catch (error) {
    return { ok: false, error: publishErrorOf(error, m.destination, timeoutMs) } satisfies PublishResult;
  }
}

/** Maps a nats.js failure to retryable / permanent, with a message an operator can act on. */
function publishErrorOf(error: unknown, subject: string, timeoutMs: number): PublishError {
  const chain = causeChain(error);
  const named = (name: string) => chain.some((e) => e.name === name);
  const details = { subject };
  if (named('NoResponders'))
    // JetStream answers a publish only through a stream; no responder = no stream on this subject.
    return new PublishError(
      `no JetStream stream captures subject '${subject}' (no responders): not published; add the subject to a stream`,
      { cause: error, details },
    );
  if (named('TimeoutError'))
    return new PublishError(
      `no JetStream ack for subject '${subject}' within ${timeoutMs} ms: not known to be published ` +
        '(a retry is deduplicated by Nats-Msg-Id)',
      { cause: error, details: { ...details, timeoutMs } },
    );
  if (named('InvalidSubjectError'))
    return new PermanentError(`'${subject}' is not a valid NATS subject`, { cause: error, details });
  const code = (error as { code?: unknown }).code;
  if ((named('InvalidArgumentError') && /max_payload/.test(String(error))) || code === JS_MESSAGE_TOO_LARGE)
    return new PermanentError(`message for subject '${subject}' is larger than the server or stream allows`, {
      cause: error,
      details: { ...details, code },
    });
  if (error instanceof SyntaxError)
    return new PublishError(
      `a subscriber that is not a JetStream stream answered on subject '${subject}': not published`,
      { cause: error, details },
    );
  // Closed or draining connection, JetStream disabled, stream errors, …: all may heal by themselves.
  return new PublishError(`NATS publish to '${subject}' failed: ${describeError(error)}`, {
    cause: error,
    details: typeof code === 'number' ? { ...details, code } : details,
  });
}

function causeChain(error: unknown): Error[] {
  const chain: Error[] = [];
  for (let e = error; e instanceof Error && chain.length < 8; e = e.cause) chain.push(e);
  return chain;
}

/** nats.js ignores credentials and the scheme in a server URL, so map them to options here. */
function connectOptionsOf(url: string, timeoutMs: number): NodeConnectionOptions & { servers: string } {
  const u = new URL(url);
  const options: NodeConnectionOptions & { servers: string } = {
    servers: `${u.hostname}:${u.port || '4222'}`,
    name: 'outbox',
    timeout: timeoutMs,
    // A relay outlives broker restarts: keep reconnecting; publishes fail (retryably) meanwhile.
    maxReconnectAttempts: -1,
    // Async stack traces cost a fifth of the relay's CPU in a JetStream drain (measured); the
    // errors keep their messages.
    noAsyncTraces: true,
  };
  if (u.protocol === 'tls:') options.tls = {};
  if (u.username && u.password) {
    options.user = decodeURIComponent(u.username);
    options.pass = decodeURIComponent(u.password);
  } else if (u.username) {
    options.token = decodeURIComponent(u.username);
  }
  return options;
}

async function loadDriver<T>(name: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (cause) {
    throw new OutboxError('DRIVER_MISSING', `natsPublisher needs the ${name} package: npm install ${name}`, {
      cause,
      details: { package: name },
    });
  }
}
