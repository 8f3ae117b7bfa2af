/**
 * The seams between the parts: executors (run SQL on the caller's transaction), stores
 * (which SQL, one file per dialect) and publishers (one file per broker). Interfaces only —
 * no I/O here. Each seam has one conformance suite in test/conformance/.
 */

export type Dialect = 'postgres' | 'sqlite' | 'mysql';

export type SqlRow = Record<string, unknown>;

/** One parameterised statement. */
export interface Statement {
  readonly sql: string;
  readonly params: readonly unknown[];
}

/** What an executor can tell about the handle it wraps, without sending SQL. */
export type TransactionState = 'active' | 'none' | 'aborted' | 'unknown';

interface ExecutorBase {
  readonly dialect: Dialect;
  /** Checked by `add()` before any SQL is sent: 'none' and 'aborted' are refused. */
  transactionState?(): TransactionState;
}

/** Runs statements synchronously (better-sqlite3, Drizzle on SQLite): `add()` completes synchronously. */
export interface SyncExecutor extends ExecutorBase {
  readonly sync: true;
  query(sql: string, params: readonly unknown[]): SqlRow[];
}

/** Runs statements asynchronously on the caller's transaction (node-postgres, postgres.js, Kysely, …). */
export interface AsyncExecutor extends ExecutorBase {
  readonly sync: false;
  query(sql: string, params: readonly unknown[]): Promise<SqlRow[]>;
}

/** Runs our SQL on the caller's transaction handle. Knows *how* to run SQL, nothing else. */
export type Executor = SyncExecutor | AsyncExecutor;

/** An event checked and ready to insert: every field already validated and serialised. */
export interface PreparedEvent {
  readonly id: string;
  readonly key: string;
  /** Unsigned 32-bit murmur3 hash of `key` (partition = keyHash mod P). */
  readonly keyHash: number;
  readonly type: string;
  readonly aggregateType: string | null;
  readonly aggregateId: string | null;
  readonly destination: string;
  /** JSON text ('null' when the event has no payload). */
  readonly payload: string;
  /** JSON text of a string → string object. */
  readonly headers: string;
  /** null = available at once (the database's clock at insert). */
  readonly availableAt: Date | null;
}

/** One entry of the bounded attempt history kept with each event. */
export interface AttemptRecord {
  /** ISO-8601 time of the failure. */
  readonly at: string;
  readonly error: string;
  /** Id of the relay that made the attempt. */
  readonly relay: string;
}

export type EventStatus = 'pending' | 'published' | 'dead';

/** An event as the relay claims it. */
export interface ClaimedEvent {
  readonly id: string;
  /** Insertion order; within a key, events are published in `seq` order. */
  readonly seq: number;
  readonly key: string;
  readonly keyHash: number;
  /** keyHash mod P: the partition whose lease a relay must hold to publish this event. */
  readonly partition: number;
  readonly type: string;
  readonly aggregateType: string | null;
  readonly aggregateId: string | null;
  readonly destination: string;
  readonly payload: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly createdAt: Date;
  /** Failed attempts so far. */
  readonly attempts: number;
  readonly history: readonly AttemptRecord[];
}

/** A stored event with everything an operator may look at. */
export interface EventRecord extends ClaimedEvent {
  readonly status: EventStatus;
  readonly availableAt: Date;
  readonly lastError: string | null;
  readonly publishedAt: Date | null;
  /** A dead letter that keeps holding back later events of its key (policy 'park'). */
  readonly parked: boolean;
}

/** The outcome of one batch, written by the store in one statement (or one short transaction). */
export interface Settlement {
  /** Delivered: deleted, or kept as 'published' with `published_at` when retention is on. */
  readonly published: readonly string[];
  /** Failed, to be tried again `delayMs` after the database's now. */
  readonly retry: readonly FailedAttempt[];
  /** Failed for good: status 'dead', kept with their history. */
  readonly dead: readonly FailedAttempt[];
}

