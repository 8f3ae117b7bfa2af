/**
 * The event model: what `add()` takes, and its validation into a PreparedEvent. Everything a
 * database or broker could refuse later is refused here, before any SQL is sent, with one
 * OutboxError code per case (docs/errors.md).
 */
import { isReservedHeader, TRACE_CONTEXT_HEADERS } from './envelope.js';
import { OutboxError } from './errors.js';
import { isUuid, keyHash, uuidv7 } from './ids.js';
import { checkString, serializeJson } from './payload.js';
import type { PreparedEvent } from './ports.js';
import type { Router } from './routes.js';

/**
 * A domain event to add to the outbox.
 * @example
 * { type: 'order.created', aggregateType: 'order', aggregateId: order.id, payload: { total: 42 } }
 */
export interface OutboxEvent<P = unknown> {
  /** What happened, e.g. 'order.created'. Required. */
  readonly type: string;
  /** The kind of entity the event is about, e.g. 'order'. */
  readonly aggregateType?: string;
  /** The entity's id. */
  readonly aggregateId?: string | number;
  /** Ordering key: events with the same key are published in order. Default `aggregateType:aggregateId`. */
  readonly key?: string;
  /** Any JSON value (plain objects, arrays, strings, finite numbers, booleans, null, Dates). */
  readonly payload?: P;
  /**
   * String headers carried with the message (no CR/LF; `ce-*` and other envelope names are reserved).
   * A W3C `traceparent` (and `tracestate`) is checked here and sent as the CloudEvents Distributed
   * Tracing attributes.
   */
  readonly headers?: Readonly<Record<string, string>>;
  /** Topic / subject / path. Default: rendered from the matching route's template. */
  readonly destination?: string;
  /** Publish no earlier than this (a delayed event also holds back later events of its key). */
  readonly availableAt?: Date;
  /** UUID of the event (default: a new UUIDv7). Consumers use it to drop duplicates. */
  readonly id?: string;
}

export interface PrepareOptions {
  readonly router: Router;
  /** Upper bound on the UTF-8 size of payload + headers JSON. */
  readonly maxPayloadBytes: number;
  readonly strictPayload: boolean;
}

export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
const MAX_KEY_LENGTH = 1024;
const MAX_TYPE_LENGTH = 255;
const KNOWN_FIELDS = new Set([
  'type',
  'aggregateType',
  'aggregateId',
  'key',
  'payload',
  'headers',
  'destination',
  'availableAt',
  'id',
]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** W3C Trace Context §3.2: version-traceid-parentid-flags; a later version may append `-…`. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[\x21-\x7e]*)?$/;
/** W3C Trace Context §3.3.1: a simple key, or tenant@system. */
const TRACESTATE_KEY =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
/** Printable ASCII but ',' and '=', up to 256 characters, not ending in a space. */
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
const MAX_TRACESTATE_LENGTH = 512;
const MAX_TRACESTATE_MEMBERS = 32;

function invalid(code: ConstructorParameters<typeof OutboxError>[0], path: string, message: string): never {
  throw new OutboxError(code, `${path}${message}`, { details: { path } });
}

function optionalString(
  value: unknown,
  path: string,
  field: string,
  maxLength = MAX_KEY_LENGTH,
): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value === '')
    invalid('INVALID_EVENT', path, `.${field} must be a non-empty string`);
  if (value.length > maxLength)
    invalid('INVALID_EVENT', path, `.${field} is longer than ${maxLength} characters`);
  checkString(value, `${path}.${field}`);
  return value;
}

