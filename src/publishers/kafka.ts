/**
 * Kafka publisher. One adapter over the KafkaJS-style producer API, `send({ topic, messages })`,
 * which both `kafkajs` and `@confluentinc/kafka-javascript` (its KafkaJS-compatible API) offer.
 * The message key is the event key, so Kafka's partitioner puts every event of a key on one
 * partition, where the log keeps them in the order the relay sent them. Headers carry the
 * CloudEvents Kafka binding (`ce_id`, `ce_type`, …, `content-type`) and the event's own headers.
 *
 * A publish() call sends each topic's messages together (one produce request per broker), so a
 * topic that fails fails only its own messages. Acks from all in-sync replicas (`acks = -1`);
 * the producer outbox builds from a URL is idempotent and never creates topics, so an unknown
 * topic is a failure, not a new topic.
 *
 * kafkajs is an optional peer dependency, imported only to build a producer from `url` or
 * `brokers`; a producer you built needs nothing from outbox's side.
 */

import type { Producer } from 'kafkajs';
import { kafkaGrammar } from '../core/destination.js';
import {
  assertCloudEventsMode,
  type CloudEventsMode,
  cloudEventContext,
  eventHeaders,
  STRUCTURED_CONTENT_TYPE,
  structuredCloudEvent,
} from '../core/envelope.js';
import { describeError, type ErrorCode, OutboxError, PermanentError, PublishError } from '../core/errors.js';
import type { OutboundMessage, Publisher, PublishResult } from '../core/ports.js';

/** What send() is given: `acks` and `timeout` only for producers that take them per send (kafkajs). */
export interface KafkaSendRecord {
  topic: string;
  messages: { key: string; value: string; headers: Record<string, string> }[];
  acks?: number;
  timeout?: number;
}

type KafkaMessage = KafkaSendRecord['messages'][number];

/**
 * The part of a KafkaJS-style producer this publisher uses (structural: a kafkajs 2.2+ producer
 * and `@confluentinc/kafka-javascript`'s `KafkaJS.Kafka#producer()` both fit). Give it connected.
 */
export interface KafkaProducerLike {
  send(record: KafkaSendRecord): Promise<unknown>;
  /**
   * Present on librdkafka-based producers (@confluentinc/kafka-javascript). Those take acks,
   * timeouts and idempotence from their own configuration and refuse them in send().
   */
  flush?: unknown;
}

export interface KafkaPublisherOptions {
  /** A producer you built and connected; you keep ownership (close() leaves it connected). */
  producer?: KafkaProducerLike;
  /** 'kafka://host:port[,host:port…]' or 'kafka+ssl://…' (the CLI's form): a kafkajs producer, connected on first publish, disconnected by close(). */
  url?: string;
  /** The same as `url`, as a list of 'host:port' (plain TCP). */
  brokers?: readonly string[];
  /** The kafkajs client id of the producer built from `url` or `brokers`. */
  clientId?: string;
  /** Idempotent producer built from `url` or `brokers` (default true; false for librdkafka's mock cluster). */
  idempotent?: boolean;
  /** CloudEvents content mode: attributes as `ce_*` headers (binary) or one JSON document (structured). */
  mode?: CloudEventsMode;
  /** CloudEvents `source` attribute. */
  source?: string;
  /** How long one publish() call waits for the brokers' acks (connecting included) before its messages count as failed (retryable). */
  timeoutMs?: number;
  /**
   * Largest estimated size of one send() to one topic; more goes in further sends, one after the
   * other. Kafka's `max.message.bytes` (1 MiB by default) limits a whole record batch.
   */
  maxBatchBytes?: number;
}

/** A Publisher whose close() always exists (it disconnects the producer it built, if any). */
export interface KafkaPublisher extends Publisher {
  close(): Promise<void>;
}

export const KAFKA_PUBLISHER_DEFAULTS = Object.freeze({
  clientId: 'outbox',
  idempotent: true,
  mode: 'binary' as CloudEventsMode,
  source: 'outbox',
  timeoutMs: 10_000,
  maxBatchBytes: 1_000_000,
});