export interface FailedAttempt {
  readonly id: string;
  /** The new attempt count (previous + 1). */
  readonly attempts: number;
  readonly error: string;
  /** The whole new history, already bounded by the relay. */
  readonly history: readonly AttemptRecord[];
  /** For retries: delay from now until the next attempt (ignored for dead letters). */
  readonly delayMs: number;
  /** For dead letters: keep later events of the key waiting until an operator acts (policy 'park'). */
  readonly park?: boolean;
}

/** One partition lease held by a relay: settles of its events are fenced by the epoch. */
export interface PartitionLease {
  readonly partition: number;
  readonly epoch: number;
}

/** What a relay presents with each settle: only events of partitions it still holds are written. */
export interface Fence {
  readonly owner: string;
  readonly leases: readonly PartitionLease[];
}

export interface SettleResult {
  /** Partitions whose lease was lost (epoch moved on): their events were not written. */
  readonly fenced: readonly number[];
}

/** A relay's heartbeat answer: the partition count, the live relays, and the leases it still holds. */
export interface Membership {
  readonly partitions: number;
  /** Relays that heartbeated within their TTL, this one included. */
  readonly relays: number;
  /** This relay's leases, just renewed. A lease it believed held and that is missing here is lost. */
  readonly held: readonly PartitionLease[];
}

/** One row of the lease table, for operators. */
export interface LeaseRecord {
  readonly partition: number;
  /** '' when the partition was never owned. */
  readonly owner: string;
  readonly epoch: number;
  /** null when released (free at once). */
  readonly expiresAt: Date | null;
}

export interface DestinationStats {
  readonly destination: string;
  readonly pending: number;
  /** Pending events that have failed at least once. */
  readonly retrying: number;
  readonly dead: number;
  /** Published events still kept by retention. */
  readonly published: number;
  /**
   * The lag: how long the oldest undelivered event has waited since it was due (since it was
   * added, for one that has failed). Delayed events not yet due do not count.
   */
  readonly oldestPendingAgeMs: number | null;
}

export interface OutboxStats extends Omit<DestinationStats, 'destination'> {
  readonly destinations: readonly DestinationStats[];
}

export interface MigrationResult {
  readonly from: number;
  readonly to: number;
  /** Names of the migrations this call applied (empty when the schema was current). */
  readonly applied: readonly string[];
}

/** Which events `list()` returns: every given field must match (exact values). */
export interface ListFilter {
  readonly status?: EventStatus;
  readonly destination?: string;
  readonly type?: string;
  /** Only events added at or after this time. */
  readonly createdSince?: Date;
  /** Default 100. */
  readonly limit?: number;
}

export interface StoreCapabilities {
  /** The store can wake the relay when a transaction that added events commits. */
  readonly listenNotify: boolean;
}

/** An event claimed and not settled yet: where a claim finds it, to leave it out. */
export type InFlight = Pick<ClaimedEvent, 'partition' | 'seq'>;

/**
 * All the SQL of one dialect. `insert()` builds the statement `add()` runs on the caller's
 * transaction; every other method runs on the store's own connection (the relay's side).
 */
export interface Store {
  readonly dialect: Dialect;
  readonly capabilities: StoreCapabilities;
  /** One statement adding every event (and, where enabled, the commit-time wake-up). Pure. */
  insert(events: readonly PreparedEvent[]): Statement;

  /**
   * Creates or upgrades the schema; idempotent and safe when several processes run it at once.
   * `partitions` (default 64) is fixed when the table is created; a different number later is refused.
   */
  migrate(options?: { partitions?: number }): Promise<MigrationResult>;
  /** Throws SCHEMA_OUTDATED / SCHEMA_TOO_NEW when the schema and this code disagree. */
  checkSchema(): Promise<void>;

