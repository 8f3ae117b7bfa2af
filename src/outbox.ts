/**
 * createOutbox(): the one object an application holds. `add()` writes events on the caller's
 * transaction; `relay()` builds the relay from the same routes and publishers; `migrate()`,
 * `status()` and `close()` do what they say.
 */
import {
  type DatabaseConfig,
  databaseSchema,
  type PublisherConfig,
  parseConfig,
  publisherConfigSchema,
  publisherSchemas,
  relaySchema,
  routeSchema,
} from './core/config.js';
import { type DestinationGrammar, grammarFor, kindOfUrl } from './core/destination.js';
import { OutboxError } from './core/errors.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, type OutboxEvent, prepareEvents } from './core/event.js';
import type {
  AsyncExecutor,
  Executor,
  MigrationResult,
  OutboxStats,
  Publisher,
  Store,
  SyncExecutor,
} from './core/ports.js';
import { type RouteConfig, Router } from './core/routes.js';
import { amqpPublisher } from './publishers/amqp.js';
import { httpPublisher } from './publishers/http.js';
import { kafkaPublisher } from './publishers/kafka.js';
import { mqttPublisher } from './publishers/mqtt.js';
import { natsPublisher } from './publishers/nats.js';
import { redisPublisher } from './publishers/redis.js';
import { Relay, type RelayOptions } from './relay/relay.js';
import { traceContextCapture } from './relay/tracing.js';
import { mysqlStore } from './stores/mysql.js';
import { postgresStore } from './stores/postgres.js';
import { sqliteStore } from './stores/sqlite.js';

export interface OutboxConfig {
  /** A URL (`sqlite:./app.db`, `postgres://…`), its options, or a store. Default `sqlite:./outbox.db`. */
  readonly database?: string | DatabaseConfig | Store;
  /** Event type / aggregate type → destination template and publisher. Default: one catch-all route. */
  readonly routes?: readonly RouteConfig[];
  /** Name → URL (`nats://…`, `https://…`), URL with options, or a publisher you built. */
  readonly publishers?: Readonly<Record<string, string | PublisherConfig | Publisher>>;
  /** Largest payload + headers, in UTF-8 bytes (default 1 MiB). */
  readonly maxPayloadBytes?: number;
  /** Refuse Map, Set and class instances in payloads (default true). */
  readonly strictPayload?: boolean;
  /** Defaults for `outbox.relay()`. */
  readonly relay?: RelayOptions;
}

export const DEFAULT_DATABASE_URL = 'sqlite:./outbox.db';

export interface Outbox {
  readonly store: Store;
  /**
   * Adds one event (returns its id) or several in one statement (returns their ids), on the
   * caller's transaction. Synchronous on a synchronous executor (better-sqlite3), a Promise
   * otherwise. Invalid input throws a typed OutboxError before any SQL is sent.
   */
  add(executor: SyncExecutor, event: OutboxEvent): string;
  add(executor: SyncExecutor, events: readonly OutboxEvent[]): string[];
  add(executor: AsyncExecutor, event: OutboxEvent): Promise<string>;
  add(executor: AsyncExecutor, events: readonly OutboxEvent[]): Promise<string[]>;
  add(
    executor: Executor,
    events: OutboxEvent | readonly OutboxEvent[],
  ): string | string[] | Promise<string | string[]>;
  /** A relay over this outbox's store, routes and publishers. */
  relay(options?: RelayOptions): Relay;
  /**
   * Creates or upgrades the schema. `partitions` (default 64) is fixed when the table is
   * created; asking for a different number later is refused.
   */
  migrate(options?: { partitions?: number }): Promise<MigrationResult>;
  status(): Promise<OutboxStats>;
  /** Closes the store and the publishers this outbox created from URLs (not the ones you passed). */
  close(): Promise<void>;
}

function isStore(value: unknown): value is Store {
  return typeof value === 'object' && value !== null && 'insert' in value && 'claim' in value;
}

function isPublisher(value: unknown): value is Publisher {
  return typeof value === 'object' && value !== null && typeof (value as Publisher).publish === 'function';
}

