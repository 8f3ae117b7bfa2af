/**
 * Redis Streams publisher. Each event is one `XADD <destination> * field value …` entry: the
 * CloudEvents attributes and the event's own headers as fields, the payload as the `data` field
 * (binary mode), or the structured document as `data` (structured mode). Optionally trimmed with
 * `MAXLEN ~ n`.
 *
 * Redis creates a stream on its first XADD, so it cannot refuse an unknown destination: only the
 * routes keep such events out, at add(). A key that exists and is not a stream is a retryable
 * failure (WRONGTYPE): an operator can rename the key, and the events then go through.
 *
 * node-redis (the `redis` package, v5 or later) is an optional peer dependency, loaded on first
 * use: importing this file never requires it, and a missing one is named in a DRIVER_MISSING error.
 */

import { setMaxListeners } from 'node:events';
import { type DestinationGrammar, genericGrammar } from '../core/destination.js';
import {
  type CloudEventsMode,
  cloudEventAttributes,
  eventHeaders,
  STRUCTURED_CONTENT_TYPE,
  structuredCloudEvent,
} from '../core/envelope.js';
import { describeError, OutboxError, PublishError } from '../core/errors.js';
import type { OutboundMessage, Publisher, PublishResult } from '../core/ports.js';

/** The part of a node-redis client this publisher uses (structural: any v5+ client fits). */
export interface RedisClientLike extends RedisStreamWriterLike {
  readonly isReady: boolean;
  withAbortSignal(signal: AbortSignal): RedisStreamWriterLike;
}

export interface RedisStreamWriterLike {
  xAdd(key: string, id: string, fields: Record<string, string>, options?: XAddTrim): Promise<unknown>;
}

interface XAddTrim {
  TRIM: { strategy: 'MAXLEN'; strategyModifier: '~'; threshold: number };
}

export interface RedisPublisherOptions {
  /** A client you built with `createClient()` from `redis` and connected; you keep ownership (close() leaves it open). */
  client?: RedisClientLike;
  /** 'redis://[user:pass@]host:port[/db]' or 'rediss://…' (TLS): connected on first publish, closed by close(). */
  url?: string;
  /**
   * Trim each stream to about this many entries on every XADD (`MAXLEN ~ n`). Trimming deletes the
   * oldest entries whether or not anyone read them. Default: no trimming.
   */
  maxLen?: number;
  /** CloudEvents content mode: 'binary' (attributes as fields) or 'structured' (one JSON document in `data`). */
  mode?: CloudEventsMode;
  /** CloudEvents `source` attribute. */
  source?: string;
  /** How long one publish() call waits for its replies (and, while disconnected, to get them sent). */
  timeoutMs?: number;
}

/** A Publisher whose close() always exists (it closes the client it created, if any). */
export interface RedisPublisher extends Publisher {
  close(): Promise<void>;
}

export const REDIS_PUBLISHER_DEFAULTS = Object.freeze({
  mode: 'binary' as CloudEventsMode,
  source: 'outbox',
  timeoutMs: 5000,
});

/**
 * A stream key is any binary string, so the generic grammar only keeps out what an operator could
 * not type in redis-cli or a log line (empty, very long, whitespace, control characters).
 */
export const redisGrammar: DestinationGrammar = (destination) => genericGrammar(destination);

/** What we also use of the client we build from `url`. */
interface OwnedClient extends RedisClientLike {
  on(event: 'error', listener: (error: unknown) => void): unknown;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): unknown;
}

interface Session {
  readonly client: RedisClientLike;
  /** Set when we built the client from `url`: ours to close. */
  readonly owned: OwnedClient | undefined;
  /** The owned client's last connection error, to say why a publish timed out while disconnected. */
  lastError: unknown;
}

interface Config {
  readonly mode: CloudEventsMode;
  readonly source: string;
  readonly timeoutMs: number;
  readonly trim: XAddTrim | undefined;
  /** Where the owned client connects, without credentials (it reaches logs). */
  readonly where: string;
}

/**
 * A publisher for Redis Streams. Give it your node-redis client, or a URL to let it connect (and close).
 * The destination of an event is the stream's key.
 * @example
 * import { createClient } from 'redis';
 * const publisher = redisPublisher({ client: await createClient({ url: 'redis://127.0.0.1:6379' }).connect() });
 * // or, owning its client: redisPublisher({ url: 'redis://127.0.0.1:6379', maxLen: 1_000_000 })
 */
