/**
 * RabbitMQ (AMQP 0-9-1) publisher. Each event goes out on a confirm channel as a persistent,
 * `mandatory` message with its id as `messageId`, and counts as delivered only when the broker
 * confirmed it AND did not return it: RabbitMQ confirms an unroutable message too (after a
 * `basic.return`), so a confirm alone is not proof that any queue holds it.
 *
 * Destination `<exchange>/<routing key>`; one without '/' is a queue name, sent through the
 * default exchange. Publishing to an exchange that does not exist makes RabbitMQ close the
 * channel, failing every message in flight on it, so each exchange is checked once, on a
 * throwaway channel, before anything is published to it.
 *
 * amqplib is an optional peer dependency, loaded on first use and named in a DRIVER_MISSING error.
 */

import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import type { DestinationGrammar } from '../core/destination.js';
import {
  assertCloudEventsMode,
  type CloudEventsMode,
  cloudEventContext,
  eventHeaders,
  PAYLOAD_CONTENT_TYPE,
  STRUCTURED_CONTENT_TYPE,
  structuredCloudEvent,
} from '../core/envelope.js';
import { describeError, OutboxError, PermanentError, PublishError } from '../core/errors.js';
import type { OutboundMessage, Publisher, PublishResult } from '../core/ports.js';

export interface AmqpPublisherOptions {
  /** A connection you opened with amqplib's `connect()`; outbox opens its own channels on it and never closes it. */
  connection?: ChannelModel;
  /** 'amqp://user:pass@host:5672/vhost' or 'amqps://…': connected on first publish (again after a loss), closed by close(). */
  url?: string;
  /** CloudEvents content mode: attributes as `cloudEvents:*` headers (binary) or one JSON document (structured). */
  mode?: CloudEventsMode;
  /** CloudEvents `source` attribute. */
  source?: string;
  /** How long one message may take, broker confirm included, before it counts as failed (retryable). */
  timeoutMs?: number;
}

/** A Publisher whose close() always exists (it closes the connection it opened, if any). */
export interface AmqpPublisher extends Publisher {
  close(): Promise<void>;
}

export const AMQP_PUBLISHER_DEFAULTS = Object.freeze({
  mode: 'binary',
  source: 'outbox',
  timeoutMs: 10_000,
} as const);

const MAX_NAME_BYTES = 255;
/** AMQP reply code of a channel closed because a named entity (here: an exchange) does not exist. */
const NOT_FOUND = 404;
/** CloudEvents AMQP binding: attributes are application properties named `cloudEvents:<attribute>`. */
const ATTRIBUTE_PREFIX = 'cloudEvents:';
/** RabbitMQ reads these headers as extra routing keys (sender-selected distribution). */
const ROUTING_HEADERS = ['CC', 'BCC'];

/**
 * AMQP destination: `<exchange>/<routing key>`, or a queue name alone (the default exchange).
 * Exchange: 1–255 letters, digits, '-', '_', '.', ':'. Routing key: at most 255 bytes, may be
 * empty after '/' (fanout and headers exchanges ignore it). No control characters.
 * @example
 * amqpGrammar('orders/order.created') // undefined: exchange 'orders', routing key 'order.created'
 * amqpGrammar('billing-queue')        // undefined: default exchange, straight to that queue
 * amqpGrammar('/x')                   // "has an empty exchange name before '/' …"
 */
export const amqpGrammar: DestinationGrammar = (d) => {
  if (d.length === 0) return 'is empty';
  if (/[\u0000-\u001f\u007f]/.test(d)) return 'contains control characters';
  const { exchange, routingKey } = routeOf(d);
  if (d.includes('/')) {
    if (exchange === '')
      return "has an empty exchange name before '/' (write the queue name alone to use the default exchange)";
    if (exchange.length > MAX_NAME_BYTES)
      return `has an exchange name longer than ${MAX_NAME_BYTES} characters`;
    if (!/^[A-Za-z0-9_.:-]+$/.test(exchange))
      return "has an exchange name with characters other than letters, digits, '-', '_', '.' and ':'";
  }
  if (Buffer.byteLength(routingKey) > MAX_NAME_BYTES)
    return `has a routing key longer than ${MAX_NAME_BYTES} bytes`;
  return undefined;
};

interface Route {
  /** '' = the default exchange, which routes to the queue named by the routing key. */
  readonly exchange: string;
  readonly routingKey: string;
}

function routeOf(destination: string): Route {
  const slash = destination.indexOf('/');
  if (slash === -1) return { exchange: '', routingKey: destination };
  return { exchange: destination.slice(0, slash), routingKey: destination.slice(slash + 1) };
}

