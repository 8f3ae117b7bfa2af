/**
 * The envelope: CloudEvents 1.0 attributes in binary content mode, i.e. as message headers
 * next to the untouched JSON payload. Every publisher sends the same attributes, so a consumer
 * reads `ce-id`, `ce-type`, … the same way whatever the broker. Pure: no I/O, no driver imports.
 *
 * It also owns the list of header names the publishers write themselves; `add()` refuses them
 * in an event's own headers, so an event can never forge its id, type or signature.
 */

import type { OutboundMessage } from './ports.js';

/** The CloudEvents spec version we emit. */
export const CLOUDEVENTS_SPEC_VERSION = '1.0';

/** The payload is stored as JSON text, so its content type is always JSON. */
export const PAYLOAD_CONTENT_TYPE = 'application/json';

/** Header names publishers set themselves (lower case); an event's own headers may not use them. */
export const RESERVED_HEADER_NAMES: readonly string[] = Object.freeze([
  'content-type',
  'nats-msg-id',
  'idempotency-key',
]);

/**
 * Header name prefixes publishers own (lower case): `ce-` (CloudEvents, HTTP and NATS bindings),
 * `ce_` (CloudEvents Kafka binding), `webhook-` (Standard Webhooks signature) and `nats-`
 * (JetStream's control headers: a user `Nats-Rollup` or `Nats-Expected-*` header would purge a
 * stream or make every publish of the event fail).
 */
export const RESERVED_HEADER_PREFIXES: readonly string[] = Object.freeze(['ce-', 'ce_', 'webhook-', 'nats-']);

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
 * The CloudEvents 1.0 binary-mode attributes of a message as a header record, followed by the
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
    'content-type': PAYLOAD_CONTENT_TYPE,
  };
  for (const [name, value] of Object.entries(message.headers)) {
    // add() already refuses reserved names; a row written around add() must still not forge ce-id.
    if (!isReservedHeader(name)) attributes[name] = value;
  }
  return attributes;
}