export function redisPublisher(options: RedisPublisherOptions): RedisPublisher {
  const config = resolveOptions(options);
  const { client, url } = options;
  let session: Promise<Session> | undefined;
  let closed = false;

  const open = async (): Promise<Session> => {
    if (client !== undefined) return { client, owned: undefined, lastError: undefined };
    const driver = await loadDriver();
    const owned: OwnedClient = driver.createClient({
      url: url!,
      socket: { connectTimeout: config.timeoutMs },
    });
    const s: Session = { client: owned, owned, lastError: undefined };
    // Without a listener an 'error' event would crash the process; node-redis reconnects by
    // itself (backoff up to ~2 s, for ever), and publishes fail meanwhile with this as the reason.
    owned.on('error', (error: unknown) => {
      s.lastError = error;
    });
    // Not awaited: commands wait in node-redis's offline queue until it connects, bounded by the
    // publish deadline, so a server that is down at start behaves like one that went down later.
    owned.connect().catch((error: unknown) => {
      s.lastError = error;
    });
    return s;
  };

  const getSession = (): Promise<Session> => {
    if (closed) return Promise.reject(new PublishError('the Redis publisher is closed'));
    session ??= open().catch((error: unknown) => {
      session = undefined; // a failed driver load is retried on the next publish, not cached
      throw error;
    });
    return session;
  };

  return {
    kind: 'redis',
    capabilities: { dedupeById: false },
    validateDestination: redisGrammar,
    async publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]> {
      let s: Session;
      try {
        s = await getSession();
      } catch (error) {
        return messages.map(() => ({ ok: false, error }));
      }
      return s.client.isReady ? publishConnected(s, config, messages) : publishAll(s, config, messages);
    },
    async close(): Promise<void> {
      closed = true;
      const current = session;
      session = undefined;
      const owned = (await current?.catch(() => undefined))?.owned;
      if (owned === undefined) return;
      // A connected client gets the replies in flight before it quits; one that cannot reach the
      // server (or takes too long) is cut at once: its queued commands fail, nothing waits for ever.
      if (owned.isReady) {
        const quit = owned.close().then(
          () => true,
          () => false,
        );
        const late = new Promise<false>((resolve) => setTimeout(resolve, config.timeoutMs, false).unref());
        if (await Promise.race([quit, late])) return;
      }
      owned.destroy();
    },
  };
}

/**
 * The connected path: every XADD of the call issued in the same tick, so node-redis writes them
 * as one pipeline and Redis answers each on its own: one result per message. Nothing waits in the
 * offline queue to withdraw, so one timer serves the whole call; a reply that has not come when it
 * fires counts as failed, though Redis may still apply the command (a duplicate on retry, never a
 * loss).
 */
async function publishConnected(
  s: Session,
  config: Config,
  messages: readonly OutboundMessage[],
): Promise<PublishResult[]> {
  const results: (PublishResult | undefined)[] = new Array(messages.length);
  const replies = Promise.all(
    messages.map((m, i) =>
      s.client.xAdd(m.destination, '*', fieldsOf(m, config), config.trim).then(
        () => {
          results[i] = PUBLISHED;
        },
        (error: unknown) => {
          results[i] = { ok: false, error: publishErrorOf(error, m.destination) };
        },
      ),
    ),
  );
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, config.timeoutMs);
  });
  try {
    await Promise.race([replies, late]);
  } finally {
    clearTimeout(timer);
  }
  // Array.from, not map: map skips the holes of the replies that never came.
  return Array.from(
    results,
    (r, i) => r ?? { ok: false, error: timeoutError(s, config, messages[i]!.destination, undefined) },
  );
}

const PUBLISHED: PublishResult = Object.freeze({ ok: true });

/**
 * The path while the client is not ready (connecting, or reconnecting): every XADD issued in the
 * same tick, one deadline for the whole call. When it passes, commands still waiting in the
 * offline queue are withdrawn (never sent later) and the rest count as failed, though Redis may
 * still apply them (a duplicate on retry, never a loss).
 */
