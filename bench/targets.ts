/**
 * Where events go, for ours and for the reference alike: JetStream (publish with ack, the
 * event id as Nats-Msg-Id, one connection per relay) or an in-process handler that resolves at
 * once (so the relay itself is what is measured).
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
import type { BenchEnv } from './env.js';
import type { ReferenceTarget } from './reference-relay.js';
import { newTiming, type RelayTiming, timed } from './timing.js';

export type TargetKind = 'nats' | 'inproc';

const DELIVERED: PublishResult = Object.freeze({ ok: true });

/** Ours: a Publisher whose publish() resolves at once. */
export function inProcessPublisher(): Publisher {
  return {
    kind: 'memory',
    capabilities: { dedupeById: false },
    publish: async (messages: readonly OutboundMessage[]) => messages.map(() => DELIVERED),
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

/** Our outbox on the run's schema, publishing to `kind` under `${prefix}.${phase}.ours.<type>`. */
export function oursOutbox(
  env: BenchEnv,
  options: { kind: TargetKind; phase: string; batchSize: number; notify?: boolean },
): OursSetup {
  const store = postgresStore({ url: env.pgUrl, schema: env.schema, notify: options.notify ?? true });
  const publisher =
    options.kind === 'nats' ? natsPublisher({ url: `nats://${env.natsServers}` }) : inProcessPublisher();
  const timing = newTiming();
  const outbox = createOutbox({
    database: timed(store, { claim: timing.claim, settle: timing.settle }),
    publishers: { bench: timed(publisher, { publish: timing.publish }) },
    routes: [{ destination: `${oursSubject(env, options.phase)}.{type}` }],
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

/** The reference's target: JetStream on its own connection, or an in-process no-op. */
export async function referenceTarget(env: BenchEnv, kind: TargetKind): Promise<ReferenceTargetSetup> {
  // Row ids are only unique within one table: namespace them per phase, as a second service would.
  const idPrefix = `ref-${env.tag}-${Date.now().toString(36)}-`;
  if (kind === 'inproc') return { target: async () => {}, idPrefix, close: async () => {} };
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
