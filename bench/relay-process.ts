/**
 * One relay in its own process (forked by bench/relay-children.ts): ours, built from src like
 * every bench file, or the reference. It connects, says 'ready', starts on 'go', reports every
 * batch, and on 'stop' stops gracefully and sends what it saw (the ids its in-process handler
 * got, with the time of each publish call on the machine's monotonic clock, so that the
 * receptions of several processes can be merged in time order).
 */
import { type BatchReport, createOutbox, type Relay } from '../src/index.js';
import { natsPublisher } from '../src/publishers/nats.js';
import { postgresStore } from '../src/stores/postgres.js';
import { PREPARE_STATEMENTS } from './env.js';
import { ReferenceRelay } from './reference-relay.js';
import { inProcessPublisher, referenceTarget, type TargetKind } from './targets.js';

export interface RelayProcessConfig {
  readonly side: 'ours' | 'reference';
  readonly kind: TargetKind;
  readonly pgUrl: string;
  readonly schema: string;
  readonly natsServers: string;
  readonly tag: string;
  /** Our route's destination is `${subject}.{type}` (the reference's rows carry theirs). */
  readonly subject: string;
  readonly batchSize: number;
  readonly relayId: string;
  /** Keep the ids the in-process handler gets (order checks). */
  readonly record: boolean;
  /** Our relay's lease TTL, if not the default (its heartbeat runs every third of it). */
  readonly leaseTtlMs?: number;
}

export type ToChild = { readonly type: 'go' } | { readonly type: 'stop' };

export interface Receptions {
  readonly ids: string[];
  /** Per id: process.hrtime.bigint() of its publish call, in ns (CLOCK_MONOTONIC, machine-wide). */
  readonly at: number[];
}

export type FromChild =
  | { readonly type: 'ready' }
  | { readonly type: 'batch'; readonly published: number; readonly fenced: number; readonly skipped: number }
  | { readonly type: 'lease'; readonly change: string; readonly partitions: number }
  | { readonly type: 'stopped'; readonly receptions: Receptions; readonly errors: number }
  | { readonly type: 'failed'; readonly error: string };

const config = JSON.parse(process.argv[2] ?? '{}') as RelayProcessConfig;
const send = (message: FromChild, then?: () => void) => process.send?.(message, undefined, {}, then);
const receptions: Receptions = { ids: [], at: [] };
const record = (ids: readonly string[]) => {
  if (!config.record) return;
  const at = Number(process.hrtime.bigint());
  for (const id of ids) {
    receptions.ids.push(id);
    receptions.at.push(at);
  }
};

interface Running {
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function ours(): Promise<Running> {
  const store = postgresStore({
    url: config.pgUrl,
    schema: config.schema,
    prepareStatements: PREPARE_STATEMENTS,
  });
  const publisher =
    config.kind === 'nats'
      ? natsPublisher({ url: `nats://${config.natsServers}` })
      : inProcessPublisher((messages) => record(messages.map((m) => m.id)));
  const outbox = createOutbox({
    database: store,
    publishers: { bench: publisher },
    routes: [{ destination: `${config.subject}.{type}` }],
    relay: { batchSize: config.batchSize, relayId: config.relayId, leaseTtlMs: config.leaseTtlMs },
  });
  const relay: Relay = outbox.relay();
  relay.on('error', () => errors++);
  relay.on('batch', (r: BatchReport) =>
    send({
      type: 'batch',
      published: r.published.length,
      fenced: r.fenced.length,
      skipped: r.skipped.length,
    }),
  );
  relay.on('lease', (c: { change: string; partitions: readonly number[] }) =>
    send({ type: 'lease', change: c.change, partitions: c.partitions.length }),
  );
  return {
    start: () => relay.start(),
    async stop() {
      await relay.stop();
      await outbox.close();
      await publisher.close?.();
      await store.close();
    },
  };
}

async function reference(): Promise<Running> {
  const target = await referenceTarget(config, config.kind, (id) => record([id]));
  const relay = new ReferenceRelay({
    url: config.pgUrl,
    schema: config.schema,
    batchSize: config.batchSize,
    target: target.target,
  });
  relay.on('loop-error', () => errors++);
  relay.on('batch', (b: { published: number }) =>
    send({ type: 'batch', published: b.published, fenced: 0, skipped: 0 }),
  );
  return {
    start: () => relay.start(),
    async stop() {
      await relay.stop();
      await target.close();
    },
  };
}

let errors = 0;

async function main(): Promise<void> {
  const relay = config.side === 'ours' ? await ours() : await reference();
  process.on('message', (message: ToChild) => {
    if (message.type === 'go') relay.start().catch(fail);
    else if (message.type === 'stop')
      relay
        .stop()
        .then(() => send({ type: 'stopped', receptions, errors }, () => process.disconnect()), fail);
  });
  // The parent going away (killed bench) must not leave this relay running.
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}

function fail(error: unknown): void {
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.exitCode = 1;
  send({ type: 'failed', error: text }, () => process.disconnect());
}

main().catch(fail);
