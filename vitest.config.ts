import { defineConfig } from 'vitest/config';

// .ci/run sets OUTBOX_VITEST_JSON to read the totals from vitest's JSON report.
const jsonReport = process.env.OUTBOX_VITEST_JSON;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    ...(jsonReport ? { reporters: ['default', ['json', { outputFile: jsonReport }]] } : {}),
  },
});