const DEFAULT_PORT = 9092;
/** Kafka protocol error codes (the same numbers in kafkajs's `code` and librdkafka's). */
const UNKNOWN_TOPIC_OR_PARTITION = 3;
const MESSAGE_TOO_LARGE = 10;
const INVALID_TOPIC = 17;
const RECORD_LIST_TOO_LARGE = 18;
/** librdkafka's local "topic not in the cluster's metadata". */
const LIBRDKAFKA_UNKNOWN_TOPIC = -188;
/** Upper bounds of a record's framing in a v2 record batch (varints, attributes), per record and header. */
const RECORD_OVERHEAD_BYTES = 40;
const HEADER_OVERHEAD_BYTES = 10;

interface Config {
  readonly mode: CloudEventsMode;
  readonly source: string;
  readonly timeoutMs: number;
  readonly maxBatchBytes: number;
  readonly clientId: string;
  readonly idempotent: boolean;
  /** Where the owned producer connects (no credentials: it reaches logs). */
  readonly brokers: readonly string[];
  readonly ssl: boolean;
}

/** The last error kafkajs logged for the producer we built: why a send or connect is still waiting. */
interface Trouble {
  message: string | undefined;
  atMs: number;
}

/**
 * A publisher for Kafka. Give it your connected producer (kafkajs, or the KafkaJS API of
 * @confluentinc/kafka-javascript), or a URL to let it build a kafkajs producer (and disconnect it).
 * The destination of an event is its topic, which must exist.
 * @example
 * import { Kafka } from 'kafkajs';
 * const producer = new Kafka({ brokers: ['127.0.0.1:9092'] }).producer({ idempotent: true, allowAutoTopicCreation: false });
 * await producer.connect();
 * const publisher = kafkaPublisher({ producer });
 * // or, owning its producer: kafkaPublisher({ url: 'kafka://k1:9092,k2:9092', clientId: 'orders' })
 */
export function kafkaPublisher(options: KafkaPublisherOptions): KafkaPublisher {
  const config = resolveOptions(options);
  const given = options.producer;
  // A producer that takes acks and timeout per send (kafkajs); librdkafka's refuse them there.
  const perSend = given === undefined || typeof given.flush !== 'function';
  const trouble: Trouble = { message: undefined, atMs: 0 };
  let owned: Producer | undefined;
  let connecting: Promise<KafkaProducerLike> | undefined;
  let closed = false;

  const connect = async (): Promise<KafkaProducerLike> => {
    const { Kafka, logLevel } = await loadDriver();
    const kafka = new Kafka({
      clientId: config.clientId,
      brokers: [...config.brokers],
      ssl: config.ssl,
      requestTimeout: config.timeoutMs,
      // kafkajs logs to the console by default; its last error is kept instead, to explain a timeout.
      logLevel: logLevel.ERROR,
      logCreator: () => (entry) => {
        trouble.message = entry.log.message;
        trouble.atMs = Date.now();
      },
    });
    const producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: config.idempotent,
      // Without idempotence, one request in flight per broker keeps a retried batch from landing
      // after a later one. The idempotent producer keeps partition order itself.
      ...(config.idempotent ? {} : { maxInFlightRequests: 1 }),
    });
    owned = producer;
    try {
      await producer.connect();
    } catch (cause) {
      await producer.disconnect().catch(() => undefined);
      throw new PublishError(`cannot connect to Kafka at ${where(config)}: ${describeError(cause)}`, {
        cause,
        details: { brokers: config.brokers },
      });
    }
    if (closed) {
      // close() ran while we were connecting, before this producer was connected to disconnect.
      await producer.disconnect().catch(() => undefined);
      throw new PublishError('the Kafka publisher is closed');
    }
    return producer;
  };

  const getProducer = (): Promise<KafkaProducerLike> => {
    if (closed) return Promise.reject(new PublishError('the Kafka publisher is closed'));
    if (given !== undefined) return Promise.resolve(given);
    connecting ??= connect().catch((error: unknown) => {
      connecting = undefined; // a failed connect is tried again on the next publish, not cached
      throw error;
    });
    return connecting;
  };

  return {
    kind: 'kafka',
    capabilities: { dedupeById: false },
    validateDestination: kafkaGrammar,
    async publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]> {
      const results: PublishResult[] = new Array(messages.length);
      const byTopic = new Map<string, number[]>();
      messages.forEach((m, i) => {
        const bad = kafkaGrammar(m.destination);
        if (bad)
          results[i] = failed(
            new PermanentError(`destination '${m.destination}' ${bad}`, {
              details: { topic: m.destination },
            }),
          );
        else {
          const indexes = byTopic.get(m.destination);
          if (indexes) indexes.push(i);
          else byTopic.set(m.destination, [i]);
        }
      });
      if (byTopic.size === 0) return results;
      const deadline = new Deadline(config.timeoutMs);
      try {
        let producer: KafkaProducerLike;
        try {
          producer = await deadline.race(getProducer());
        } catch (error) {
          const reason = deadline.passed(error) ? notConnected(config, deadline.recent(trouble)) : error;
          for (const indexes of byTopic.values()) for (const i of indexes) results[i] = failed(reason);
          return results;
        }
        const send = (record: KafkaSendRecord) =>
          producer.send(perSend ? { ...record, acks: -1, timeout: config.timeoutMs } : record);
        await Promise.all(
          [...byTopic].map(([topic, indexes]) =>
            sendTopic(topic, indexes, { messages, results, send, deadline, config, trouble }),
          ),
        );
        return results;
      } finally {
        deadline.clear();
      }
    },
    async close(): Promise<void> {
      closed = true;
      const producer = owned;
      owned = undefined;
      connecting = undefined;
      if (producer === undefined) return;
      // A producer still connecting (broker down) is stopped too; nothing waits longer than timeoutMs.
      const deadline = new Deadline(config.timeoutMs);
      await deadline.race(producer.disconnect()).catch(() => undefined);
      deadline.clear();
    },
  };
}

