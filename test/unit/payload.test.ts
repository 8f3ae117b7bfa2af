import { describe, expect, it } from 'vitest';
import { checkString, serializeJson } from '../../src/core/payload.js';
import { expectOutboxError } from '../helpers/expect-error.js';

const strict = { strict: true, path: 'event.payload' };
const lenient = { strict: false, path: 'event.payload' };
const ser = (value: unknown, options = strict) => serializeJson(value, options);

class Money {
  constructor(
    readonly amount: number,
    readonly currency: string,
  ) {}
}

describe('serializeJson: what is accepted', () => {
  it('serialises plain JSON values exactly as JSON.stringify does', () => {
    const value = { s: 'é🙂\t"', n: -1.5e-7, t: true, f: false, z: null, a: [1, [2, { b: [] }]], o: {} };
    expect(ser(value)).toBe(JSON.stringify(value));
    expect(ser('text')).toBe('"text"');
    expect(ser(0)).toBe('0');
    expect(ser(null)).toBe('null');
  });

  it('treats a missing payload as null', () => {
    expect(ser(undefined)).toBe('null');
  });

  it('accepts Dates, as ISO-8601 strings', () => {
    const at = new Date('2025-01-02T03:04:05.678Z');
    expect(ser({ at, list: [at] })).toBe(
      '{"at":"2025-01-02T03:04:05.678Z","list":["2025-01-02T03:04:05.678Z"]}',
    );
  });

  it('omits object properties that are undefined (lossless: they read back as undefined)', () => {
    expect(ser({ a: 1, b: undefined, c: { d: undefined } })).toBe('{"a":1,"c":{}}');
  });

  it('accepts objects without a prototype', () => {
    const bare = Object.assign(Object.create(null) as object, { a: 1 });
    expect(ser({ bare })).toBe('{"bare":{"a":1}}');
  });

  it('accepts a shared (non-circular) object referenced twice', () => {
    const shared = { x: 1 };
    expect(ser({ a: shared, b: [shared, shared] })).toBe('{"a":{"x":1},"b":[{"x":1},{"x":1}]}');
  });

  it('with strict: false, accepts Map, Set and class instances the way JSON.stringify does', () => {
    const value = { money: new Money(10, 'EUR'), map: new Map([['a', 1]]), set: new Set([1]) };
    expect(ser(value, lenient)).toBe(JSON.stringify(value));
    expect(ser(value, lenient)).toBe('{"money":{"amount":10,"currency":"EUR"},"map":{},"set":{}}');
  });
});

