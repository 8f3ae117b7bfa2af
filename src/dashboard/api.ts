/**
 * The dashboard's JSON API, answered from the store alone: the summary the page samples for its
 * charts, the partition leases grouped by relay, the dead letters (payloads redacted) and the two
 * actions on them, retry (same id back to pending) and discard.
 */
import { z } from 'zod';
import { parseConfig } from '../core/config.js';
import type { DestinationStats, EventRecord, LeaseRecord, Store } from '../core/ports.js';
import { globToRegExp } from '../core/routes.js';

/** Where the page's "published per second" comes from, when anything can tell. */
export type PublishedSource = 'retained rows' | 'this relay';

export interface Summary {
  readonly generatedAt: string;
  readonly dialect: Store['dialect'];
  /** Retry and discard are allowed (the page shows their buttons). */
  readonly actions: boolean;
  readonly pending: number;
  readonly retrying: number;
  readonly dead: number;
  readonly published: number;
  readonly oldestPendingAgeMs: number | null;
  readonly destinations: readonly DestinationStats[];
  /** A running total the page turns into a rate; null when neither retention nor a relay can tell. */
  readonly publishedTotal: number | null;
  readonly publishedSource: PublishedSource | null;
}

export async function summary(
  store: Store,
  actions: boolean,
  published: { total(): number | null; source: PublishedSource | null },
): Promise<Summary> {
  const stats = await store.stats();
  const retained = published.source === 'retained rows';
  return {
    generatedAt: new Date().toISOString(),
    dialect: store.dialect,
    actions,
    ...stats,
    publishedTotal: retained ? stats.published : published.total(),
    publishedSource: published.source,
  };
}

export interface RelayLeases {
  /** The lease owner: the relay's id and a per-process nonce. */
  readonly owner: string;
  readonly partitions: readonly number[];
  /** The latest expiry of its leases. */
  readonly expiresAt: string | null;
  /** Every lease of this owner has expired: it stopped heartbeating (crashed, paused, cut off). */
  readonly expired: boolean;
}

export interface LeaseView {
  readonly partitions: number;
  /** Never owned, given back, or expired: the next relay to look takes them. */
  readonly free: readonly number[];
  readonly relays: readonly RelayLeases[];
}

export async function leaseView(store: Store): Promise<LeaseView> {
  const leases = await store.leases();
  const now = Date.now();
  const live = (l: LeaseRecord) => l.owner !== '' && l.expiresAt !== null && l.expiresAt.getTime() > now;
  const byOwner = new Map<string, LeaseRecord[]>();
  for (const lease of leases) {
    // An expired lease keeps its owner's name until taken: shown under that owner, as stale.
    if (lease.owner === '' || lease.expiresAt === null) continue;
    byOwner.set(lease.owner, [...(byOwner.get(lease.owner) ?? []), lease]);
  }
  const relays = [...byOwner].map(([owner, held]) => {
    const latest = Math.max(...held.map((l) => l.expiresAt!.getTime()));
    return {
      owner,
      partitions: held.map((l) => l.partition).sort((a, b) => a - b),
      expiresAt: new Date(latest).toISOString(),
      expired: !held.some(live),
    };
  });
  relays.sort((a, b) => Number(a.expired) - Number(b.expired) || a.owner.localeCompare(b.owner));
  return {
    partitions: leases.length,
    free: leases
      .filter((l) => !live(l))
      .map((l) => l.partition)
      .sort((a, b) => a - b),
    relays,
  };
}

/** A dead letter as the page shows it: everything but the payload, which is only measured. */
export interface DeadLetterView {
  readonly id: string;
  readonly type: string;
  readonly key: string;
  readonly destination: string;
  readonly aggregateType: string | null;
  readonly aggregateId: string | null;
  readonly partition: number;
  readonly createdAt: string;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly history: EventRecord['history'];
  readonly parked: boolean;
  readonly payloadBytes: number;
  /** Header names only: values may carry tokens. */
  readonly headerNames: readonly string[];
}

/** The totals are in the summary: one stats query per refresh is enough for a large table. */
export interface DeadLetterPage {
  /** A glob filter searched only the oldest DEAD_SCAN_LIMIT dead letters: newer matches may exist. */
  readonly partial: boolean;
  readonly items: readonly DeadLetterView[];
}

/** Dead letters searched for a filter: the oldest ones, so that a huge DLQ costs one bounded query. */
export const DEAD_SCAN_LIMIT = 5000;
const DEFAULT_DEAD_LIMIT = 100;
const MAX_DEAD_LIMIT = 1000;

const deadQuerySchema = z.object({
  destination: z.string().max(1000).optional(),
  type: z.string().max(1000).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_DEAD_LIMIT).default(DEFAULT_DEAD_LIMIT),
});

function redact(event: EventRecord): DeadLetterView {
  return {
    id: event.id,
    type: event.type,
    key: event.key,
    destination: event.destination,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    partition: event.partition,
    createdAt: event.createdAt.toISOString(),
    attempts: event.attempts,
    lastError: event.lastError,
    history: event.history,
    parked: event.parked,
    payloadBytes: Buffer.byteLength(event.payload, 'utf8'),
    headerNames: Object.keys(event.headers),
  };
}

/** An exact value the store filters on, or a glob matched here. */
function split(value: string | undefined): { exact?: string; glob?: RegExp } {
  if (!value) return {};
  return value.includes('*') ? { glob: globToRegExp(value) } : { exact: value };
}

/**
 * `destination` and `type` are exact values, filtered by the database, or globs (`*` matches any
 * text, as in routes), matched against the oldest DEAD_SCAN_LIMIT dead letters.
 */
export async function deadLetters(store: Store, query: URLSearchParams): Promise<DeadLetterPage> {
  const q = parseConfig(deadQuerySchema, Object.fromEntries(query), 'query');
  const destination = split(q.destination);
  const type = split(q.type);
  const globbed = Boolean(destination.glob || type.glob);
  const events = await store.list({
    status: 'dead',
    destination: destination.exact,
    type: type.exact,
    limit: globbed ? DEAD_SCAN_LIMIT : q.limit,
  });
  const items = events
    .filter((e) => (destination.glob?.test(e.destination) ?? true) && (type.glob?.test(e.type) ?? true))
    .slice(0, q.limit)
    .map(redact);
  return { partial: globbed && events.length === DEAD_SCAN_LIMIT, items };
}

const MAX_IDS_PER_ACTION = 1000;

export const actionSchema = z.object({
  ids: z.array(z.string().min(1).max(100)).min(1).max(MAX_IDS_PER_ACTION),
});

/**
 * The same rules as `outbox dlq retry` / `discard`: only dead letters are touched; a retried one
 * keeps its id (consumers' dedupe still works), with attempts reset and due at once.
 */
export async function act(
  store: Store,
  action: 'retry' | 'discard',
  body: unknown,
): Promise<{ requested: number; retried?: number; discarded?: number }> {
  const { ids } = parseConfig(actionSchema, body, 'body');
  const unique = [...new Set(ids)];
  if (action === 'retry') return { requested: unique.length, retried: await store.retryDead(unique) };
  return { requested: unique.length, discarded: await store.discardDead(unique) };
}
