/**
 * `npm run bench`: ours against a plain reference relay (bench/reference-relay.ts) on the real
 * PostgreSQL and NATS JetStream of this machine, every figure as a ratio to the reference from
 * the same run (or, where there is no reference to speak of, to the baseline the row names:
 * for each broker — Redis Streams, RabbitMQ, MQTT, HTTP, Kafka (librdkafka's mock cluster) — its
 * raw acked-publish ceiling; for MariaDB and SQLite, their plain relays, business-only writes and
 * ours on PostgreSQL; for each executor, the library's own raw call of add()'s statement).
 * Prints one table and writes it into docs/performance.md.
 *
 *   npm run bench                       full run (~16 minutes), writes docs/performance.md
 *   npm run bench -- --quick            smoke run with small sizes (docs untouched)
 *   npm run bench -- --only latency,write
 */
import { parseArgs } from 'node:util';
import { leftovers, openEnv, PREPARE_STATEMENTS } from './env.js';
import { type MariadbEnv, mariadbLeftovers, openMariadb } from './mariadb-env.js';
import { type ResultRow, renderMachine, renderTable, writeDocs } from './report.js';
import { type BrokerName, brokerScenario } from './scenarios/brokers.js';
import { burstScenario } from './scenarios/burst.js';
import { drainPostgres } from './scenarios/drain.js';
import { bigDrainScenario } from './scenarios/drain-big.js';
import { drainMariadb } from './scenarios/drain-mariadb.js';
import { drainSqlite } from './scenarios/drain-sqlite.js';
import { executorsScenario } from './scenarios/executors.js';
import { latencyScenario } from './scenarios/latency.js';
import { latencyDbs } from './scenarios/latency-dbs.js';
import { relaysScenario } from './scenarios/relays.js';
import { writeScenario } from './scenarios/write.js';
import { writeMariadb, writeSqlite } from './scenarios/write-dbs.js';
import { createTables } from './tables.js';
import type { TargetKind } from './targets.js';

const SCENARIOS = [
  'drain-nats',
  'drain-inproc',
  'drain-sqlite',
  'drain-mariadb',
  'burst',
  'broker-redis',
  'broker-amqp',
  'broker-mqtt',
  'broker-http',
  'broker-kafka',
  'relays-nats',
  'relays-inproc',
  'latency-inproc',
  'latency-nats',
  'latency-mariadb',
  'latency-sqlite',
  'write',
  'write-mariadb',
  'write-sqlite',
  'executors',
  'drain-1m',
] as const;
type Scenario = (typeof SCENARIOS)[number];
/** Names that stand for several scenarios in --only. */
const GROUPS: Record<string, readonly Scenario[]> = {
  drain: ['drain-nats', 'drain-inproc', 'drain-sqlite', 'drain-mariadb', 'burst'],
  // JetStream's row against its ceiling is drain-nats's second row.
  brokers: ['drain-nats', 'broker-redis', 'broker-amqp', 'broker-mqtt', 'broker-http', 'broker-kafka'],
  relays: ['relays-nats', 'relays-inproc'],
  latency: ['latency-inproc', 'latency-nats', 'latency-mariadb', 'latency-sqlite'],
  mariadb: ['drain-mariadb', 'latency-mariadb', 'write-mariadb'],
  sqlite: ['drain-sqlite', 'latency-sqlite', 'write-sqlite'],
};
/** Scenarios that need the run's MariaDB database. */
const ON_MARIADB: readonly Scenario[] = ['drain-mariadb', 'latency-mariadb', 'write-mariadb', 'executors'];

const DOCS_PATH = new URL('../../docs/performance.md', import.meta.url);