/** The confirm channel we publish on, with what the broker told us about it. */
interface Publishing {
  readonly channel: ConfirmChannel;
  /** Messages the broker returned as unroutable, by messageId: read at their confirm, which follows. */
  readonly returned: Map<string, string>;
  /** Why the broker closed the channel, when it did (404 exchange deleted, 406 …). */
  closedBy: string | undefined;
}

/** One connection: the user's, or one we opened from `url`. */
interface Session {
  readonly model: ChannelModel;
  publishing: Promise<Publishing> | undefined;
  lost: boolean;
  /** Set while RabbitMQ blocks publishers (memory or disk alarm): confirms wait until it lifts. */
  blocked: string | undefined;
}

interface Config {
  readonly mode: CloudEventsMode;
  readonly source: string;
  readonly timeoutMs: number;
}

/**
 * A publisher for RabbitMQ. Give it your amqplib connection, or a URL to let it connect (and close).
 * @example
 * import { connect } from 'amqplib';
 * const publisher = amqpPublisher({ connection: await connect('amqp://127.0.0.1') });
 * // or, owning its connection: amqpPublisher({ url: 'amqp://guest:guest@127.0.0.1:5672', source: 'orders' })
 * // routes: [{ type: 'order.*', destination: 'orders/order.created' }] → exchange 'orders', routing key 'order.created'
 */
export function amqpPublisher(options: AmqpPublisherOptions): AmqpPublisher {
  const { connection, url } = options;
  const config = resolveOptions(options);
  /** Exchanges checked (or being checked) and found to exist; cleared when one turns out deleted. */
  const exchanges = new Map<string, Promise<boolean>>();
  let session: Promise<Session> | undefined;
  let closed = false;

  const getSession = async (): Promise<Session> => {
    if (closed) throw new PublishError('the AMQP publisher is closed');
    const current = session;
    if (current) {
      const s = await current;
      // Our own connection is opened again after a loss; a user's connection is theirs to replace.
      if (connection !== undefined || !s.lost) return s;
      if (session === current) session = undefined;
    }
    session ??= openSession(connection, url).catch((error: unknown) => {
      session = undefined; // a failed connect is retried on the next publish, not cached
      throw error;
    });
    return session;
  };

  const exchangeExists = (s: Session, name: string): Promise<boolean> => {
    let check = exchanges.get(name);
    if (check === undefined) {
      check = checkExchange(s.model, name);
      exchanges.set(name, check);
      // Only existence is cached: a missing exchange is looked up again on the next attempt.
      check.then(
        (exists) => exists || exchanges.delete(name),
        () => exchanges.delete(name),
      );
    }
    return check;
  };

  const publishOne = async (s: Session, m: OutboundMessage): Promise<PublishResult> => {
    const bad = amqpGrammar(m.destination);
    if (bad) return failed(new PermanentError(`destination '${m.destination}' ${bad}`));
    const route = routeOf(m.destination);
    const headers = eventHeaders(m);
    const routing = ROUTING_HEADERS.find((name) => name in headers);
    if (routing)
      return failed(
        new PermanentError(
          `event header '${routing}' cannot be sent over AMQP: RabbitMQ would route copies by it (sender-selected distribution)`,
        ),
      );
    try {
      if (route.exchange !== '' && !(await exchangeExists(s, route.exchange)))
        return failed(
          new PublishError(
            `exchange '${route.exchange}' does not exist on RabbitMQ (404 NOT_FOUND): not published to '${m.destination}'; declare the exchange or fix the route`,
            { details: { exchange: route.exchange, destination: m.destination } },
          ),
        );
      const publishing = await publishingChannel(s, () => exchanges.clear());
      return await send(publishing, m, route, envelope(m, headers, config));
    } catch (cause) {
      return failed(
        new PublishError(`AMQP publish to '${m.destination}' failed: ${describeError(cause)}`, {
          cause,
          details: { destination: m.destination },
        }),
      );
    }
  };

  return {
    kind: 'amqp',
    capabilities: { dedupeById: false },
    validateDestination: amqpGrammar,
    async publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]> {
      let s: Session;
      try {
        s = await getSession();
      } catch (error) {
        return messages.map(() => failed(error));
      }
      // Distinct keys in one call (the relay's contract), so no order to keep between them.
      return Promise.all(
        messages.map((m) => withDeadline(publishOne(s, m), config.timeoutMs, s, m.destination)),
      );
    },
    async close(): Promise<void> {
      closed = true;
      const current = session;
      session = undefined;
      const s = await current?.catch(() => undefined);
      if (s === undefined || s.lost) return;
      if (connection === undefined) {
        await s.model.close().catch(() => undefined);
        return;
      }
      // The user's connection stays open: close only the channel we opened on it.
      const publishing = await s.publishing?.catch(() => undefined);
      await publishing?.channel.close().catch(() => undefined);
    },
  };
}

