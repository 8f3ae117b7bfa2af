/** Where a relay spends its time: summed durations of its claim, publish and settle calls. */

/**
 * Milliseconds on the machine's monotonic clock (CLOCK_MONOTONIC), which every thread and
 * process reads alike, unlike performance.now() (its origin is per thread).
 */
export function clockMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Time spent in one kind of call, summed over a phase. */
export interface CallTiming {
  calls: number;
  ms: number;
}

export interface RelayTiming {
  readonly claim: CallTiming;
  readonly publish: CallTiming;
  readonly settle: CallTiming;
}

export function newTiming(): RelayTiming {
  return { claim: { calls: 0, ms: 0 }, publish: { calls: 0, ms: 0 }, settle: { calls: 0, ms: 0 } };
}

export function describeTiming(t: RelayTiming): string {
  const one = (name: string, c: CallTiming) => `${name} ${c.calls}× ${Math.round(c.ms)} ms`;
  return [one('claim', t.claim), one('publish', t.publish), one('settle', t.settle)].join(', ');
}

/** Wraps the async methods `names` of `target` to add their time to `timing` (bench-side only). */
export function timed<T extends object>(target: T, names: Record<string, CallTiming>): T {
  return new Proxy(target, {
    get(object, property, receiver) {
      const value = Reflect.get(object, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      const timing = typeof property === 'string' ? names[property] : undefined;
      if (!timing) return value.bind(object);
      return async (...args: unknown[]) => {
        const startedAt = performance.now();
        try {
          return await value.apply(object, args);
        } finally {
          timing.calls++;
          timing.ms += performance.now() - startedAt;
        }
      };
    },
  });
}