/** A store from a URL: `sqlite:./file.db`, `sqlite:///abs/file.db`, `postgres://…`, `mysql://…` or `mariadb://…`. */
export function storeFromUrl(config: string | DatabaseConfig): Store {
  const options = typeof config === 'string' ? { url: config } : config;
  const { url, ...rest } = options;
  if (/^postgres(ql)?:\/\//i.test(url)) {
    if ('busyTimeoutMs' in rest)
      throw new OutboxError('INVALID_CONFIG', 'database.busyTimeoutMs applies to SQLite only');
    return postgresStore({ ...rest, url });
  }
  if (/^(mysql|mariadb):\/\//i.test(url)) {
    if ('notify' in rest || 'busyTimeoutMs' in rest) {
      throw new OutboxError(
        'INVALID_CONFIG',
        'database.notify and busyTimeoutMs do not apply to MySQL/MariaDB (its relays poll)',
      );
    }
    return mysqlStore({ ...rest, url });
  }
  if (/^sqlite:/i.test(url)) {
    const path = url.replace(/^sqlite:(\/\/)?/i, '');
    if (!path || path === ':memory:') {
      throw new OutboxError(
        'UNSUPPORTED_URL',
        `database URL "${url}" names no file (the relay needs a file it can share)`,
      );
    }
    if ('schema' in rest || 'notify' in rest || 'poolSize' in rest || 'prepareStatements' in rest) {
      throw new OutboxError(
        'INVALID_CONFIG',
        'database.schema, notify, poolSize and prepareStatements do not apply to SQLite',
      );
    }
    return sqliteStore({
      path,
      table: rest.table,
      retainPublished: rest.retainPublished,
      busyTimeoutMs: rest.busyTimeoutMs,
      partitions: rest.partitions,
    });
  }
  throw new OutboxError(
    'UNSUPPORTED_URL',
    `database URL "${url}" is not supported (use sqlite:./file.db, postgres://… or mysql://…)`,
  );
}

/**
 * A publisher from a URL, its options checked: `nats://` (JetStream), `http(s)://` (webhook),
 * `redis(s)://` (Redis Streams), `mqtt(s)://` (MQTT), `amqp(s)://` (RabbitMQ) or
 * `kafka(+ssl)://` (Kafka).
 */
export function publisherFromUrl(config: string | PublisherConfig, where = 'publisher'): Publisher {
  const options = typeof config === 'string' ? { url: config } : config;
  const kind = kindOfUrl(options.url);
  if (kind === 'nats') return natsPublisher(parseConfig(publisherSchemas.nats, options, where));
  if (kind === 'http') return httpPublisher(parseConfig(publisherSchemas.http, options, where));
  if (kind === 'redis') return redisPublisher(parseConfig(publisherSchemas.redis, options, where));
  if (kind === 'mqtt') return mqttPublisher(parseConfig(publisherSchemas.mqtt, options, where));
  if (kind === 'amqp') return amqpPublisher(parseConfig(publisherSchemas.amqp, options, where));
  if (kind === 'kafka') return kafkaPublisher(parseConfig(publisherSchemas.kafka, options, where));
  throw new OutboxError(
    'UNSUPPORTED_URL',
    `broker URL "${options.url}" is not supported (use nats://, http(s)://, redis(s)://, mqtt(s)://, amqp(s):// or kafka(+ssl)://…)`,
  );
}

const KNOWN_OPTIONS = new Set([
  'database',
  'routes',
  'publishers',
  'maxPayloadBytes',
  'strictPayload',
  'relay',
  '$schema',
]);

/** The publishers by name, and those built here from URLs (which close() must close). */
function resolvePublishers(entries: OutboxConfig['publishers']): {
  byName: Map<string, Publisher>;
  owned: Publisher[];
} {
  const byName = new Map<string, Publisher>();
  const owned: Publisher[] = [];
  for (const [name, entry] of Object.entries(entries ?? {})) {
    if (isPublisher(entry)) {
      byName.set(name, entry);
      continue;
    }
    const where = `config.publishers.${name}`;
    const publisher = publisherFromUrl(
      typeof entry === 'string' ? entry : parseConfig(publisherConfigSchema, entry, where),
      where,
    );
    byName.set(name, publisher);
    owned.push(publisher);
  }
  return { byName, owned };
}

/** The routes, compiled against each publisher's destination grammar. */
function buildRouter(routes: OutboxConfig['routes'], publishers: ReadonlyMap<string, Publisher>): Router {
  const grammars = new Map<string, DestinationGrammar>();
  for (const [name, p] of publishers) {
    grammars.set(name, p.validateDestination ? (d) => p.validateDestination!(d) : grammarFor(p.kind));
  }
  for (const [i, r] of (routes ?? []).entries()) parseConfig(routeSchema, r, `config.routes[${i}]`);
  return new Router(routes, grammars);
}