async function openSession(connection: ChannelModel | undefined, url: string | undefined): Promise<Session> {
  let model = connection;
  if (model === undefined) {
    const amqp = await loadDriver();
    try {
      model = await amqp.connect(url!, { clientProperties: { connection_name: 'outbox' } });
    } catch (cause) {
      throw new PublishError(`cannot connect to RabbitMQ at ${describeUrl(url!)}: ${describeError(cause)}`, {
        cause,
        details: { url: describeUrl(url!) },
      });
    }
    // A lost socket emits 'error' then 'close'; without a listener the 'error' would crash the process.
    model.on('error', () => undefined);
  }
  const s: Session = { model, publishing: undefined, lost: false, blocked: undefined };
  model.on('close', () => {
    s.lost = true;
  });
  model.on('blocked', (reason: string) => {
    s.blocked = reason;
  });
  model.on('unblocked', () => {
    s.blocked = undefined;
  });
  return s;
}

/** The session's confirm channel, opened again whenever the broker or a lost connection closed it. */
function publishingChannel(s: Session, onExchangeMissing: () => void): Promise<Publishing> {
  if (s.publishing) return s.publishing;
  const opening = s.model.createConfirmChannel().then((channel) => {
    const p: Publishing = { channel, returned: new Map(), closedBy: undefined };
    channel.on('return', (message: Message) => {
      const { replyCode, replyText } = message.fields as unknown as { replyCode: number; replyText: string };
      p.returned.set(String(message.properties.messageId), `${replyCode} ${replyText}`);
    });
    // The broker closes a channel on a channel-level error: the reason is in its 'error' event.
    channel.on('error', (error: Error & { code?: number }) => {
      p.closedBy = describeError(error);
      // An exchange we checked was deleted since: look every exchange up again.
      if (error.code === NOT_FOUND) onExchangeMissing();
    });
    channel.on('close', () => {
      if (s.publishing === opening) s.publishing = undefined;
    });
    return p;
  });
  s.publishing = opening;
  opening.catch(() => {
    if (s.publishing === opening) s.publishing = undefined;
  });
  return opening;
}

/** True when the exchange exists. Asked on a throwaway channel: a 404 closes the channel it is asked on. */
async function checkExchange(model: ChannelModel, name: string): Promise<boolean> {
  const channel = await model.createChannel();
  let closedByBroker = false;
  channel.on('error', () => {
    closedByBroker = true; // the rejection below says why
  });
  try {
    await channel.checkExchange(name);
    return true;
  } catch (error) {
    if ((error as { code?: unknown }).code === NOT_FOUND) return false;
    throw error;
  } finally {
    if (!closedByBroker) await channel.close().catch(() => undefined);
  }
}

/** Publishes one message and waits for its confirm; a return before the confirm makes it a failure. */
function send(
  p: Publishing,
  m: OutboundMessage,
  route: Route,
  { content, options }: Envelope,
): Promise<PublishResult> {
  const where = m.destination;
  return new Promise((resolve) => {
    try {
      p.channel.publish(route.exchange, route.routingKey, content, options, (error: unknown) => {
        const returned = p.returned.get(m.id);
        p.returned.delete(m.id);
        if (error) resolve(failed(confirmError(error, p, where)));
        else if (returned) resolve(failed(unroutable(route, where, returned)));
        else resolve({ ok: true });
      });
    } catch (cause) {
      // Encoding refused the message (headers table over 64 KiB): the same bytes fail every time.
      const error =
        cause instanceof RangeError
          ? new PermanentError(`message for '${where}' cannot be encoded: ${describeError(cause)}`, { cause })
          : new PublishError(`AMQP publish to '${where}' failed: ${describeError(cause)}`, { cause });
      resolve(failed(error));
    }
  });
}

/**
 * `attempt`, or a retryable failure once `timeoutMs` passed. A half-open connection (no RST)
 * stalls channel opens and confirms alike until the heartbeat notices, which takes a minute.
 */
