/**
 * Strict JSON serialisation of payloads and headers, checked before any SQL is sent.
 * PostgreSQL aborts the caller's whole transaction on a NUL character or a lone surrogate, and
 * JSON.stringify silently turns NaN into null, Maps into {} and drops functions — so we walk the
 * value once and refuse all of these with a typed error naming the path.
 */
import { OutboxError } from './errors.js';

const MAX_DEPTH = 512;

export interface SerializeOptions {
  /** Refuse Map, Set and class instances (default). When false, they serialise as JSON.stringify does. */
  readonly strict: boolean;
  /** Prefix of error paths, e.g. 'event[2].payload'. */
  readonly path: string;
}

/** Throws INVALID_CHARACTERS when `value` has a NUL character or a lone UTF-16 surrogate. */
export function checkString(value: string, path: string): void {
  if (value.includes('\u0000')) {
    throw new OutboxError(
      'INVALID_CHARACTERS',
      `${path} contains a NUL character (\\u0000), which PostgreSQL cannot store`,
      {
        details: { path },
      },
    );
  }
  // String.prototype.isWellFormed is in Node 20 (ES2024), beyond the ES2023 lib we type against.
  if (!(value as string & { isWellFormed(): boolean }).isWellFormed()) {
    throw new OutboxError(
      'INVALID_CHARACTERS',
      `${path} contains a lone UTF-16 surrogate (not valid Unicode)`,
      {
        details: { path },
      },
    );
  }
}

function fail(
  code: 'PAYLOAD_NOT_SERIALIZABLE' | 'PAYLOAD_NOT_FINITE' | 'PAYLOAD_NOT_PLAIN',
  path: string,
  what: string,
): never {
  throw new OutboxError(code, `${path} ${what}`, { details: { path } });
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function walk(value: unknown, path: string, strict: boolean, ancestors: object[]): void {
  switch (typeof value) {
    case 'string':
      checkString(value, path);
      return;
    case 'number':
      if (!Number.isFinite(value))
        fail('PAYLOAD_NOT_FINITE', path, `is ${value}, which JSON cannot represent`);
      return;
    case 'boolean':
      return;
    case 'bigint':
      fail('PAYLOAD_NOT_SERIALIZABLE', path, 'is a BigInt; convert it to a string or number first');
      break;
    case 'undefined':
      fail('PAYLOAD_NOT_SERIALIZABLE', path, 'is undefined, which JSON cannot represent here; use null');
      break;
    case 'function':
    case 'symbol':
      fail('PAYLOAD_NOT_SERIALIZABLE', path, `is a ${typeof value}, which JSON cannot represent`);
      break;
  }
  if (value === null) return;
  const obj = value as object;
  if (ancestors.includes(obj)) fail('PAYLOAD_NOT_SERIALIZABLE', path, 'is a circular reference');
  if (ancestors.length >= MAX_DEPTH)
    fail('PAYLOAD_NOT_SERIALIZABLE', path, `is nested deeper than ${MAX_DEPTH} levels`);
  if (obj instanceof Date) {
    if (Number.isNaN(obj.getTime())) fail('PAYLOAD_NOT_FINITE', path, 'is an invalid Date');
    return;
  }
  // Strict: a class instance is refused even when it has toJSON(): what it becomes is up to
  // its class (Buffer turns into {type, data}), so the caller converts it explicitly.
  if (strict && !Array.isArray(obj) && !isPlainObject(obj)) {
    const name = obj.constructor?.name ?? 'object';
    fail(
      'PAYLOAD_NOT_PLAIN',
      path,
      `is a ${name} instance; only plain objects, arrays and Dates are accepted (strictPayload)`,
    );
  }
  const toJSON = (obj as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    // JSON.stringify sends what toJSON() returns: that is what must be checked.
    let json: unknown;
    try {
      json = toJSON.call(obj);
    } catch (cause) {
      throw new OutboxError('PAYLOAD_NOT_SERIALIZABLE', `${path}.toJSON() threw`, {
        cause,
        details: { path },
      });
    }
    walk(json, path, strict, [...ancestors, obj]);
    return;
  }
  ancestors.push(obj);
  if (Array.isArray(obj)) {
    for (let i = 0; i < obj.length; i++) walk(obj[i], `${path}[${i}]`, strict, ancestors);
  } else {
    for (const k of Object.keys(obj)) {
      const child = (obj as Record<string, unknown>)[k];
      const childPath = `${path}.${k}`;
      checkString(k, `${childPath} (property name)`);
      // An undefined property is simply absent from JSON, and reads back as undefined: lossless.
      if (child === undefined) continue;
      walk(child, childPath, strict, ancestors);
    }
  }
  ancestors.pop();
}

/**
 * The fast first look, on the hot path of every add(): true when `value` holds only what
 * JSON.stringify keeps as is (strings are left to the check of the JSON text). Anything else,
 * even what may turn out fine (a toJSON() other than Date's), returns false, and the walk
 * with paths decides.
 */
function plain(value: unknown, strict: boolean, ancestors: object[]): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (value instanceof Date) return !Number.isNaN(value.getTime());
  if (ancestors.length >= MAX_DEPTH || ancestors.includes(value)) return false;
  if (Array.isArray(value)) {
    ancestors.push(value);
    for (let i = 0; i < value.length; i++) if (!plain(value[i], strict, ancestors)) return false;
    ancestors.pop();
    return true;
  }
  // A class instance (refused when strict, serialised as JSON.stringify does otherwise) or an
  // object with its own toJSON(): the walk decides.
  if (!isPlainObject(value) || typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  ancestors.push(value);
  for (const k in value) {
    if (!Object.hasOwn(value, k)) continue;
    const child = (value as Record<string, unknown>)[k];
    if (child !== undefined && !plain(child, strict, ancestors)) return false;
  }
  ancestors.pop();
  return true;
}

/**
 * A NUL character or a lone surrogate as JSON.stringify writes them: `\u0000` and `\udXXX`
 * escapes (a well-formed pair is written as is), after an even number of backslashes (an odd one
 * would make the first backslash part of an escaped backslash in the text).
 */
const BAD_CHARACTER_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u(?:0000|d[89a-f])/;

/**
 * The JSON text of `value`, or a typed OutboxError saying exactly what cannot be stored.
 * `undefined` as the whole payload means "no payload" and serialises as `null`.
 */
export function serializeJson(value: unknown, options: SerializeOptions): string {
  if (value === undefined) return 'null';
  // The walk builds a path for every value: only when the fast look has doubts, or to name
  // where a character the JSON text shows came from.
  if (!plain(value, options.strict, [])) walk(value, options.path, options.strict, []);
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch (cause) {
    // A toJSON() that throws, or a getter with side effects: report it, typed.
    throw new OutboxError('PAYLOAD_NOT_SERIALIZABLE', `${options.path} could not be serialised`, {
      cause,
      details: { path: options.path },
    });
  }
  if (BAD_CHARACTER_ESCAPE.test(text)) walk(value, options.path, options.strict, []);
  return text;
}