interface TopicSend {
  readonly messages: readonly OutboundMessage[];
  readonly results: PublishResult[];
  readonly send: (record: KafkaSendRecord) => Promise<unknown>;
  readonly deadline: Deadline;
  readonly config: Config;
  readonly trouble: Trouble;
}

/**
 * Sends one topic's messages of a call, in their order: one send(), or several one after the
 * other when they exceed `maxBatchBytes`. After a failed send the rest are not sent, so nothing
 * of this call lands on a partition ahead of an earlier message that failed.
 */
async function sendTopic(topic: string, indexes: readonly number[], s: TopicSend): Promise<void> {
  const chunks = chunkBySize(
    indexes.map((i) => ({ index: i, message: kafkaMessage(s.messages[i]!, s.config) })),
    s.config.maxBatchBytes,
  );
  for (const [n, chunk] of chunks.entries()) {
    try {
      await s.deadline.race(s.send({ topic, messages: chunk.map((c) => c.message) }));
      for (const { index } of chunk) s.results[index] = { ok: true };
    } catch (error) {
      const reason = s.deadline.passed(error)
        ? noAck(topic, chunk.length, s.config, s.deadline.recent(s.trouble))
        : publishErrorOf(error, topic, chunk.length);
      for (const { index } of chunk) s.results[index] = failed(reason);
      const held = new PublishError(
        `not sent to topic '${topic}': an earlier send of the same call failed (${reason.message})`,
        { cause: reason, details: { topic } },
      );
      for (const later of chunks.slice(n + 1)) for (const { index } of later) s.results[index] = failed(held);
      return;
    }
  }
}

/**
 * Binary mode (CloudEvents Kafka binding): `ce_<attribute>` headers, `content-type` for the
 * payload's type, then the event's own headers; the payload as the value. Structured mode:
 * `content-type: application/cloudevents+json`, the own headers, the document as the value.
 * The key is the event key either way (the binding's `partitionkey` key mapping).
 */
function kafkaMessage(m: OutboundMessage, config: Config): KafkaMessage {
  if (config.mode === 'structured')
    return {
      key: m.key,
      value: structuredCloudEvent(m, config.source),
      headers: { 'content-type': STRUCTURED_CONTENT_TYPE, ...eventHeaders(m) },
    };
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(cloudEventContext(m, config.source)))
    headers[name === 'datacontenttype' ? 'content-type' : `ce_${name}`] = value;
  return { key: m.key, value: m.payload, headers: { ...headers, ...eventHeaders(m) } };
}

interface Sized {
  readonly index: number;
  readonly message: KafkaMessage;
}

