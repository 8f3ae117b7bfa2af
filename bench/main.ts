/**
 * `npm run bench`: ours against a plain reference relay (bench/reference-relay.ts) on the real
 * PostgreSQL and NATS JetStream of this machine, every figure as a ratio to the reference from
 * the same run. Prints one table and writes it into docs/performance.md.
 *
 *   npm run bench                       full run (~5 minutes), writes docs/performance.md
 *   npm run bench -- --quick            smoke run with small sizes (docs untouched)
 *   npm run bench -- --only latency,write
 */
import { parseArgs } from 'node:util';
import { leftovers, openEnv } from './env.js';
import { type ResultRow, renderMachine, renderTable, writeDocs } from './report.js';
import { drainPostgres } from './scenarios/drain.js';
import { drainSqlite } from './scenarios/drain-sqlite.js';
import { latencyScenario } from './scenarios/latency.js';
import { writeScenario } from './scenarios/write.js';
import { createTables } from './tables.js';

const SCENARIOS = ['drain-nats', 'drain-inproc', 'drain-sqlite', 'latency', 'write'] as const;
type Scenario = (typeof SCENARIOS)[number];

const DOCS_PATH = new URL('../../docs/performance.md', import.meta.url);

const USAGE = `usage: npm run bench -- [options]
  --quick             small sizes for a smoke run (docs/performance.md is left alone)
  --only <list>       comma-separated: ${SCENARIOS.join(', ')}
  --events <n>        backlog size of the drains (default 100000, quick 10000)
  --keys <n>          ordering keys (default 1000)
  --batch <n>         batch size of both relays (default 500, our relay's default)
  --repeats <n>       drains per side, alternating order; the best counts (default 2, quick 1)
  --seconds <n>       length of each latency and write phase (default 12 / 10, quick 3)
  --rates <list>      latency target rates in events/s (default 500,2000)
  --docs / --no-docs  write docs/performance.md (default: only on a full run of every scenario)
env: OUTBOX_BENCH_PG_URL, OUTBOX_BENCH_NATS_URL`;

interface Settings {
  readonly quick: boolean;
  readonly only: readonly Scenario[];
  readonly events: number;
  readonly keys: number;
  readonly batchSize: number;
  readonly repeats: number;
  readonly latencySeconds: number;
  readonly writeSeconds: number;
  readonly rates: readonly number[];
  readonly docs: boolean;
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      events: { type: 'string' },
      keys: { type: 'string' },
      batch: { type: 'string' },
      repeats: { type: 'string' },
      seconds: { type: 'string' },
      rates: { type: 'string' },
      docs: { type: 'boolean' },
      'no-docs': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : [...SCENARIOS];
  for (const name of only) {
    if (!(SCENARIOS as readonly string[]).includes(name))
      throw new Error(`unknown scenario "${name}" (known: ${SCENARIOS.join(', ')})`);
  }
  const quick = values.quick === true;
  const full = !quick && only.length === SCENARIOS.length && !values.events && !values.seconds;
  const seconds = values.seconds === undefined ? undefined : positive('seconds', values.seconds, 1);
  return {
    quick,
    only: only as Scenario[],
    events: positive('events', values.events, quick ? 10_000 : 100_000),
    keys: positive('keys', values.keys, 1_000),
    batchSize: positive('batch', values.batch, 500),
    repeats: positive('repeats', values.repeats, quick ? 1 : 2),
    latencySeconds: seconds ?? (quick ? 3 : 12),
    writeSeconds: seconds ?? (quick ? 3 : 10),
    rates: (values.rates ?? '500,2000').split(',').map((r) => positive('rates', r, 1)),
    docs: values['no-docs'] ? false : (values.docs ?? full),
  };
}

async function runScenarios(s: Settings, rows: ResultRow[]): Promise<void> {
  const env = await openEnv();
  try {
    const stale = await leftovers(env);
    if (stale.length > 0) process.stderr.write(`note: leftovers of earlier runs: ${stale.join(', ')}\n`);
    await createTables(env);
    const drain = { events: s.events, keys: s.keys, batchSize: s.batchSize, repeats: s.repeats };
    const header = (name: string) => process.stderr.write(`\n${name}\n`);
    if (s.only.includes('drain-nats')) {
      header('drain: PostgreSQL → JetStream');
      rows.push(await drainPostgres(env, 'nats', drain));
    }
    if (s.only.includes('drain-inproc')) {
      header('drain: PostgreSQL → in-process handler');
      rows.push(await drainPostgres(env, 'inproc', drain));
    }
    if (s.only.includes('drain-sqlite')) {
      header('drain: SQLite → in-process handler');
      rows.push(await drainSqlite(drain));
    }
    if (s.only.includes('latency')) {
      for (const rate of s.rates) {
        header(`latency: commit → JetStream consumer at ${rate} events/s`);
        rows.push(
          ...(await latencyScenario(env, {
            rate,
            seconds: s.latencySeconds,
            batchSize: s.batchSize,
            repeats: s.repeats,
          })),
        );
      }
    }
    if (s.only.includes('write')) {
      header('write overhead: 8 clients');
      rows.push(...(await writeScenario(env, { seconds: s.writeSeconds, clients: 8, rounds: s.repeats })));
    }
    const settings =
      `Settings: batch size ${s.batchSize} for both relays, ${s.keys} keys, ` +
      `latency phases ${s.latencySeconds} s, write phases ${s.writeSeconds} s${s.quick ? ' (--quick)' : ''}.`;
    const section = `${renderMachine(env.machine, settings)}\n\n${renderTable(rows)}`;
    console.log(`\n${section}\n`);
    if (s.docs) {
      writeDocs(DOCS_PATH.pathname, DOCS_INTRO, section);
      process.stderr.write(`wrote ${DOCS_PATH.pathname}\n`);
    }
  } finally {
    await env.close();
  }
}

const DOCS_INTRO = `# Performance

Measured by \`npm run bench\` against a plain reference relay (\`bench/reference-relay.ts\`); see the
method above the table.
`;

async function main(): Promise<void> {
  const settings = parseSettings(process.argv.slice(2));
  const startedAt = Date.now();
  const rows: ResultRow[] = [];
  await runScenarios(settings, rows);
  process.stderr.write(`bench finished in ${Math.round((Date.now() - startedAt) / 1_000)} s\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