const USAGE = `usage: npm run bench -- [options]
  --quick             small sizes for a smoke run (docs/performance.md is left alone)
  --only <list>       comma-separated: ${SCENARIOS.join(', ')}
                      (or ${Object.entries(GROUPS)
                        .map(([g, list]) => `${g} = ${list.join(' + ')}`)
                        .join(', ')})
  --events <n>        backlog size of the drains (default 100000, quick 10000) and of each
                      broker-* ceiling and drain (default 30000, quick 5000)
  --relays <n>        relay processes of the relays-* scenarios (default 4)
  --big-events <n>    backlog of drain-1m (default 1000000, quick 20000)
  --keys <n>          ordering keys (default 1000)
  --batch <n>         batch size of both relays (default 500, our relay's default)
  --repeats <n>       drains per side (broker rows: drains and ceilings), alternating order;
                      the best counts (default 2, quick 1)
  --seconds <n>       length of each latency, write and broker latency phase (default 12 / 10 / 6,
                      quick 3), of each MariaDB / SQLite latency and write phase (default 8 / 6,
                      quick 3 / 2) and of each executor's timed calls (default 3, quick 1)
  --rates <list>      latency target rates in events/s (default 500,2000); the MariaDB and SQLite
                      latency rows run at the lowest
  --broker-rate <n>   commit rate of the broker-* latency phases in events/s (default 1000)
  --docs / --no-docs  write docs/performance.md (default: only on a full run of every scenario)
broker-* rows, one pair per broker (Redis Streams, RabbitMQ, MQTT, HTTP webhooks to a local
  receiver, Kafka as librdkafka's mock cluster started with kcat): our relay draining PostgreSQL to
  the broker through our publisher, against the broker's own client publishing the same messages
  with acks and no database (its raw acked-publish ceiling, same run; bar ≥ 0.8×); then commit →
  broker ack p99 at --broker-rate, against the raw client's publish → ack p99 at that rate.
  JetStream's row of this kind is drain-nats's "vs the raw JetStream acked-publish ceiling";
  --only brokers runs them all.
MariaDB and SQLite rows (groups mariadb, sqlite): drain to an in-process handler (against each
  database's plain relay: SELECT … LIMIT n [FOR UPDATE SKIP LOCKED], DELETE), commit → handler p99
  at a moderate rate (against ours on PostgreSQL, same harness and run; 8 writers on MariaDB, 1 on
  SQLite), write overhead (business tx/s with add() against business-only and a plain INSERT;
  8 clients on MariaDB, 1 writer on SQLite). The run's MariaDB database is outbox_bench_<tag>.
executors: add() through every executor (pg, postgres.js, Kysely, Drizzle, Knex, TypeORM, Prisma,
  MikroORM on PostgreSQL; mysql2, Knex, Kysely on MariaDB; better-sqlite3 on SQLite) against the
  same INSERT through the library's own raw-SQL call on the same handle, median per call over many
  one-call transactions after a warm-up (bar ≤ 1.1×).
env: OUTBOX_BENCH_PG_URL, OUTBOX_BENCH_NATS_URL, OUTBOX_BENCH_MARIADB_URL, OUTBOX_BENCH_REDIS_URL,
     OUTBOX_BENCH_AMQP_URL, OUTBOX_BENCH_MQTT_URL, OUTBOX_BENCH_KCAT (kcat, which starts librdkafka's
     mock Kafka cluster),
     OUTBOX_BENCH_PREPARE=0 (our relays with prepareStatements: false, a diagnosis; docs untouched)`;

