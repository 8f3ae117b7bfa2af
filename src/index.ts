/**
 * outbox: the transactional outbox for TypeScript.
 * Stores, executors and publishers live in subpaths (`outbox/stores/postgres`, `outbox/executors/pg`,
 * `outbox/publishers/nats`, …) so that unused drivers never load.
 */
export type { BackoffOptions } from './core/backoff.js';
export type { DatabaseConfig, FileConfig, PublisherConfig } from './core/config.js';
export { ERROR_CODES, type ErrorCode, OutboxError, PermanentError, PublishError } from './core/errors.js';
export type { OutboxEvent } from './core/event.js';
export { keyHash, uuidv7 } from './core/ids.js';
export type {
  AsyncExecutor,
  AttemptRecord,
  ClaimedEvent,
  Dialect,
  EventRecord,
  EventStatus,
  Executor,
  Fence,
  InFlight,
  LeaseRecord,
  Membership,
  MigrationResult,
  OutboundMessage,
  OutboxStats,
  PartitionLease,
  Publisher,
  PublishResult,
  SettleResult,
  Store,
  StoreCapabilities,
  SyncExecutor,
} from './core/ports.js';
export type { RouteConfig } from './core/routes.js';
export type { ReadinessOptions, ReadinessReport } from './http/health.js';
export { type RelayMetrics, type RelayMetricsOptions, relayMetrics } from './http/metrics.js';
export {
  DEFAULT_RELAY_HTTP_PORT,
  type RelayServer,
  type RelayServerOptions,
  relayHandler,
  serveRelay,
} from './http/relay-server.js';
export {
  type HttpHandler,
  type HttpServer,
  type HttpServerOptions,
  parseListenAddress,
  startHttpServer,
} from './http/server.js';
export {
  createOutbox,
  DEFAULT_DATABASE_URL,
  type Outbox,
  type OutboxConfig,
  publisherFromUrl,
  storeFromUrl,
} from './outbox.js';
export type { RetentionOptions } from './relay/cleanup.js';
export type { LeaseChange, LeaseEvent } from './relay/lease.js';
export { consoleLogger, type Logger, type LogLevel, silentLogger } from './relay/logger.js';
export type { PublishCall, RelayObserver, SettleObservation } from './relay/observer.js';
export {
  type BatchReport,
  type DeadLetterPolicy,
  RELAY_DEFAULTS,
  Relay,
  type RelayOptions,
} from './relay/relay.js';
