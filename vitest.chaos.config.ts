import { defineConfig } from 'vitest/config';

// The chaos tier (npm run test:chaos): relay fleets under SIGKILL, SIGSTOP, rebalancing and
// restarts of the shared PostgreSQL and NATS services. One file at a time — a file that stops a
// shared service must have the machine to itself — in forked processes, with long timeouts.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.test.ts'],
    exclude: ['**/node_modules/**'],
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 600_000,
    hookTimeout: 180_000,
  },
});