interface Settings {
  readonly quick: boolean;
  readonly only: readonly Scenario[];
  readonly events: number;
  readonly brokerEvents: number;
  readonly keys: number;
  readonly batchSize: number;
  readonly repeats: number;
  readonly latencySeconds: number;
  readonly writeSeconds: number;
  readonly rates: readonly number[];
  readonly brokerRate: number;
  readonly brokerSeconds: number;
  readonly dbLatencySeconds: number;
  readonly dbWriteSeconds: number;
  readonly executorSeconds: number;
  readonly relays: number;
  readonly bigEvents: number;
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
      'broker-rate': { type: 'string' },
      relays: { type: 'string' },
      'big-events': { type: 'string' },
      docs: { type: 'boolean' },
      'no-docs': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const named = values.only ? values.only.split(',').map((s) => s.trim()) : [...SCENARIOS];
  const only = new Set<Scenario>();
  for (const name of named) {
    const group = GROUPS[name] ?? (SCENARIOS.includes(name as Scenario) ? [name as Scenario] : undefined);
    if (!group)
      throw new Error(
        `unknown scenario "${name}" (known: ${[...SCENARIOS, ...Object.keys(GROUPS)].join(', ')})`,
      );
    for (const scenario of group) only.add(scenario);
  }
  const quick = values.quick === true;
  const full =
    !quick &&
    only.size === SCENARIOS.length &&
    !values.events &&
    !values.seconds &&
    !values.relays &&
    !values['big-events'] &&
    !values['broker-rate'];
  const seconds = values.seconds === undefined ? undefined : positive('seconds', values.seconds, 1);
  return {
    quick,
    only: [...only],
    events: positive('events', values.events, quick ? 10_000 : 100_000),
    brokerEvents: positive('events', values.events, quick ? 5_000 : 30_000),
    keys: positive('keys', values.keys, 1_000),
    batchSize: positive('batch', values.batch, 500),
    repeats: positive('repeats', values.repeats, quick ? 1 : 2),
    latencySeconds: seconds ?? (quick ? 3 : 12),
    writeSeconds: seconds ?? (quick ? 3 : 10),
    rates: (values.rates ?? '500,2000').split(',').map((r) => positive('rates', r, 1)),
    brokerRate: positive('broker-rate', values['broker-rate'], 1_000),
    brokerSeconds: seconds ?? (quick ? 3 : 6),
    dbLatencySeconds: seconds ?? (quick ? 3 : 8),
    dbWriteSeconds: seconds ?? (quick ? 2 : 6),
    executorSeconds: seconds ?? (quick ? 1 : 3),
    relays: positive('relays', values.relays, 4),
    bigEvents: positive('big-events', values['big-events'], quick ? 20_000 : 1_000_000),
    docs: values['no-docs'] ? false : (values.docs ?? (full && PREPARE_STATEMENTS === undefined)),
  };
}