async function publishAll(
  s: Session,
  config: Config,
  messages: readonly OutboundMessage[],
): Promise<PublishResult[]> {
  const deadline = new AbortController();
  // node-redis adds a listener per queued command (and so do we): no leak warning for a big batch.
  setMaxListeners(messages.length + 1, deadline.signal);
  const expired = new Promise<never>((_, reject) => {
    deadline.signal.addEventListener('abort', () => reject(deadline.signal.reason), { once: true });
  });
  const timer = setTimeout(() => deadline.abort(), config.timeoutMs);
  const writer = s.client.withAbortSignal(deadline.signal);
  try {
    return await Promise.all(
      messages.map(async (m): Promise<PublishResult> => {
        try {
          await Promise.race([writer.xAdd(m.destination, '*', fieldsOf(m, config), config.trim), expired]);
          return { ok: true };
        } catch (error) {
          const failure = deadline.signal.aborted
            ? timeoutError(s, config, m.destination, error)
            : publishErrorOf(error, m.destination);
          return { ok: false, error: failure };
        }
      }),
    );
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Binary mode: the CloudEvents attributes named as in the HTTP binding (`ce-id`, …), `content-type`,
 * the event's own headers, then `data` = the payload. Structured mode: `content-type`, the event's
 * own headers, then `data` = the structured document. `data` is a reserved header name, so an
 * event's header can never overwrite the payload.
 */
function fieldsOf(m: OutboundMessage, config: Config): Record<string, string> {
  if (config.mode === 'structured')
    return {
      'content-type': STRUCTURED_CONTENT_TYPE,
      ...eventHeaders(m),
      data: structuredCloudEvent(m, config.source),
    };
  return { ...cloudEventAttributes(m, config.source), data: m.payload };
}

function timeoutError(s: Session, config: Config, stream: string, cause: unknown): PublishError {
  const details = { stream, timeoutMs: config.timeoutMs };
  if (!s.client.isReady) {
    const why = s.lastError === undefined ? '' : ` (${describeError(s.lastError)})`;
    const at = s.owned === undefined ? 'the Redis client is' : `Redis at ${config.where} is`;
    return new PublishError(
      `${at} not connected${why}: XADD to stream '${stream}' not sent within ${config.timeoutMs} ms`,
      { cause, details },
    );
  }
  return new PublishError(
    `no reply from Redis within ${config.timeoutMs} ms to XADD on stream '${stream}': not known to be ` +
      'published (a retry may add a second entry; consumers drop it by ce-id)',
    { cause, details },
  );
}

/**
 * Everything is retryable: a WRONGTYPE key can be renamed by an operator, OOM / READONLY / LOADING /
 * NOPERM answers and lost connections heal or get fixed; none depends on the message itself.
 */
function publishErrorOf(error: unknown, stream: string): PublishError {
  const details = { stream };
  if (error instanceof Error && error.message.startsWith('WRONGTYPE'))
    return new PublishError(
      `Redis key '${stream}' exists and is not a stream (WRONGTYPE): not published; ` +
        'rename or delete that key, or route these events to another stream',
      { cause: error, details },
    );
  return new PublishError(`Redis XADD to stream '${stream}' failed: ${describeError(error)}`, {
    cause: error,
    details,
  });
}

function resolveOptions(options: RedisPublisherOptions): Config {
  const invalid = (key: string, message: string, value?: unknown) =>
    new OutboxError('INVALID_CONFIG', `redisPublisher \`${key}\` ${message}`, { details: { key, value } });
  const { client, url, maxLen } = options;
  const {
    mode = REDIS_PUBLISHER_DEFAULTS.mode,
    source = REDIS_PUBLISHER_DEFAULTS.source,
    timeoutMs = REDIS_PUBLISHER_DEFAULTS.timeoutMs,
  } = options;
  if ((client === undefined) === (url === undefined))
    throw new OutboxError('INVALID_CONFIG', 'redisPublisher needs exactly one of `client` or `url`');
  if (client !== undefined && typeof client.withAbortSignal !== 'function')
    throw invalid('client', 'must be a node-redis v5+ client (createClient from the redis package)');
  const where = url === undefined ? '' : parseUrl(url);
  if (maxLen !== undefined && (!Number.isInteger(maxLen) || maxLen <= 0))
    throw invalid('maxLen', 'must be a positive integer', maxLen);
  if (mode !== 'binary' && mode !== 'structured')
    throw invalid('mode', "must be 'binary' or 'structured'", mode);
  if (typeof source !== 'string' || source === '') throw invalid('source', 'must be a non-empty string');
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw invalid('timeoutMs', 'must be a positive integer', timeoutMs);
  const trim: XAddTrim | undefined =
    maxLen === undefined
      ? undefined
      : { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: maxLen } };
  return { mode, source, timeoutMs, trim, where };
}

/** Checks the URL as node-redis will read it; returns host:port for messages (no credentials). */
function parseUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new OutboxError('INVALID_CONFIG', 'redisPublisher `url` is not a valid URL', {
      details: { key: 'url' },
    });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new OutboxError('UNSUPPORTED_URL', 'redisPublisher `url` must start with redis:// or rediss://', {
      details: { key: 'url' },
    });
  if (!/^\/?\d*$/.test(u.pathname))
    throw new OutboxError(
      'INVALID_CONFIG',
      'redisPublisher `url` path must be a database number (redis://host/0)',
      {
        details: { key: 'url' },
      },
    );
  return `${u.hostname}:${u.port || '6379'}`;
}

async function loadDriver(): Promise<typeof import('redis')> {
  try {
    return await import('redis');
  } catch (cause) {
    throw new OutboxError('DRIVER_MISSING', 'redisPublisher needs the redis package: npm install redis', {
      cause,
      details: { package: 'redis' },
    });
  }
}