/** Consecutive runs of messages whose estimated size stays within `maxBytes` (at least one each). */
function chunkBySize(items: readonly Sized[], maxBytes: number): Sized[][] {
  const chunks: Sized[][] = [];
  let current: Sized[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = estimatedBytes(item.message);
    if (current.length > 0 && bytes + size > maxBytes) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

function estimatedBytes({ key, value, headers }: KafkaMessage): number {
  let bytes = RECORD_OVERHEAD_BYTES + Buffer.byteLength(key) + Buffer.byteLength(value);
  for (const [name, text] of Object.entries(headers))
    bytes += HEADER_OVERHEAD_BYTES + Buffer.byteLength(name) + Buffer.byteLength(text);
  return bytes;
}

/** One timer for a whole publish() call: every wait of the call races the same deadline. */
class Deadline {
  readonly expired: Promise<never>;
  readonly startedAtMs = Date.now();
  readonly #timer: NodeJS.Timeout;
  readonly #token = new Error('deadline passed');

  constructor(ms: number) {
    let expire!: (reason: unknown) => void;
    this.expired = new Promise<never>((_, reject) => {
      expire = reject;
    });
    this.expired.catch(() => undefined); // nobody may be racing it when it passes
    this.#timer = setTimeout(() => expire(this.#token), ms);
    this.#timer.unref();
  }

  race<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.expired]);
  }

  passed(error: unknown): boolean {
    return error === this.#token;
  }

  /** The client's last error if it happened during this call (an older one may be healed). */
  recent(trouble: Trouble): string | undefined {
    return trouble.atMs >= this.startedAtMs ? trouble.message : undefined;
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}

function notConnected(config: Config, trouble: string | undefined): PublishError {
  const why = trouble === undefined ? '' : ` (${trouble})`;
  return new PublishError(
    `not connected to Kafka at ${where(config)} within ${config.timeoutMs} ms${why}: not published`,
    { details: { brokers: config.brokers, timeoutMs: config.timeoutMs } },
  );
}

function noAck(topic: string, count: number, config: Config, trouble: string | undefined): PublishError {
  const why = trouble === undefined ? '' : ` (last client error: ${trouble})`;
  return new PublishError(
    `no ack from Kafka for ${count} message(s) to topic '${topic}' within ${config.timeoutMs} ms${why}: ` +
      'not known to be published (a retry may duplicate them, with the same ce_id)',
    { details: { topic, timeoutMs: config.timeoutMs } },
  );
}

/** Maps a failed send (kafkajs or librdkafka error) to retryable / permanent, naming the topic. */
function publishErrorOf(error: unknown, topic: string, count: number): PublishError {
  const chain: unknown[] = [];
  for (let e = error; e instanceof Error && chain.length < 8; e = e.cause) chain.push(e);
  const codes = new Set(chain.map((e) => (e as { code?: unknown }).code));
  const details = { topic, code: [...codes].find((c) => typeof c === 'number') };
  if (codes.has(UNKNOWN_TOPIC_OR_PARTITION) || codes.has(LIBRDKAFKA_UNKNOWN_TOPIC))
    return new PublishError(
      `topic '${topic}' does not exist on the Kafka cluster (topic auto-creation is off): not published; ` +
        'create the topic or fix the route',
      { cause: error, details },
    );
  if (codes.has(INVALID_TOPIC))
    return new PermanentError(`'${topic}' is not a topic name the Kafka cluster accepts`, {
      cause: error,
      details,
    });
  if (codes.has(MESSAGE_TOO_LARGE) || codes.has(RECORD_LIST_TOO_LARGE)) {
    // One message alone is too large: the same bytes fail every time. Several: the batch is.
    if (count === 1)
      return new PermanentError(
        `message for topic '${topic}' is larger than the topic's max.message.bytes allows`,
        { cause: error, details },
      );
    return new PublishError(
      `a batch of ${count} messages for topic '${topic}' is larger than the broker accepts: ` +
        "lower the publisher's maxBatchBytes below the topic's max.message.bytes",
      { cause: error, details },
    );
  }
  return new PublishError(`Kafka send to topic '${topic}' failed: ${describeError(error)}`, {
    cause: error,
    details,
  });
}

const failed = (error: unknown): PublishResult => ({ ok: false, error });

function where(config: Config): string {
  return config.brokers.join(',');
}

function invalid(key: string, message: string, value?: unknown, code: ErrorCode = 'INVALID_CONFIG') {
  return new OutboxError(code, `kafkaPublisher \`${key}\` ${message}`, { details: { key, value } });
}

