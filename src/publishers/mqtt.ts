/**
 * MQTT publisher (MQTT.js). Each event is published with QoS 1 (or 2) and counts as delivered on
 * the broker's PUBACK (PUBCOMP); a PUBACK with a failure reason code is a failure. QoS 0 is
 * fire-and-forget, so it cannot back an at-least-once promise and is refused.
 *
 * CloudEvents MQTT binding: with MQTT 5, binary mode sends the attributes as User Properties named
 * by their spec names and the payload's type as the Content Type property; structured mode sends
 * one JSON document. MQTT 3.1.1 has no properties, so there only structured mode exists, and the
 * event's own headers cannot travel.
 *
 * The session is persistent (`clean: false`, a stable client id): MQTT.js keeps unacknowledged
 * publishes and sends them again after a reconnect, and with QoS 2 the broker remembers what it
 * already received. The mqtt package is an optional peer dependency, loaded on first use.
 */

import { hostname } from 'node:os';
import type { IClientOptions, IClientPublishOptions, IConnackPacket, MqttClient } from 'mqtt';
import {
  type CloudEventsMode,
  cloudEventContext,
  eventHeaders,
  PAYLOAD_CONTENT_TYPE,
  STRUCTURED_CONTENT_TYPE,
  structuredCloudEvent,
} from '../core/envelope.js';
import { describeError, OutboxError, PermanentError, PublishError } from '../core/errors.js';
import type { OutboundMessage, Publisher, PublishResult } from '../core/ports.js';

export interface MqttPublisherOptions {
  /** A client you built with `mqtt.connect()`; you keep ownership (close() leaves it open). */
  client?: MqttClient;
  /** 'mqtt://[user:pass@]host:port' or 'mqtts://…': connected on first publish, closed by close(). */
  url?: string;
  /** 1 (at least once, the default) or 2 (exactly once between the relay and the broker). */
  qos?: 1 | 2;
  /** 5 (MQTT 5, the default) or 4 (MQTT 3.1.1: structured mode only). Set on the client when you give one. */
  protocolVersion?: 4 | 5;
  /** The MQTT client id of the session; unique per connection. Set on the client when you give one. */
  clientId?: string;
  /** CloudEvents content mode: 'binary' (MQTT 5 only) or 'structured'. */
  mode?: CloudEventsMode;
  /** CloudEvents `source` attribute. */
  source?: string;
  /** How long to wait for the broker's PUBACK before counting the publish as failed (retryable). */
  timeoutMs?: number;
}

/** A Publisher whose close() always exists (it ends the client it created, if any). */
export interface MqttPublisher extends Publisher {
  close(): Promise<void>;
}

export const MQTT_PUBLISHER_DEFAULTS = Object.freeze({
  qos: 1 as const,
  protocolVersion: 5 as const,
  mode: 'binary' as const,
  source: 'outbox',
  timeoutMs: 5000,
  /** MQTT 5: how long the broker keeps the session after the connection drops. */
  sessionExpirySeconds: 3600,
});

const MAX_TOPIC_BYTES = 65_535;
const MAX_RECEIVE_MAXIMUM = 65_535;
/** MQTT 5 PUBACK / PUBREC reason codes ≥ 0x80 are failures. */
const FIRST_FAILURE_REASON = 0x80;
/** Reason codes for which a retry cannot succeed: the same message will meet the same answer. */
const PERMANENT_REASONS = new Set([
  0x90, // Topic Name invalid
  0x95, // Packet too large
  0x99, // Payload format invalid
]);

/**
 * UTF-8 that a broker refuses in any MQTT string (spec §1.5.4): NUL, control characters, lone
 * surrogates and non-characters. Mosquitto disconnects a client that sends them, and MQTT.js would
 * send the same packet again after every reconnect, so such a message must never reach the client.
 */
