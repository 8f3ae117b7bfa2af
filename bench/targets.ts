/**
 * Where events go, for ours and for the reference alike: JetStream (publish with ack, the
 * event id as Nats-Msg-Id, one connection per relay) or an in-process handler that resolves at
 * once (so the relay itself is what is measured). Ours can also publish through any other
 * publisher (the brokers scenario).
 */
import { jetstream } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import {
  createOutbox,
  type OutboundMessage,
  type Outbox,
  type Publisher,
  type PublishResult,
} from '../src/index.js';
import { natsPublisher } from '../src/publishers/nats.js';
import { postgresStore } from '../src/stores/postgres.js';
import { type BenchEnv, PREPARE_STATEMENTS } from './env.js';
import type { ReferenceTarget } from './reference-relay.js';
import { newTiming, type RelayTiming, timed } from './timing.js';

export type TargetKind = 'nats' | 'inproc';

const DELIVERED: PublishResult = Object.freeze({ ok: true });

/** Sees every message an in-process handler gets (the order check, the latency clock). */
export type Recorder = (messages: readonly OutboundMessage[]) => void;

/** Ours: a Publisher whose publish() resolves at once (after `record`, if given). */
export function inProcessPublisher(record?: Recorder): Publisher {
  return {
    kind: 'memory',
    capabilities: { dedupeById: false },
    publish: async (messages: readonly OutboundMessage[]) => {
      record?.(messages);
      return messages.map(() => DELIVERED);
    },
  };
}

/** Ours: the destination template of the bench route (under the run's subject prefix). */
export function oursSubject(env: BenchEnv, phase: string): string {
  return `${env.subjectPrefix}.${phase}.ours`;
}

export function referenceSubject(env: BenchEnv, phase: string): string {
  return `${env.subjectPrefix}.${phase}.ref`;
}

export interface OursSetup {
  readonly outbox: Outbox;
  /** Time in the store's claim() and settle() and the publisher's publish() (one call per round). */
  readonly timing: RelayTiming;
  close(): Promise<void>;
}

export interface OursOptions {
  readonly kind: TargetKind;
  readonly phase: string;
  readonly batchSize: number;
  /** Commit-time NOTIFY; undefined = the store's default (off: the relay polls adaptively). */
  readonly notify?: boolean;
  /** In-process target only: sees every message. */
  readonly record?: Recorder;
  /** The store's URL, if not the run's (e.g. another application_name). */
  readonly pgUrl?: string;
}

/** Our outbox on the run's schema, publishing to `kind` under `${prefix}.${phase}.ours.<type>`. */
export function oursOutbox(env: BenchEnv, options: OursOptions): OursSetup {
  const publisher =
    options.kind === 'nats'
      ? natsPublisher({ url: `nats://${env.natsServers}` })
      : inProcessPublisher(options.record);
  return oursOutboxOn(env, publisher, {
    ...options,
    destination: `${oursSubject(env, options.phase)}.{type}`,
  });
}

export interface OursOnOptions {
  /** The route's destination template. */
  readonly destination: string;
  readonly batchSize: number;
  readonly notify?: boolean;
  readonly pgUrl?: string;
}

/** Our outbox on the run's schema, publishing through `publisher` (closed with the setup). */
export function oursOutboxOn(env: BenchEnv, publisher: Publisher, options: OursOnOptions): OursSetup {
  const store = postgresStore({
    url: options.pgUrl ?? env.pgUrl,
    schema: env.schema,
    notify: options.notify,
    prepareStatements: PREPARE_STATEMENTS,
  });
  const timing = newTiming();
  const outbox = createOutbox({
    database: timed(store, { claim: timing.claim, settle: timing.settle }),
    publishers: { bench: timed(publisher, { publish: timing.publish }) },
    routes: [{ destination: options.destination }],
    relay: { batchSize: options.batchSize },
  });
  return {
    outbox,
    timing,
    async close() {
      await outbox.close();
      await publisher.close?.();
      await store.close();
    },
  };
}

export interface ReferenceTargetSetup {
  readonly target: ReferenceTarget;
  /** Prefix of the Nats-Msg-Id: the reference publishes row `id` as `${idPrefix}${id}`. */
  readonly idPrefix: string;
  close(): Promise<void>;
}

const encoder = new TextEncoder();

/**
 * The reference's target: JetStream on its own connection, or an in-process no-op (which hands
 * each message's id, as `${idPrefix}${id}`, to `record` if given).
 */
export async function referenceTarget(
  env: Pick<BenchEnv, 'tag' | 'natsServers'>,
  kind: TargetKind,
  record?: (id: string) => void,
): Promise<ReferenceTargetSetup> {
  // Row ids are only unique within one table: namespace them per phase, as a second service would.
  const idPrefix = `ref-${env.tag}-${Date.now().toString(36)}-`;
  if (kind === 'inproc') {
    const target: ReferenceTarget = record ? async (m) => record(idPrefix + m.id) : async () => {};
    return { target, idPrefix, close: async () => {} };
  }
  const nc: NatsConnection = await connect({ servers: env.natsServers, name: 'outbox-bench-reference' });
  const js = jetstream(nc);
  return {
    idPrefix,
    target: async (m) => {
      const h = headers();
      h.set('type', m.type);
      await js.publish(m.destination, encoder.encode(m.payload), { msgID: idPrefix + m.id, headers: h });
    },
    close: () => nc.drain(),
  };
}