describe('serializeJson: each refusal, with its path in the message', () => {
  it('BigInt → PAYLOAD_NOT_SERIALIZABLE', () => {
    const e = expectOutboxError(
      () => ser({ order: { total: 10n } }),
      'PAYLOAD_NOT_SERIALIZABLE',
      'event.payload.order.total',
      'BigInt',
    );
    expect(e.details).toEqual({ path: 'event.payload.order.total' });
  });

  it('a circular reference → PAYLOAD_NOT_SERIALIZABLE', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a.self = { back: a };
    expectOutboxError(() => ser(a), 'PAYLOAD_NOT_SERIALIZABLE', 'event.payload.self.back', 'circular');
    const list: unknown[] = [];
    list.push(list);
    expectOutboxError(() => ser(list), 'PAYLOAD_NOT_SERIALIZABLE', 'event.payload[0]', 'circular');
  });

  it('undefined inside an array (and holes) → PAYLOAD_NOT_SERIALIZABLE', () => {
    expectOutboxError(
      () => ser({ items: [1, undefined] }),
      'PAYLOAD_NOT_SERIALIZABLE',
      'event.payload.items[1]',
      'undefined',
    );
    // biome-ignore lint/suspicious/noSparseArray: a hole is what this checks
    expectOutboxError(() => ser([1, , 3]), 'PAYLOAD_NOT_SERIALIZABLE', 'event.payload[1]');
  });

  it('functions and symbols → PAYLOAD_NOT_SERIALIZABLE', () => {
    expectOutboxError(() => ser({ f: () => 1 }), 'PAYLOAD_NOT_SERIALIZABLE', 'event.payload.f', 'function');
    expectOutboxError(() => ser({ s: Symbol('x') }), 'PAYLOAD_NOT_SERIALIZABLE', 'event.payload.s', 'symbol');
    // toJSON() is what JSON.stringify sends, so that is what is checked and stored.
    expect(ser({ toJSON: () => 'x' })).toBe('"x"');
    expectOutboxError(
      () => ser({ toJSON: () => () => 1 }),
      'PAYLOAD_NOT_SERIALIZABLE',
      'event.payload',
      'function',
    );
  });

  it('nesting deeper than 512 levels → PAYLOAD_NOT_SERIALIZABLE', () => {
    let deep: unknown = 'bottom';
    for (let i = 0; i < 600; i++) deep = [deep];
    expectOutboxError(() => ser(deep), 'PAYLOAD_NOT_SERIALIZABLE', 'deeper than 512');
    let ok: unknown = 'bottom';
    for (let i = 0; i < 500; i++) ok = [ok];
    expect(ser(ok)).toBe(JSON.stringify(ok));
  });

  it('a toJSON that throws (strict: false) → PAYLOAD_NOT_SERIALIZABLE with the cause', () => {
    class Exploding {
      toJSON(): never {
        throw new Error('boom');
      }
    }
    const e = expectOutboxError(
      () => ser({ x: new Exploding() }, lenient),
      'PAYLOAD_NOT_SERIALIZABLE',
      'event.payload',
    );
    expect((e.cause as Error).message).toBe('boom');
  });

  it('NaN, ±Infinity and invalid Dates → PAYLOAD_NOT_FINITE', () => {
    expectOutboxError(() => ser({ price: Number.NaN }), 'PAYLOAD_NOT_FINITE', 'event.payload.price', 'NaN');
    expectOutboxError(
      () => ser([1, Number.POSITIVE_INFINITY]),
      'PAYLOAD_NOT_FINITE',
      'event.payload[1]',
      'Infinity',
    );
    expectOutboxError(
      () => ser({ a: { b: Number.NEGATIVE_INFINITY } }),
      'PAYLOAD_NOT_FINITE',
      'event.payload.a.b',
    );
    expectOutboxError(
      () => ser({ at: new Date(Number.NaN) }),
      'PAYLOAD_NOT_FINITE',
      'event.payload.at',
      'invalid Date',
    );
  });

  it('Map, Set and class instances (strict, the default) → PAYLOAD_NOT_PLAIN naming the class', () => {
    expectOutboxError(() => ser({ m: new Map() }), 'PAYLOAD_NOT_PLAIN', 'event.payload.m', 'Map');
    expectOutboxError(() => ser({ s: [new Set()] }), 'PAYLOAD_NOT_PLAIN', 'event.payload.s[0]', 'Set');
    expectOutboxError(
      () => ser({ total: new Money(1, 'EUR') }),
      'PAYLOAD_NOT_PLAIN',
      'event.payload.total',
      'Money',
    );
    expectOutboxError(() => ser(new Money(1, 'EUR')), 'PAYLOAD_NOT_PLAIN', 'event.payload');
  });

  it('NUL characters and lone surrogates in values or property names → INVALID_CHARACTERS', () => {
    expectOutboxError(() => ser({ note: 'a\u0000b' }), 'INVALID_CHARACTERS', 'event.payload.note', 'NUL');
    expectOutboxError(() => ser(['ok', 'x\ud800']), 'INVALID_CHARACTERS', 'event.payload[1]', 'surrogate');
    expectOutboxError(() => ser({ 'k\u0000': 1 }), 'INVALID_CHARACTERS', 'property name');
    expectOutboxError(() => ser({ '\udc00': 1 }), 'INVALID_CHARACTERS', 'property name');
    // A well-formed surrogate pair is fine.
    expect(ser({ emoji: '\ud83d\ude42' })).toBe('{"emoji":"🙂"}');
    // The text of an escape is fine (the JSON text escapes its backslash); a backslash right
    // before a bad character is not.
    expect(ser({ text: '\\u0000 and \\ud800', two: '\\\\u0000' })).toBe(
      '{"text":"\\\\u0000 and \\\\ud800","two":"\\\\\\\\u0000"}',
    );
    expectOutboxError(() => ser({ path: 'C:\\\u0000' }), 'INVALID_CHARACTERS', 'event.payload.path', 'NUL');
    expectOutboxError(
      () => ser({ deep: [{ x: '\\\\\ud800' }] }),
      'INVALID_CHARACTERS',
      'event.payload.deep[0].x',
    );
  });

  it('also refuses bad characters with strict: false', () => {
    expectOutboxError(() => ser({ note: 'a\u0000b' }, lenient), 'INVALID_CHARACTERS');
    expectOutboxError(() => ser({ n: 10n }, lenient), 'PAYLOAD_NOT_SERIALIZABLE');
  });
});

describe('checkString', () => {
  it('passes ordinary text and refuses NUL and lone surrogates, naming the path', () => {
    expect(() => checkString('plain ü 🙂 \t\n', 'x')).not.toThrow();
    expectOutboxError(() => checkString('\u0000', 'event.type'), 'INVALID_CHARACTERS', 'event.type');
    expectOutboxError(() => checkString('\ud83d', 'event.key'), 'INVALID_CHARACTERS', 'event.key');
  });
});