function prepareHeaders(headers: unknown, path: string): Record<string, string> {
  if (headers === undefined || headers === null) return {};
  if (typeof headers !== 'object' || Array.isArray(headers))
    invalid('INVALID_HEADER', path, '.headers must be an object of string values');
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const p = `${path}.headers["${name}"]`;
    if (!HEADER_NAME.test(name))
      invalid('INVALID_HEADER', p, ' is not a valid header name (token characters only)');
    if (isReservedHeader(name)) invalid('INVALID_HEADER', p, ' is reserved for the message envelope');
    if (typeof value !== 'string') invalid('INVALID_HEADER', p, ' must be a string');
    checkString(value, p);
    if (/[\r\n]/.test(value)) invalid('INVALID_HEADER', p, ' contains CR or LF');
    // Brokers carry header values as HTTP/1-style fields: tab, printable ASCII and Latin-1 only.
    if (/[^\t\u0020-\u007e\u00a0-\u00ff]/.test(value))
      invalid(
        'INVALID_HEADER',
        p,
        ' has characters a message header cannot carry (use the payload for text beyond Latin-1)',
      );
    out[name] = value;
  }
  checkTraceContext(out, path);
  return out;
}

/** Why `value` is not a W3C traceparent, or undefined when it is one. */
function traceparentProblem(value: string): string | undefined {
  const match = TRACEPARENT.exec(value);
  if (!match) return 'is not a W3C traceparent (version-traceid-parentid-flags, lower-case hex)';
  const [, version, traceId, parentId, more] = match;
  if (version === 'ff') return 'has version ff, which W3C Trace Context forbids';
  if (version === '00' && more !== undefined) return 'has fields after the flags, which version 00 does not';
  if (/^0+$/.test(traceId!)) return 'has an all-zero trace id';
  if (/^0+$/.test(parentId!)) return 'has an all-zero parent id';
  return undefined;
}

/** Why `value` is not a W3C tracestate list, or undefined when it is one. */
function tracestateProblem(value: string): string | undefined {
  if (value.length > MAX_TRACESTATE_LENGTH) return `is longer than ${MAX_TRACESTATE_LENGTH} characters`;
  const keys = new Set<string>();
  for (const member of value.split(',')) {
    const trimmed = member.replace(/^[ \t]+|[ \t]+$/g, '');
    if (trimmed === '') continue; // empty list members are allowed
    const [key = '', memberValue, extra] = trimmed.split('=');
    if (
      extra !== undefined ||
      memberValue === undefined ||
      !TRACESTATE_KEY.test(key) ||
      !TRACESTATE_VALUE.test(memberValue)
    )
      return 'is not a W3C tracestate (comma-separated key=value list members)';
    if (keys.has(key)) return `names the key '${key}' twice`;
    keys.add(key);
  }
  if (keys.size > MAX_TRACESTATE_MEMBERS) return `has more than ${MAX_TRACESTATE_MEMBERS} list members`;
  return undefined;
}

/**
 * A `traceparent` or `tracestate` header (any case) must follow W3C Trace Context: it becomes a
 * CloudEvents attribute that consumers parse, so a malformed one is refused now, not there.
 */
function checkTraceContext(headers: Record<string, string>, path: string): void {
  const found = new Map<string, string>();
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase();
    if (!TRACE_CONTEXT_HEADERS.includes(lower)) continue;
    const p = `${path}.headers["${name}"]`;
    if (found.has(lower)) invalid('INVALID_HEADER', p, ` repeats the ${lower} header in another case`);
    found.set(lower, name);
    const value = headers[name]!;
    const problem = lower === 'traceparent' ? traceparentProblem(value) : tracestateProblem(value);
    if (problem) invalid('INVALID_HEADER', p, ` ${problem}`);
  }
  const tracestate = found.get('tracestate');
  if (tracestate !== undefined && !found.has('traceparent'))
    invalid('INVALID_HEADER', `${path}.headers["${tracestate}"]`, ' comes without a traceparent header');
}