async function runScenarios(s: Settings, rows: ResultRow[]): Promise<void> {
  const env = await openEnv();
  let mariadbEnv: MariadbEnv | undefined;
  try {
    if (s.only.some((name) => ON_MARIADB.includes(name))) mariadbEnv = await openMariadb(env.tag);
    const mariadb = (): MariadbEnv => {
      if (!mariadbEnv) throw new Error('bench: this scenario needs the MariaDB environment');
      return mariadbEnv;
    };
    const stale = [...(await leftovers(env)), ...(mariadbEnv ? await mariadbLeftovers(mariadbEnv) : [])];
    if (stale.length > 0) process.stderr.write(`note: leftovers of earlier runs: ${stale.join(', ')}\n`);
    await createTables(env);
    const drain = { events: s.events, keys: s.keys, batchSize: s.batchSize, repeats: s.repeats };
    const header = (name: string) => process.stderr.write(`\n${name}\n`);
    const targets: Record<TargetKind, string> = { nats: 'JetStream', inproc: 'in-process handler' };
    for (const kind of ['nats', 'inproc'] as const) {
      if (!s.only.includes(`drain-${kind}`)) continue;
      header(`drain: PostgreSQL → ${targets[kind]}, 1 relay`);
      rows.push(...(await drainPostgres(env, kind, drain)));
    }
    if (s.only.includes('drain-sqlite')) {
      header('drain: SQLite → in-process handler');
      rows.push(await drainSqlite(drain));
    }
    if (s.only.includes('drain-mariadb')) {
      header('drain: MariaDB → in-process handler, 1 relay');
      rows.push(await drainMariadb(mariadb(), drain));
    }
    if (s.only.includes('burst')) {
      header('burst after idle: PostgreSQL → in-process handler, 1 relay, no ANALYZE');
      rows.push(await burstScenario(env, { ...drain, capSeconds: s.quick ? 20 : 60 }));
    }
    for (const name of ['redis', 'amqp', 'mqtt', 'http', 'kafka'] as const satisfies readonly BrokerName[]) {
      if (!s.only.includes(`broker-${name}`)) continue;
      const broker = { ...drain, events: s.brokerEvents, rate: s.brokerRate, seconds: s.brokerSeconds };
      header(
        `broker: PostgreSQL → ${name}, 1 relay, vs the raw acked-publish ceiling; then commit → ack at ${s.brokerRate}/s`,
      );
      rows.push(...(await brokerScenario(env, name, broker)));
    }
    for (const kind of ['nats', 'inproc'] as const) {
      if (!s.only.includes(`relays-${kind}`)) continue;
      header(`drain: PostgreSQL → ${targets[kind]}, ${s.relays} relay processes vs 1`);
      rows.push(...(await relaysScenario(env, kind, { ...drain, relays: s.relays })));
    }
    for (const kind of ['inproc', 'nats'] as const) {
      if (!s.only.includes(`latency-${kind}`)) continue;
      for (const rate of s.rates) {
        header(`latency: commit → ${targets[kind]} at ${rate} events/s`);
        const latency = { rate, seconds: s.latencySeconds, batchSize: s.batchSize, repeats: s.repeats, kind };
        rows.push(...(await latencyScenario(env, latency)));
      }
    }
    const dbLatency = (['mariadb', 'sqlite'] as const).filter((db) => s.only.includes(`latency-${db}`));
    if (dbLatency.length > 0) {
      const rate = Math.min(...s.rates);
      header(
        `latency: commit → in-process handler at ${rate} events/s on ${dbLatency.join(', ')}, and PostgreSQL`,
      );
      const latency = { rate, seconds: s.dbLatencySeconds, batchSize: s.batchSize };
      rows.push(...(await latencyDbs(env, mariadbEnv, dbLatency, latency)));
    }
    if (s.only.includes('write')) {
      header('write overhead: 8 clients');
      rows.push(...(await writeScenario(env, { seconds: s.writeSeconds, clients: 8, rounds: s.repeats })));
    }
    const dbWrite = { seconds: s.dbWriteSeconds, rounds: s.repeats };
    if (s.only.includes('write-mariadb')) {
      header('write overhead on MariaDB: 8 clients');
      rows.push(...(await writeMariadb(mariadb(), dbWrite)));
    }
    if (s.only.includes('write-sqlite')) {
      header('write overhead on SQLite: 1 writer');
      rows.push(...(await writeSqlite(dbWrite)));
    }
    if (s.only.includes('executors')) {
      header("executors: add() over the same INSERT through each library's raw-SQL call");
      const timing = { seconds: s.executorSeconds, warmupSeconds: s.quick ? 0.3 : 1 };
      rows.push(...(await executorsScenario(env, mariadb(), timing)));
    }
    if (s.only.includes('drain-1m')) {
      header(`drain: ${s.bigEvents.toLocaleString('en-US')} events, 1 relay process, memory sampled`);
      rows.push(
        ...(await bigDrainScenario(env, { events: s.bigEvents, keys: s.keys, batchSize: s.batchSize })),
      );
    }
    const settings =
      `Settings: batch size ${s.batchSize} for both relays, ${s.keys} keys, ` +
      `our relay's defaults otherwise (64 partitions, adaptive polling up to 100 ms, no NOTIFY unless a row says so), ` +
      `${s.relays} relay processes in the relays rows, ${s.bigEvents.toLocaleString('en-US')}-event big drain, ` +
      `latency phases ${s.latencySeconds} s, write phases ${s.writeSeconds} s, ` +
      `broker rows ${s.brokerEvents.toLocaleString('en-US')} events and latency at ${s.brokerRate}/s for ${s.brokerSeconds} s, ` +
      `MariaDB / SQLite latency phases ${s.dbLatencySeconds} s at ${Math.min(...s.rates)}/s and write phases ${s.dbWriteSeconds} s, ` +
      `${s.executorSeconds} s of timed calls per executor, ` +
      `${s.repeats} repeat${s.repeats > 1 ? 's' : ''}${s.quick ? ' (--quick)' : ''}` +
      `${PREPARE_STATEMENTS === undefined ? '' : `, our relays with prepareStatements: ${PREPARE_STATEMENTS}`}.`;
    const machine = { ...env.machine, mariadb: mariadbEnv?.version };
    const section = `${renderMachine(machine, settings)}\n\n${renderTable(rows)}`;
    console.log(`\n${section}\n`);
    if (s.docs) {
      writeDocs(DOCS_PATH.pathname, DOCS_INTRO, section);
      process.stderr.write(`wrote ${DOCS_PATH.pathname}\n`);
    }
  } finally {
    await mariadbEnv?.close();
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
