/**
 * Event ids and key hashes. Ids are UUIDv7 (RFC 9562): time-ordered, so they index well and
 * read in creation order, and usable as the broker's message id. Monotonic within a process:
 * two ids made in the same millisecond still sort in creation order.
 */
import { randomFillSync } from 'node:crypto';

const pool = new Uint8Array(16 * 256);
let poolOffset = pool.length;
let lastMs = -1;
let counter = 0; // 12 bits of rand_a used as a per-millisecond sequence (RFC 9562 method 1)

function random16(): Uint8Array {
  if (poolOffset + 16 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = pool.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  return bytes;
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** A new UUIDv7 string. */
export function uuidv7(nowMs: number = Date.now()): string {
  const r = random16();
  let ms = nowMs;
  if (ms <= lastMs) {
    ms = lastMs;
    counter++;
    if (counter > 0xfff) {
      // 4096 ids in one millisecond: borrow the next millisecond to stay monotonic.
      ms = ++lastMs;
      counter = 0;
    }
  } else {
    lastMs = ms;
    counter = r[6]! & 0x07; // random start, leaving room to count up
  }
  const b = new Uint8Array(16);
  b[0] = (ms / 2 ** 40) & 0xff;
  b[1] = (ms / 2 ** 32) & 0xff;
  b[2] = (ms >>> 24) & 0xff;
  b[3] = (ms >>> 16) & 0xff;
  b[4] = (ms >>> 8) & 0xff;
  b[5] = ms & 0xff;
  b[6] = 0x70 | ((counter >>> 8) & 0x0f);
  b[7] = counter & 0xff;
  b[8] = 0x80 | (r[8]! & 0x3f);
  for (let i = 9; i < 16; i++) b[i] = r[i]!;
  let s = '';
  for (let i = 0; i < 16; i++) {
    s += HEX[b[i]!];
    if (i === 3 || i === 5 || i === 7 || i === 9) s += '-';
  }
  return s;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True for a lower-case canonical UUID string (any version). */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}

const encoder = new TextEncoder();
/** Reused for ASCII keys (the common case): their UTF-8 bytes are their char codes. */
const asciiBuffer = new Uint8Array(1024);

/** The key's bytes in a shared buffer when it is ASCII and short, else undefined. */
function asciiBytes(key: string): Uint8Array | undefined {
  if (key.length > asciiBuffer.length) return undefined;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c > 0x7f) return undefined;
    asciiBuffer[i] = c;
  }
  return asciiBuffer.subarray(0, key.length);
}

/**
 * MurmurHash3 (x86, 32-bit, seed 0) of the key's UTF-8 bytes, as an unsigned integer.
 * Stored with each event so that partition = hash mod P needs no data migration.
 */
export function keyHash(key: string): number {
  const data = asciiBytes(key) ?? encoder.encode(key);
  const len = data.length;
  const blocks = len & ~3;
  let h = 0;
  for (let i = 0; i < blocks; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = len & 3;
  if (tail > 0) {
    let k = data[blocks]!;
    if (tail > 1) k ^= data[blocks + 1]! << 8;
    if (tail > 2) k ^= data[blocks + 2]! << 16;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
