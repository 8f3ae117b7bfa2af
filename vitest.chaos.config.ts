import { defineConfig } from 'vitest/config';

// Chaos tests stop shared services: one file at a time, each restarting what it stopped.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 120_000,
  },
});