const UNSENDABLE =
  /[\u0000-\u001f\u007f-\u009f\ufdd0-\ufdef\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * MQTT topic names a publisher may use: non-empty, at most 65535 UTF-8 bytes, no wildcards
 * (`+`, `#`), not starting with `$` (broker-reserved, like `$SYS`), no characters MQTT strings cannot hold.
 * @example
 * mqttGrammar('orders/created') // undefined (valid)
 * mqttGrammar('orders/#') // 'contains a wildcard (+ or #), which cannot be published to'
 */
export function mqttGrammar(topic: string): string | undefined {
  if (topic.length === 0) return 'is empty';
  if (Buffer.byteLength(topic) > MAX_TOPIC_BYTES) return `is longer than ${MAX_TOPIC_BYTES} UTF-8 bytes`;
  if (/[+#]/.test(topic)) return 'contains a wildcard (+ or #), which cannot be published to';
  if (topic.startsWith('$')) return 'starts with $, which brokers reserve for themselves (like $SYS)';
  if (UNSENDABLE.test(topic))
    return 'contains NUL, control characters or invalid UTF-16, which MQTT cannot carry';
  return undefined;
}

interface Config {
  readonly qos: 1 | 2;
  readonly properties: boolean;
  readonly mode: CloudEventsMode;
  readonly source: string;
  readonly timeoutMs: number;
}

let instances = 0;

/**
 * A publisher for an MQTT broker. Give it your client, or a URL to let it connect (and close).
 * The destination of an event is its topic name.
 * @example
 * import mqtt from 'mqtt';
 * const client = await mqtt.connectAsync('mqtt://127.0.0.1:1883', { protocolVersion: 5, clean: false, clientId: 'orders-relay' });
 * const publisher = mqttPublisher({ client });
 * // or, owning its client: mqttPublisher({ url: 'mqtt://127.0.0.1:1883', source: 'orders' })
 */
export function mqttPublisher(options: MqttPublisherOptions): MqttPublisher {
  const config = resolveOptions(options);
  const { client } = options;
  const clientId = options.clientId ?? `outbox-${hostname()}-${process.pid}-${++instances}`;
  let session: Promise<MqttClient> | undefined;
  let closed = false;
  const inFlight = new InFlightLimit();

  const open = async (): Promise<MqttClient> => {
    if (client !== undefined) return client;
    const mqtt = await loadDriver();
    const connectOptions: IClientOptions = {
      protocolVersion: options.protocolVersion ?? MQTT_PUBLISHER_DEFAULTS.protocolVersion,
      clientId,
      clean: false,
      connectTimeout: config.timeoutMs,
      // MQTT.js reconnects (every second by default) and then sends unacknowledged publishes again.
      ...(config.properties
        ? { properties: { sessionExpiryInterval: MQTT_PUBLISHER_DEFAULTS.sessionExpirySeconds } }
        : {}),
    };
    try {
      // allowRetries false: the first connect fails fast instead of retrying in the background.
      const c = await mqtt.connectAsync(options.url!, connectOptions, false);
      // MQTT.js emits connection errors (keepalive, connack timeout) and then reconnects by itself;
      // publishes meanwhile fail by their timeout. Without a listener, an 'error' would crash the process.
      c.on('error', () => undefined);
      return c;
    } catch (cause) {
      throw new PublishError(
        `cannot connect to MQTT broker at ${describeUrl(options.url!)}: ${describeError(cause)}`,
        {
          cause,
          details: { url: describeUrl(options.url!) },
        },
      );
    }
  };

  const getClient = (): Promise<MqttClient> => {
    if (closed) return Promise.reject(new PublishError('the MQTT publisher is closed'));
    session ??= open().catch((error: unknown) => {
      session = undefined; // a failed connect is retried on the next publish, not cached
      throw error;
    });
    return session;
  };

  return {
    kind: 'mqtt',
    capabilities: { dedupeById: false },
    validateDestination: mqttGrammar,
    async publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]> {
      let c: MqttClient;
      try {
        c = await getClient();
      } catch (error) {
        return messages.map(() => ({ ok: false, error }));
      }
      // Distinct keys in one call (the relay's contract), so no order to keep between them.
      return Promise.all(messages.map((m) => publishOne(c, config, inFlight, m)));
    },
    async close(): Promise<void> {
      closed = true;
      const current = session;
      session = undefined;
      if (client !== undefined || current === undefined) return;
      const c = await current.catch(() => undefined);
      if (c === undefined) return;
      // What is still unacknowledged was already reported failed (timed out), so the relay retries
      // it: waiting for it could last forever with the broker away. End at once then; otherwise
      // close cleanly and let the broker drop the session (MQTT 5 session expiry 0).
      const idle = c.connected && Object.keys(c.outgoing).length === 0;
      await c.endAsync(!idle, idle && config.properties ? { properties: { sessionExpiryInterval: 0 } } : {});
    },
  };
}

async function publishOne(
  client: MqttClient,
  config: Config,
  inFlight: InFlightLimit,
  m: OutboundMessage,
): Promise<PublishResult> {
  const built = packetOf(config, m);
  if (built instanceof PermanentError) return { ok: false, error: built };
  const [body, publishOptions] = built;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  let holding = false;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new TimeoutError());
      }, config.timeoutMs);
      void inFlight.acquire(receiveMaximumOf(client)).then(() => {
        if (timedOut) return inFlight.release();
        holding = true;
        // The callback runs on PUBACK (QoS 1) or PUBCOMP (QoS 2); MQTT.js treats 0x10 "no matching
        // subscribers" as success, as it is: the broker took the message.
        client.publish(m.destination, body, publishOptions, (error) => (error ? reject(error) : resolve()));
      });
    });
    return { ok: true };
  } catch (error) {
    return { ok: false, error: publishErrorOf(error, m.destination, config.timeoutMs, client.connected) };
  } finally {
    clearTimeout(timer);
    // Also after a timeout, while MQTT.js still holds the message: a slot held until the broker
    // comes back would stall every later publish.
    if (holding) inFlight.release();
  }
}

