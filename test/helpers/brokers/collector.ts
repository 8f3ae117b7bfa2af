/** What every harness's consumer shares: the received list and waiting for a count. */
import type { Consumer, Received } from '../../conformance/publisher.suite.js';

export function collector(close: () => Promise<void>): { consumer: Consumer; push(r: Received): void } {
  const received: Received[] = [];
  const waiters = new Set<() => void>();
  return {
    push(r) {
      received.push(r);
      for (const wake of waiters) wake();
    },
    consumer: {
      received,
      waitFor(count, timeoutMs) {
        return new Promise((resolve, reject) => {
          const check = () => {
            if (received.length < count) return;
            cleanup();
            resolve([...received]);
          };
          const timer = setTimeout(() => {
            cleanup();
            reject(new Error(`only ${received.length} of ${count} messages arrived in ${timeoutMs} ms`));
          }, timeoutMs);
          const cleanup = () => {
            clearTimeout(timer);
            waiters.delete(check);
          };
          waiters.add(check);
          check();
        });
      },
      close,
    },
  };
}
