import { defineConfig } from 'vitest/config';

// .ci/run sets OUTBOX_VITEST_JSON to read the totals from vitest's JSON report.
const jsonReport = process.env.OUTBOX_VITEST_JSON;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The chaos tier (npm run test:chaos) stops shared services: never part of npm test.
    exclude: ['**/node_modules/**', 'test/chaos/**'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    ...(jsonReport ? { reporters: ['default', ['json', { outputFile: jsonReport }]] } : {}),
  },
});