  /**
   * Up to `limit` pending events of the given partitions that are due, in `seq` order, skipping
   * every event whose key has an earlier event holding it back: one that is pending but not due
   * (retrying or delayed), or a parked dead letter. A failing event holds back its own key only.
   * `inFlight`: events this relay claimed and has not settled yet, never returned again (the
   * relay claims again while earlier events are being published and settled).
   */
  claim(
    partitions: readonly number[],
    limit: number,
    inFlight?: readonly InFlight[],
  ): Promise<ClaimedEvent[]>;
  /** Writes a batch's outcome in one statement, for the events of partitions the fence still holds. */
  settle(settlement: Settlement, fence: Fence): Promise<SettleResult>;

  /** Registers (or refreshes) relay `owner` for `ttlMs`, renews its leases, counts the live relays. */
  heartbeat(owner: string, ttlMs: number): Promise<Membership>;
  /**
   * Takes free or expired partitions until `owner` holds its fair share, ceil(P / live relays),
   * each with a new epoch. Returns the leases taken (often none).
   */
  acquireLeases(owner: string, ttlMs: number): Promise<PartitionLease[]>;
  /** Gives partitions back at once; 'all' also removes the relay's registration (graceful stop). */
  releaseLeases(owner: string, partitions: readonly number[] | 'all'): Promise<void>;
  /** Every partition's lease, for operators and tests. */
  leases(): Promise<LeaseRecord[]>;

  /** Dead letters back to pending (attempts 0, same id, due now); returns how many. */
  retryDead(ids: readonly string[]): Promise<number>;
  /** Deletes dead letters; returns how many. */
  discardDead(ids: readonly string[]): Promise<number>;

  stats(): Promise<OutboxStats>;
  get(id: string): Promise<EventRecord | undefined>;
  list(filter?: ListFilter): Promise<EventRecord[]>;
  /**
   * Deletes published events kept by retention whose `published_at` is older than `olderThanMs`
   * and returns how many. Without `limit`, every one of them (in bounded chunks); with it, one
   * statement deleting at most `limit` (the relay's background cleanup paces itself with it).
   */
  purge(olderThanMs: number, limit?: number): Promise<number>;

  /** Calls `onWake` when a transaction that added events commits (LISTEN/NOTIFY). */
  listen?(onWake: () => void): Promise<{ close(): Promise<void> }>;
  close(): Promise<void>;
}

/** What a publisher is asked to deliver: one event, with its envelope attributes. */
export interface OutboundMessage {
  readonly id: string;
  readonly key: string;
  readonly type: string;
  readonly destination: string;
  readonly aggregateType: string | null;
  readonly aggregateId: string | null;
  /** JSON text. */
  readonly payload: string;
  /** The event's own headers (already validated: no CR/LF, no reserved names). */
  readonly headers: Readonly<Record<string, string>>;
  readonly createdAt: Date;
  /** 1 for the first attempt. */
  readonly attempt: number;
}

export type PublishResult = { readonly ok: true } | { readonly ok: false; readonly error: unknown };

export interface PublisherCapabilities {
  /** The broker drops a second message with the same id (NATS JetStream `Nats-Msg-Id`). */
  readonly dedupeById: boolean;
}

/**
 * Delivers messages to one broker. `publish()` gets messages with distinct keys (the relay
 * keeps per-key order by never giving a key's next message before the previous one settled),
 * may send them concurrently, and returns one result per message, in the same order. A
 * result's error may be a `PublishError` (`retryable`, `retryAfterMs`) or `PermanentError`;
 * any other error counts as retryable. `publish()` itself should not throw; if it does, every
 * message of the call counts as failed.
 */
export interface Publisher {
  /** The broker family ('nats', 'http', 'memory', …): selects the destination grammar. */
  readonly kind: string;
  readonly capabilities: PublisherCapabilities;
  publish(messages: readonly OutboundMessage[]): Promise<PublishResult[]>;
  /** Rejects a destination this broker cannot take; returns the reason, or undefined when valid. */
  validateDestination?(destination: string): string | undefined;
  close?(): Promise<void>;
}
