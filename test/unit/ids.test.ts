import { describe, expect, it } from 'vitest';
import { isUuid, keyHash, uuidv7 } from '../../src/core/ids.js';

const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The 48-bit millisecond timestamp at the front of a UUIDv7. */
const timestampOf = (id: string): number => Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);

describe('uuidv7', () => {
  it('is a lower-case canonical UUID with version 7 and the RFC 9562 variant', () => {
    for (let i = 0; i < 1000; i++) {
      const id = uuidv7();
      expect(id).toMatch(UUIDV7);
      expect(isUuid(id)).toBe(true);
      expect(id[14]).toBe('7'); // version nibble
      expect(Number.parseInt(id[19]!, 16) >> 2).toBe(0b10); // variant bits 10xx
    }
  });

  it('carries the current time in its first 48 bits', () => {
    const before = Date.now();
    const id = uuidv7();
    const after = Date.now();
    // Monotonicity may borrow a few milliseconds ahead after a burst of ids; never behind.
    expect(timestampOf(id)).toBeGreaterThanOrEqual(before);
    expect(timestampOf(id)).toBeLessThanOrEqual(after + 1000);
  });

  it('is strictly increasing and unique across 100k ids made in a tight loop', () => {
    const ids: string[] = new Array(100_000);
    for (let i = 0; i < ids.length; i++) ids[i] = uuidv7();
    for (let i = 1; i < ids.length; i++) {
      if (!(ids[i]! > ids[i - 1]!)) throw new Error(`ids[${i}] ${ids[i]} does not sort after ${ids[i - 1]}`);
    }
    expect(new Set(ids).size).toBe(ids.length);
    ids.forEach((id) => {
      if (!UUIDV7.test(id)) throw new Error(`${id} is not a UUIDv7`);
    });
  });

  it('stays monotonic when the clock goes backwards', () => {
    const first = uuidv7();
    const earlier = uuidv7(timestampOf(first) - 60_000);
    expect(earlier > first).toBe(true);
    expect(timestampOf(earlier)).toBe(timestampOf(first));
  });

  // Last: moves this module's clock ahead, which later ids in this file would inherit.
  it('embeds a given timestamp that is ahead of the last one', () => {
    const ms = Date.now() + 10_000;
    expect(timestampOf(uuidv7(ms))).toBe(ms);
  });
});

describe('isUuid', () => {
  it('accepts lower-case canonical UUIDs of any version, nothing else', () => {
    expect(isUuid('123e4567-e89b-12d3-a456-426614174000')).toBe(true);
    expect(isUuid('123E4567-E89B-12D3-A456-426614174000')).toBe(false);
    expect(isUuid('123e4567e89b12d3a456426614174000')).toBe(false);
    expect(isUuid('{123e4567-e89b-12d3-a456-426614174000}')).toBe(false);
    expect(isUuid(42)).toBe(false);
  });
});

describe('keyHash (MurmurHash3 x86 32-bit, seed 0, UTF-8)', () => {
  // Reference values from the canonical algorithm (SMHasher's MurmurHash3_x86_32), checked
  // against an independent implementation; they cover 0-3 tail bytes and multi-byte UTF-8.
  const vectors: Array<[string, number]> = [
    ['', 0x00000000],
    ['a', 0x3c2569b2],
    ['ab', 0x9bbfd75f],
    ['abc', 0xb3dd93fa], // top bit set: must come back unsigned
    ['abcd', 0x43ed676a],
    ['test', 0xba6bd213],
    ['hello', 0x248bfa47],
    ['The quick brown fox jumps over the lazy dog', 0x2e4ff723],
    ['order:42', 0xfe226b50],
    ['é🙂', 0x5060f529],
  ];
  it.each(vectors)('keyHash(%j) = %i', (key, expected) => {
    expect(keyHash(key)).toBe(expected);
  });

  it('is an unsigned 32-bit integer, deterministic, and spreads keys over partitions', () => {
    const buckets = new Array<number>(16).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const key = `order:${i}`;
      const h = keyHash(key);
      if (!Number.isInteger(h) || h < 0 || h >= 2 ** 32) throw new Error(`keyHash(${key}) = ${h}`);
      if (keyHash(key) !== h) throw new Error(`keyHash(${key}) is not deterministic`);
      buckets[h % 16]!++;
    }
    // 1,250 expected per bucket; a broken mix (e.g. a signed result) would pile keys up.
    for (const n of buckets) expect(n).toBeGreaterThan(1000);
  });
});