/** Refuses, before any SQL, a handle that is not an executor, of another dialect, or outside a transaction. */
function checkExecutor(executor: Executor, store: Store): void {
  if (
    typeof executor !== 'object' ||
    executor === null ||
    typeof executor.query !== 'function' ||
    typeof executor.sync !== 'boolean'
  ) {
    const raw =
      typeof executor === 'object' &&
      executor !== null &&
      'prepare' in executor &&
      'inTransaction' in executor;
    throw new OutboxError(
      'INVALID_EXECUTOR',
      raw
        ? 'add() got a better-sqlite3 database: wrap it, add(fromBetterSqlite3(db), event)'
        : 'add() needs an executor that wraps your transaction, such as fromPg(client) or fromBetterSqlite3(db)',
    );
  }
  if (executor.dialect !== store.dialect) {
    throw new OutboxError(
      'DIALECT_MISMATCH',
      `a ${executor.dialect} executor cannot write to the ${store.dialect} store`,
    );
  }
  const state = executor.transactionState?.() ?? 'unknown';
  if (state === 'none') {
    throw new OutboxError(
      'NOT_IN_TRANSACTION',
      'add() must run inside your transaction (the handle is not in one), or the event could be written without your business rows',
    );
  }
  if (state === 'aborted') {
    throw new OutboxError('TRANSACTION_ABORTED', 'the transaction has already failed; roll it back');
  }
}

/**
 * Creates an outbox.
 * @example
 * const outbox = createOutbox({ database: 'postgres://localhost/app', publishers: { nats: 'nats://localhost:4222' } });
 * await outbox.migrate();
 * await client.query('BEGIN');
 * await outbox.add(fromPg(client), { type: 'order.created', aggregateType: 'order', aggregateId: id, payload });
 * await client.query('COMMIT');
 */
export function createOutbox(config: OutboxConfig = {}): Outbox {
  if (typeof config !== 'object' || config === null)
    throw new OutboxError('INVALID_CONFIG', 'config must be an object');
  for (const key of Object.keys(config)) {
    if (!KNOWN_OPTIONS.has(key))
      throw new OutboxError('INVALID_CONFIG', `config.${key} is not a known option`);
  }
  const database = config.database ?? DEFAULT_DATABASE_URL;
  const ownsStore = !isStore(database);
  const store = isStore(database)
    ? database
    : storeFromUrl(
        typeof database === 'string' ? database : parseConfig(databaseSchema, database, 'config.database'),
      );
  const { byName: publishers, owned } = resolvePublishers(config.publishers);
  const prepareOptions = {
    router: buildRouter(config.routes, publishers),
    maxPayloadBytes: config.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
    strictPayload: config.strictPayload ?? true,
  };
  if (!Number.isInteger(prepareOptions.maxPayloadBytes) || prepareOptions.maxPayloadBytes <= 0) {
    throw new OutboxError('INVALID_CONFIG', 'config.maxPayloadBytes must be a positive integer');
  }
  const { logger, ...relayJson } = config.relay ?? {};
  parseConfig(relaySchema, relayJson, 'config.relay');
  const relays = new Set<Relay>();
  const wakeRelays = () => {
    for (const relay of relays) relay.wake();
  };

  // The active span's trace context for events that carry none: only with @opentelemetry/api.
  const withTraceContext = traceContextCapture();

  function add(
    executor: Executor,
    input: OutboxEvent | readonly OutboxEvent[],
  ): string | string[] | Promise<string | string[]> {
    // The handle is checked synchronously whatever its kind: a raw driver object passed by
    // mistake (inside a synchronous transaction) must throw there, not reject unobserved.
    checkExecutor(executor, store);
    // Read here, synchronously: the caller's context is the active one only until its first await.
    const traced = withTraceContext ? withTraceContext(input) : input;
    const prepare = () => {
      const events = prepareEvents(traced, prepareOptions);
      const ids = events.map((e) => e.id);
      return {
        statement: events.length > 0 ? store.insert(events) : undefined,
        result: Array.isArray(input) ? ids : ids[0]!,
      };
    };
    if (executor.sync) {
      const { statement, result } = prepare();
      if (statement) {
        void executor.query(statement.sql, statement.params); // synchronous: returns rows, not a promise
        // A synchronous transaction has committed (or rolled back) before any callback runs:
        // wake local relays then, instead of waiting for their next poll.
        if (relays.size > 0) setImmediate(wakeRelays);
      }
      return result;
    }
    return (async () => {
      const { statement, result } = prepare();
      if (statement) await executor.query(statement.sql, statement.params);
      return result;
    })();
  }

  return {
    store,
    add: add as Outbox['add'],
    relay(options: RelayOptions = {}): Relay {
      if (publishers.size === 0) {
        throw new OutboxError(
          'INVALID_CONFIG',
          'a relay needs publishers: configure `publishers` (or pass --broker)',
        );
      }
      const relay = new Relay(
        { store, publishers, router: prepareOptions.router },
        { ...config.relay, ...options, logger: options.logger ?? logger },
      );
      relays.add(relay);
      relay.once('stopped', () => relays.delete(relay));
      return relay;
    },
    migrate: (options) => store.migrate(options),
    status: () => store.stats(),
    async close(): Promise<void> {
      await Promise.all([...relays].map((r) => r.stop()));
      await Promise.all(owned.map((p) => p.close?.()));
      if (ownsStore) await store.close();
    },
  };
}