function prepareOne(input: unknown, path: string, options: PrepareOptions): PreparedEvent {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    invalid('INVALID_EVENT', path, ' must be an object');
  const e = input as Record<string, unknown>;
  for (const field of Object.keys(e)) {
    if (!KNOWN_FIELDS.has(field)) invalid('INVALID_EVENT', path, ` has an unknown field "${field}"`);
  }
  if (typeof e.type !== 'string' || e.type.trim() === '')
    invalid('MISSING_TYPE', path, '.type is missing or empty');
  if (e.type.length > MAX_TYPE_LENGTH)
    invalid('INVALID_EVENT', path, `.type is longer than ${MAX_TYPE_LENGTH} characters`);
  checkString(e.type, `${path}.type`);
  const type = e.type;

  const aggregateType = optionalString(e.aggregateType, path, 'aggregateType');
  const rawId = e.aggregateId;
  if (typeof rawId === 'number' && !Number.isSafeInteger(rawId))
    invalid('INVALID_EVENT', path, '.aggregateId must be a string or a safe integer');
  const aggregateId = optionalString(typeof rawId === 'number' ? String(rawId) : rawId, path, 'aggregateId');

  let key: string;
  if (e.key !== undefined) {
    if (typeof e.key !== 'string' || e.key === '')
      invalid('INVALID_KEY', path, '.key must be a non-empty string');
    if (e.key.length > MAX_KEY_LENGTH)
      invalid('INVALID_KEY', path, `.key is longer than ${MAX_KEY_LENGTH} characters`);
    checkString(e.key, `${path}.key`);
    key = e.key;
  } else {
    if (aggregateType === null || aggregateId === null) {
      invalid(
        'MISSING_AGGREGATE',
        path,
        ' needs aggregateType and aggregateId, or an explicit key and destination',
      );
    }
    key = `${aggregateType}:${aggregateId}`;
  }

  let id: string;
  if (e.id !== undefined) {
    if (!isUuid(e.id)) invalid('INVALID_ID', path, '.id must be a lower-case UUID string');
    id = e.id;
  } else {
    id = uuidv7();
  }

  let availableAt: Date | null = null;
  if (e.availableAt !== undefined && e.availableAt !== null) {
    if (!(e.availableAt instanceof Date) || Number.isNaN(e.availableAt.getTime()))
      invalid('INVALID_AVAILABLE_AT', path, '.availableAt must be a valid Date');
    const year = e.availableAt.getUTCFullYear();
    // PostgreSQL would refuse it mid-transaction (22008): refuse it here instead.
    if (year < 1 || year > 9999)
      invalid('INVALID_AVAILABLE_AT', path, '.availableAt must fall in the years 1 to 9999');
    availableAt = e.availableAt;
  }

  let destination: string | undefined;
  if (e.destination !== undefined) {
    if (typeof e.destination !== 'string')
      invalid('INVALID_DESTINATION', path, '.destination must be a string');
    checkString(e.destination, `${path}.destination`);
    destination = e.destination;
  }
  destination = options.router.destinationFor({ type, key, aggregateType, aggregateId, destination }, path);

  const headers = JSON.stringify(prepareHeaders(e.headers, path));
  const payload = serializeJson(e.payload, { strict: options.strictPayload, path: `${path}.payload` });
  const size = Buffer.byteLength(payload) + Buffer.byteLength(headers);
  if (size > options.maxPayloadBytes) {
    throw new OutboxError(
      'PAYLOAD_TOO_LARGE',
      `${path}: payload and headers are ${size} bytes, over maxPayloadBytes (${options.maxPayloadBytes})`,
      { details: { path, bytes: size, limit: options.maxPayloadBytes } },
    );
  }
  return {
    id,
    key,
    keyHash: keyHash(key),
    type,
    aggregateType,
    aggregateId,
    destination,
    payload,
    headers,
    availableAt,
  };
}

/** Validates and serialises events; throws the first problem found, before anything is written. */
export function prepareEvents(input: unknown, options: PrepareOptions): PreparedEvent[] {
  if (!Array.isArray(input)) return [prepareOne(input, 'event', options)];
  const events = input.map((e, i) => prepareOne(e, `events[${i}]`, options));
  if (events.length > 1) {
    const seen = new Set<string>();
    for (let i = 0; i < events.length; i++) {
      const id = events[i]!.id;
      if (seen.has(id)) invalid('INVALID_ID', `events[${i}]`, `.id ${id} appears twice in the batch`);
      seen.add(id);
    }
  }
  return events;
}