/**
 * The most unacknowledged QoS 1 and 2 publishes the broker takes (MQTT 5 Receive Maximum, sent in
 * its CONNACK; 65535 when absent). MQTT.js keeps the CONNACK but neither honours the limit nor
 * types the field; Mosquitto (20 by default) refuses what goes beyond with 0x97 quota exceeded.
 */
function receiveMaximumOf(client: MqttClient): number {
  const connack = (client as unknown as { connackPacket?: IConnackPacket }).connackPacket;
  return connack?.properties?.receiveMaximum ?? MAX_RECEIVE_MAXIMUM;
}

/** Counts this publisher's publishes in flight; acquire() waits while `limit` are. */
class InFlightLimit {
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  async acquire(limit: number): Promise<void> {
    while (this.#active >= limit) await new Promise<void>((wake) => this.#waiting.push(wake));
    this.#active += 1;
  }

  release(): void {
    this.#active -= 1;
    this.#waiting.shift()?.();
  }
}

/** The payload and publish options of a message, or why MQTT cannot carry it. */
function packetOf(config: Config, m: OutboundMessage): [string, IClientPublishOptions] | PermanentError {
  const bad = mqttGrammar(m.destination);
  if (bad) return new PermanentError(`'${m.destination}' ${bad}`, { details: { topic: m.destination } });
  const headers = config.properties ? eventHeaders(m) : {};
  let userProperties: Record<string, string> = headers;
  let contentType = STRUCTURED_CONTENT_TYPE;
  let body: string;
  if (config.mode === 'structured') {
    body = structuredCloudEvent(m, config.source);
  } else {
    const { datacontenttype, ...attributes } = cloudEventContext(m, config.source);
    for (const name of Object.keys(headers))
      if (name in attributes)
        return new PermanentError(
          `event header '${name}' clashes with the CloudEvents attribute of that name (MQTT user properties carry both)`,
          { details: { topic: m.destination, header: name } },
        );
    userProperties = { ...attributes, ...headers };
    contentType = datacontenttype ?? PAYLOAD_CONTENT_TYPE;
    body = m.payload;
  }
  for (const [name, value] of Object.entries(userProperties))
    if (UNSENDABLE.test(name) || UNSENDABLE.test(value))
      return new PermanentError(
        `event header '${name}' has characters an MQTT user property cannot carry (tab or other control characters)`,
        { details: { topic: m.destination, header: name } },
      );
  return [
    body,
    config.properties
      ? { qos: config.qos, properties: { contentType, userProperties } }
      : { qos: config.qos },
  ];
}

class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/** Maps an MQTT.js failure to retryable / permanent, with a message an operator can act on. */
function publishErrorOf(error: unknown, topic: string, timeoutMs: number, connected: boolean): PublishError {
  const details = { topic };
  if (error instanceof TimeoutError)
    return new PublishError(
      `no PUBACK for topic '${topic}' within ${timeoutMs} ms${connected ? '' : ' (not connected to the broker)'}: ` +
        'not known to be published (MQTT.js sends it again after a reconnect, so it may arrive twice)',
      { cause: error, details: { ...details, timeoutMs } },
    );
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'number' && code >= FIRST_FAILURE_REASON) {
    const text = `the MQTT broker refused the publish to '${topic}': ${describeError(error)} (reason code 0x${code.toString(16)})`;
    const options = { cause: error, details: { ...details, reasonCode: code } };
    return PERMANENT_REASONS.has(code) ? new PermanentError(text, options) : new PublishError(text, options);
  }
  // Client ended or disconnecting, connection closed, …: all may heal by themselves.
  return new PublishError(`MQTT publish to '${topic}' failed: ${describeError(error)}`, {
    cause: error,
    details,
  });
}