function resolveOptions(options: KafkaPublisherOptions): Config {
  const { producer, url, brokers: list } = options;
  const given = [producer, url, list].filter((o) => o !== undefined).length;
  if (given !== 1)
    throw new OutboxError(
      'INVALID_CONFIG',
      'kafkaPublisher needs exactly one of `producer`, `url` or `brokers`',
    );
  if (producer !== undefined && typeof producer.send !== 'function')
    throw invalid(
      'producer',
      'must be a connected KafkaJS-style producer (kafkajs, or KafkaJS.Kafka from @confluentinc/kafka-javascript)',
    );
  if (producer !== undefined)
    for (const key of ['clientId', 'idempotent'] as const)
      if (options[key] !== undefined)
        throw invalid(
          key,
          'applies to a producer built from `url` or `brokers`: set it on your own producer',
        );
  const {
    clientId = KAFKA_PUBLISHER_DEFAULTS.clientId,
    idempotent = KAFKA_PUBLISHER_DEFAULTS.idempotent,
    mode = KAFKA_PUBLISHER_DEFAULTS.mode,
    source = KAFKA_PUBLISHER_DEFAULTS.source,
    timeoutMs = KAFKA_PUBLISHER_DEFAULTS.timeoutMs,
    maxBatchBytes = KAFKA_PUBLISHER_DEFAULTS.maxBatchBytes,
  } = options;
  assertCloudEventsMode(mode, 'kafkaPublisher');
  if (typeof source !== 'string' || source === '') throw invalid('source', 'must be a non-empty string');
  if (typeof clientId !== 'string' || clientId === '')
    throw invalid('clientId', 'must be a non-empty string');
  if (typeof idempotent !== 'boolean') throw invalid('idempotent', 'must be true or false', idempotent);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw invalid('timeoutMs', 'must be a positive integer', timeoutMs);
  if (!Number.isInteger(maxBatchBytes) || maxBatchBytes <= 0)
    throw invalid('maxBatchBytes', 'must be a positive integer', maxBatchBytes);
  let brokers: string[] = [];
  let ssl = false;
  if (url !== undefined) ({ brokers, ssl } = parseUrl(url));
  if (list !== undefined) {
    if (!Array.isArray(list) || list.length === 0)
      throw invalid('brokers', "must be a non-empty list of 'host:port'");
    brokers = list.map((b) => {
      const address = typeof b === 'string' ? parseBroker(b) : undefined;
      if (address === undefined) throw invalid('brokers', `has '${String(b)}', which is not 'host:port'`);
      return address;
    });
  }
  return { mode, source, timeoutMs, maxBatchBytes, clientId, idempotent, brokers, ssl };
}

/** 'kafka://h1:9092,h2' or 'kafka+ssl://…' → brokers with ports, and whether to use TLS. */
function parseUrl(url: string): { brokers: string[]; ssl: boolean } {
  const match = /^(kafka|kafka\+ssl):\/\/([^/?#]*)\/?$/i.exec(String(url));
  if (!match)
    throw invalid(
      'url',
      'must be kafka://host:port[,host:port…] or kafka+ssl://…',
      undefined,
      'UNSUPPORTED_URL',
    );
  const hosts = match[2]!;
  if (hosts.includes('@'))
    throw invalid(
      'url',
      'cannot carry credentials: build your own producer with SASL and pass it as `producer`',
    );
  const brokers = hosts.split(',').map((h) => parseBroker(h));
  if (brokers.some((b) => b === undefined)) throw invalid('url', "must list brokers as 'host[:port]'");
  return { brokers: brokers as string[], ssl: match[1]!.toLowerCase() === 'kafka+ssl' };
}

/** 'host[:port]' or '[v6]:port' → 'host:port' (default 9092), or undefined when it is neither. */
function parseBroker(text: string): string | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(text.trim());
  if (!match) return undefined;
  const port = match[2] === undefined ? DEFAULT_PORT : Number(match[2]);
  if (port < 1 || port > 65_535) return undefined;
  return `${match[1]}:${port}`;
}

async function loadDriver(): Promise<typeof import('kafkajs')> {
  try {
    return await import('kafkajs');
  } catch (cause) {
    throw new OutboxError('DRIVER_MISSING', 'kafkaPublisher needs the kafkajs package: npm install kafkajs', {
      cause,
      details: { package: 'kafkajs' },
    });
  }
}
