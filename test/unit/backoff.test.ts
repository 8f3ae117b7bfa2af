import { describe, expect, it } from 'vitest';
import { backoffDelayMs, DEFAULT_BACKOFF } from '../../src/core/backoff.js';
import { seededRandom } from '../../src/testing/index.js';

const options = { baseMs: 500, capMs: 60_000 };
const fixed = (value: number) => () => value;
const justBelowOne = 1 - 2 ** -52;

describe('backoffDelayMs: exponential backoff with full jitter', () => {
  it('draws uniformly from [0, min(cap, base·2^(attempts-1)))', () => {
    expect(backoffDelayMs(1, options, 0, fixed(0))).toBe(0);
    expect(backoffDelayMs(1, options, 0, fixed(0.5))).toBe(250);
    expect(backoffDelayMs(1, options, 0, fixed(justBelowOne))).toBe(499);
    expect(backoffDelayMs(2, options, 0, fixed(justBelowOne))).toBe(999);
    expect(backoffDelayMs(3, options, 0, fixed(0.5))).toBe(1000);
    expect(backoffDelayMs(7, options, 0, fixed(0.5))).toBe(16_000);
  });

  it('stays within its bounds for every draw', () => {
    const random = seededRandom(42);
    for (let attempts = 1; attempts <= 40; attempts++) {
      const ceiling = Math.min(options.capMs, options.baseMs * 2 ** (attempts - 1));
      let max = 0;
      for (let i = 0; i < 500; i++) {
        const delay = backoffDelayMs(attempts, options, 0, random);
        if (!Number.isInteger(delay) || delay < 0 || delay >= ceiling)
          throw new Error(`attempt ${attempts}: delay ${delay} outside [0, ${ceiling})`);
        max = Math.max(max, delay);
      }
      // Full jitter, not "equal jitter": the draws reach high into the range.
      expect(max).toBeGreaterThan(ceiling * 0.9);
    }
  });

  it('never grows beyond the cap, however many attempts (no overflow to Infinity)', () => {
    expect(backoffDelayMs(8, options, 0, fixed(justBelowOne))).toBe(59_999); // 500·2^7 = 64 s > cap
    expect(backoffDelayMs(1_000, options, 0, fixed(justBelowOne))).toBe(59_999);
    expect(backoffDelayMs(Number.MAX_SAFE_INTEGER, options, 0, fixed(0.5))).toBe(30_000);
    expect(backoffDelayMs(3, { baseMs: 100, capMs: 150 }, 0, fixed(justBelowOne))).toBe(149);
  });

  it('treats attempts below 1 as the first failure', () => {
    expect(backoffDelayMs(0, options, 0, fixed(justBelowOne))).toBe(499);
    expect(backoffDelayMs(-3, options, 0, fixed(justBelowOne))).toBe(499);
  });

  it("takes a broker's Retry-After as a floor that jitter never shortens, even above the cap", () => {
    expect(backoffDelayMs(1, options, 5_000, fixed(0))).toBe(5_000);
    expect(backoffDelayMs(1, options, 5_000, fixed(justBelowOne))).toBe(5_000);
    expect(backoffDelayMs(10, options, 5_000, fixed(0.5))).toBe(30_000); // the draw is already later
    expect(backoffDelayMs(10, options, 120_000, fixed(justBelowOne))).toBe(120_000);
  });

  it('has frozen defaults: base 500 ms, cap 60 s', () => {
    expect(DEFAULT_BACKOFF).toEqual({ baseMs: 500, capMs: 60_000 });
    expect(Object.isFrozen(DEFAULT_BACKOFF)).toBe(true);
  });
});