function resolveOptions(options: MqttPublisherOptions): Config {
  const invalid = (key: string, message: string, value?: unknown) =>
    new OutboxError('INVALID_CONFIG', `mqttPublisher \`${key}\` ${message}`, {
      details: value === undefined ? { key } : { key, value },
    });
  const { client, url } = options;
  if ((client === undefined) === (url === undefined))
    throw new OutboxError('INVALID_CONFIG', 'mqttPublisher needs exactly one of `client` or `url`');
  if (url !== undefined && !/^mqtts?:\/\//i.test(url))
    throw new OutboxError('UNSUPPORTED_URL', 'mqttPublisher `url` must start with mqtt:// or mqtts://', {
      details: { key: 'url' },
    });
  if (client !== undefined)
    for (const key of ['protocolVersion', 'clientId'] as const)
      if (options[key] !== undefined)
        throw invalid(key, 'belongs to the client you gave: set it on that client');
  const {
    qos = MQTT_PUBLISHER_DEFAULTS.qos,
    source = MQTT_PUBLISHER_DEFAULTS.source,
    timeoutMs = MQTT_PUBLISHER_DEFAULTS.timeoutMs,
  } = options;
  const protocolVersion =
    client?.options.protocolVersion ?? options.protocolVersion ?? MQTT_PUBLISHER_DEFAULTS.protocolVersion;
  if ((qos as number) === 0)
    throw invalid(
      'qos',
      'must be 1 or 2: QoS 0 is fire-and-forget and cannot back at-least-once delivery',
      qos,
    );
  if (qos !== 1 && qos !== 2) throw invalid('qos', 'must be 1 or 2', qos);
  if (client === undefined && protocolVersion !== 4 && protocolVersion !== 5)
    throw invalid('protocolVersion', 'must be 5 (MQTT 5) or 4 (MQTT 3.1.1)', protocolVersion);
  if (options.clientId !== undefined && (typeof options.clientId !== 'string' || options.clientId === ''))
    throw invalid('clientId', 'must be a non-empty string');
  const properties = protocolVersion === 5;
  // MQTT 3.1.1 has no properties to carry attributes in: the binding allows structured mode only.
  const mode = options.mode ?? (properties ? MQTT_PUBLISHER_DEFAULTS.mode : 'structured');
  if (mode !== 'binary' && mode !== 'structured')
    throw invalid('mode', "must be 'binary' or 'structured'", mode);
  if (mode === 'binary' && !properties)
    throw invalid(
      'mode',
      "cannot be 'binary' with MQTT 3.1.1 (protocolVersion 4): it has no properties to carry the attributes; use 'structured'",
    );
  if (typeof source !== 'string' || source === '') throw invalid('source', 'must be a non-empty string');
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw invalid('timeoutMs', 'must be a positive integer', timeoutMs);
  return { qos, properties, mode, source, timeoutMs };
}

/** Scheme, host and port only: userinfo may hold a password, and messages reach logs. */
function describeUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

async function loadDriver(): Promise<typeof import('mqtt')> {
  try {
    return await import('mqtt');
  } catch (cause) {
    throw new OutboxError('DRIVER_MISSING', 'mqttPublisher needs the mqtt package: npm install mqtt', {
      cause,
      details: { package: 'mqtt' },
    });
  }
}
