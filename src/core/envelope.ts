/**
 * The envelope: CloudEvents 1.0 attributes in binary content mode, i.e. as message headers
 * next to the untouched JSON payload. Every publisher sends the same attributes, so a consumer
 * reads `ce-id`, `ce-type`, … the same way whatever the broker. Pure: no I/O, no driver imports.
 *
 * It also owns the list of header names the publishers write themselves; `add()` refuses them
 * in an event's own headers, so an event can never forge its id, type or signature.
 *
 * W3C Trace Context given at `add()` (`traceparent`, `tracestate` headers) travels as the
 * CloudEvents Distributed Tracing extension: attributes mapped by each binding like the others
 * (`ce-traceparent`, `cloudEvents:traceparent`, …), never as a plain transport header, which
 * belongs to the transport's own hop (a tracing publisher's span).
 */

import { OutboxError } from './errors.js';
import type { OutboundMessage } from './ports.js';

/** The CloudEvents spec version we emit. */
export const CLOUDEVENTS_SPEC_VERSION = '1.0';

/** The payload is stored as JSON text, so its content type is always JSON. */
export const PAYLOAD_CONTENT_TYPE = 'application/json';

/** The content type of a CloudEvents structured-mode message (one JSON document). */
export const STRUCTURED_CONTENT_TYPE = 'application/cloudevents+json';

/**
 * How a publisher sends the CloudEvents attributes: `binary` (the default) puts them in the
 * message's headers (or properties) next to the untouched payload; `structured` sends one JSON
 * document holding the attributes and the payload as `data`.
 */
export type CloudEventsMode = 'binary' | 'structured';

/** Throws INVALID_CONFIG unless `mode` is a CloudEvents content mode (`who` names the publisher). */
export function assertCloudEventsMode(mode: unknown, who: string): asserts mode is CloudEventsMode {
  if (mode !== 'binary' && mode !== 'structured')
    throw new OutboxError('INVALID_CONFIG', `${who} \`mode\` must be 'binary' or 'structured'`, {
      details: { key: 'mode', value: mode },
    });
}

/**
 * Header names publishers set themselves (lower case); an event's own headers may not use them.
 * `data` is the payload's field in a Redis Streams entry.
 */
export const RESERVED_HEADER_NAMES: readonly string[] = Object.freeze([
  'content-type',
  'nats-msg-id',
  'idempotency-key',
  'data',
]);

/**
 * Header name prefixes publishers own (lower case): `ce-` (CloudEvents, HTTP and NATS bindings),
 * `ce_` (CloudEvents Kafka binding), `cloudevents:` and `cloudevents_` (CloudEvents AMQP binding),
 * `webhook-` (Standard Webhooks signature) and `nats-` (JetStream's control headers: a user `Nats-Rollup` or `Nats-Expected-*` header would purge a
 * stream or make every publish of the event fail).
 */
export const RESERVED_HEADER_PREFIXES: readonly string[] = Object.freeze([
  'ce-',
  'ce_',
  'cloudevents:',
  'cloudevents_',
  'webhook-',
  'nats-',
]);

/** The W3C Trace Context header names (lower case) that become CloudEvents extension attributes. */
export const TRACE_CONTEXT_HEADERS: readonly string[] = Object.freeze(['traceparent', 'tracestate']);

/**
 * The event's W3C Trace Context as CloudEvents Distributed Tracing attributes: `traceparent`,
 * and `tracestate` when it is not blank. Header names match in any case. None without a
 * `traceparent` (a `tracestate` alone means nothing; `add()` refuses it).
 * @example
 * traceContext(message) // { traceparent: '00-4bf9…-00f0…-01', tracestate: 'congo=t61rcWkgMzE' }
 */
export function traceContext(message: OutboundMessage): Record<string, string> {
  let traceparent: string | undefined;
  let tracestate: string | undefined;
  for (const [name, value] of Object.entries(message.headers)) {
    const lower = name.toLowerCase();
    if (lower === 'traceparent') traceparent = value;
    else if (lower === 'tracestate') tracestate = value;
  }
  if (traceparent === undefined) return {};
  return tracestate === undefined || tracestate.trim() === '' ? { traceparent } : { traceparent, tracestate };
}

const isTraceContextHeader = (name: string) => TRACE_CONTEXT_HEADERS.includes(name.toLowerCase());

/**
 * True when `name` is a header the publishers write themselves (case-insensitive).
 * @example
 * isReservedHeader('CE-Type') // true
 * isReservedHeader('traceparent') // false
 */
export function isReservedHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return RESERVED_HEADER_NAMES.includes(lower) || RESERVED_HEADER_PREFIXES.some((p) => lower.startsWith(p));
}

/**
 * The CloudEvents 1.0 binary-mode attributes of a message as a header record (with
 * `ce-traceparent` and `ce-tracestate` when the event carries a trace context), followed by the
 * event's own headers (which cannot clash: `add()` refuses reserved names).
 * `ce-subject` is the aggregate id when there is one (what the event is about), else the key;
 * `ce-partitionkey` is the key (CloudEvents partitioning extension), so consumers can keep
 * per-key order downstream too.
 * @example
 * const headers = cloudEventAttributes(message, 'orders-service');
 * headers['ce-id'] === message.id // true
 */
export function cloudEventAttributes(message: OutboundMessage, source: string): Record<string, string> {
  const attributes: Record<string, string> = {
    'ce-specversion': CLOUDEVENTS_SPEC_VERSION,
    'ce-id': message.id,
    'ce-type': message.type,
    'ce-source': source,
    'ce-subject': message.aggregateId ?? message.key,
    'ce-time': message.createdAt.toISOString(),
    'ce-partitionkey': message.key,
  };
  for (const [name, value] of Object.entries(traceContext(message))) attributes[`ce-${name}`] = value;
  attributes['content-type'] = PAYLOAD_CONTENT_TYPE;
  return Object.assign(attributes, eventHeaders(message));
}

/**
 * The CloudEvents 1.0 attributes of a message by their spec names (`specversion`, `id`, `type`,
 * `source`, `subject`, `time`, `partitionkey`, then `traceparent` and `tracestate` when the event
 * carries a trace context, and `datacontenttype`): what a binding maps to its own
 * header names (`ce-id` over HTTP and NATS, `ce_id` over Kafka, `cloudEvents:id` over AMQP, `id`
 * as an MQTT 5 user property).
 */
export function cloudEventContext(message: OutboundMessage, source: string): Record<string, string> {
  return {
    specversion: CLOUDEVENTS_SPEC_VERSION,
    id: message.id,
    type: message.type,
    source,
    subject: message.aggregateId ?? message.key,
    time: message.createdAt.toISOString(),
    partitionkey: message.key,
    ...traceContext(message),
    datacontenttype: PAYLOAD_CONTENT_TYPE,
  };
}

/**
 * A structured-mode CloudEvent: one JSON document with the attributes (trace context included)
 * and the payload as `data` (embedded as it was stored, not re-serialised). The event's own
 * headers are not in it: a publisher sends them as transport headers where the broker has them.
 * @example
 * JSON.parse(structuredCloudEvent(message, 'orders')).data // the payload
 */
export function structuredCloudEvent(message: OutboundMessage, source: string): string {
  const context = JSON.stringify(cloudEventContext(message, source));
  return `${context.slice(0, -1)},"data":${message.payload}}`;
}

/**
 * The event's own headers: never a reserved name (even for a row written around add()), nor the
 * trace context, which travels as attributes instead.
 */
export function eventHeaders(message: OutboundMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers))
    if (!isReservedHeader(name) && !isTraceContextHeader(name)) headers[name] = value;
  return headers;
}