async function withDeadline(
  attempt: Promise<PublishResult>,
  timeoutMs: number,
  s: Session,
  where: string,
): Promise<PublishResult> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<PublishResult>((resolve) => {
    timer = setTimeout(() => {
      const blocked = s.blocked ? ` (the broker is blocking publishers: ${s.blocked})` : '';
      const error = new PublishError(
        `no confirm from RabbitMQ for '${where}' within ${timeoutMs} ms${blocked}: not known to be delivered ` +
          '(a retry may duplicate it, with the same messageId)',
        { details: { destination: where, timeoutMs } },
      );
      resolve(failed(error));
    }, timeoutMs);
  });
  try {
    return await Promise.race([attempt, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function confirmError(error: unknown, p: Publishing, where: string): PublishError {
  const details = { destination: where };
  if (error instanceof Error && error.message === 'message nacked')
    return new PublishError(`RabbitMQ refused (nacked) the message for '${where}': not delivered`, {
      cause: error,
      details,
    });
  const reason = p.closedBy ?? 'the channel or its connection closed';
  return new PublishError(
    `no confirm from RabbitMQ for '${where}' (${reason}): not known to be delivered ` +
      '(a retry may duplicate it, with the same messageId)',
    { cause: error, details },
  );
}

function unroutable(route: Route, where: string, reply: string): PublishError {
  const why =
    route.exchange === ''
      ? `no queue named '${route.routingKey}' exists (default exchange)`
      : `no queue is bound to exchange '${route.exchange}' for routing key '${route.routingKey}'`;
  return new PublishError(
    `RabbitMQ returned the message for '${where}' as unroutable (${reply}): ${why}; not delivered`,
    {
      details: { destination: where, exchange: route.exchange, routingKey: route.routingKey },
    },
  );
}

interface Envelope {
  readonly content: Buffer;
  readonly options: Options.Publish;
}

/** The message: CloudEvents attributes as `cloudEvents:*` headers (binary) or one JSON body (structured). */
function envelope(m: OutboundMessage, own: Record<string, string>, config: Config): Envelope {
  const headers: Record<string, string> = { ...own };
  let body = m.payload;
  let contentType = PAYLOAD_CONTENT_TYPE;
  if (config.mode === 'structured') {
    body = structuredCloudEvent(m, config.source);
    contentType = STRUCTURED_CONTENT_TYPE;
  } else {
    // Written after the event's own headers, so none of those can stand in for an attribute.
    for (const [name, value] of Object.entries(cloudEventContext(m, config.source)))
      if (name !== 'datacontenttype') headers[`${ATTRIBUTE_PREFIX}${name}`] = value; // it is the content-type property
  }
  const options: Options.Publish = {
    persistent: true,
    mandatory: true,
    messageId: m.id,
    type: m.type,
    contentType,
    timestamp: Math.floor(m.createdAt.getTime() / 1000), // AMQP timestamps are whole seconds
    headers,
  };
  return { content: Buffer.from(body, 'utf8'), options };
}

const failed = (error: unknown): PublishResult => ({ ok: false, error });

function resolveOptions(options: AmqpPublisherOptions): Config {
  const invalid = (
    key: string,
    message: string,
    code: 'INVALID_CONFIG' | 'UNSUPPORTED_URL' = 'INVALID_CONFIG',
  ) => new OutboxError(code, `amqpPublisher \`${key}\` ${message}`, { details: { key } });
  const { connection, url } = options;
  if ((connection === undefined) === (url === undefined))
    throw new OutboxError('INVALID_CONFIG', 'amqpPublisher needs exactly one of `connection` or `url`');
  if (
    connection !== undefined &&
    typeof (connection as Partial<ChannelModel>).createConfirmChannel !== 'function'
  )
    throw invalid('connection', "must be an amqplib connection (the promise API's connect())");
  if (url !== undefined && !/^amqps?:\/\//i.test(String(url)))
    throw invalid('url', 'must start with amqp:// or amqps://', 'UNSUPPORTED_URL');
  if (url !== undefined && !URL.canParse(url)) throw invalid('url', 'is not a valid URL');
  const {
    mode = AMQP_PUBLISHER_DEFAULTS.mode,
    source = AMQP_PUBLISHER_DEFAULTS.source,
    timeoutMs = AMQP_PUBLISHER_DEFAULTS.timeoutMs,
  } = options;
  assertCloudEventsMode(mode, 'amqpPublisher');
  if (typeof source !== 'string' || source === '') throw invalid('source', 'must be a non-empty string');
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw invalid('timeoutMs', 'must be a positive integer');
  return { mode, source, timeoutMs };
}

/** Scheme, host, port and vhost only (the URL was checked): its password must not reach logs. */
function describeUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}

async function loadDriver(): Promise<typeof import('amqplib')> {
  try {
    return await import('amqplib');
  } catch (cause) {
    throw new OutboxError('DRIVER_MISSING', 'amqpPublisher needs the amqplib package: npm install amqplib', {
      cause,
      details: { package: 'amqplib' },
    });
  }
}
