/**
 * `outbox relay`: runs the relay until SIGTERM or SIGINT, then finishes the round in flight,
 * settles it, gives its partition leases back and exits 0. With `--http [host:]port` it also
 * serves /metrics, /healthz and /readyz (src/http/relay-server.ts) and the dashboard, read-only
 * (src/dashboard), until it has stopped.
 */
import { Command, Option } from 'commander';
import { OutboxError } from '../../core/errors.js';
import { dashboardHandler } from '../../dashboard/handler.js';
import { type RelayServer, serveRelay } from '../../http/relay-server.js';
import { parseListenAddress } from '../../http/server.js';
import { createOutbox } from '../../outbox.js';
import { consoleLogger, type LogLevel } from '../../relay/logger.js';
import type { RelayOptions } from '../../relay/relay.js';
import { type CommonOptions, common, redactUrl, resolveConfig } from '../config.js';

interface RelayFlags extends CommonOptions {
  batchSize?: string;
  maxAttempts?: string;
  pollIntervalMs?: string;
  leaseTtlMs?: string;
  logLevel: LogLevel;
  http?: string;
}

function int(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new OutboxError('INVALID_CONFIG', `--${name} must be a positive integer, got "${value}"`);
  return n;
}

export function relayCommand(): Command {
  return common(new Command('relay'), { broker: true })
    .description('publish committed events to the broker until SIGTERM/SIGINT')
    .addOption(new Option('--batch-size <n>', 'events per batch (default 500)').env('OUTBOX_BATCH_SIZE'))
    .addOption(
      new Option('--max-attempts <n>', 'attempts before dead-lettering (default 10)').env(
        'OUTBOX_MAX_ATTEMPTS',
      ),
    )
    .addOption(
      new Option('--poll-interval-ms <n>', 'longest idle sleep (default 100)').env('OUTBOX_POLL_INTERVAL_MS'),
    )
    .addOption(
      new Option('--lease-ttl-ms <n>', 'partition lease time-to-live (default 10000)').env(
        'OUTBOX_LEASE_TTL_MS',
      ),
    )
    .addOption(
      new Option('--log-level <level>', 'debug, info, warn, error or silent')
        .choices(['debug', 'info', 'warn', 'error', 'silent'])
        .default('info')
        .env('OUTBOX_LOG_LEVEL'),
    )
    .addOption(
      new Option(
        '--http <[host:]port>',
        'serve /metrics, /healthz, /readyz and the read-only dashboard on this address (host 127.0.0.1 unless given)',
      ).env('OUTBOX_HTTP'),
    )
    .action(async (flags: RelayFlags) => {
      const config = resolveConfig(flags);
      const listen = flags.http === undefined ? undefined : parseListenAddress(flags.http);
      if (!config.publishers || Object.keys(config.publishers).length === 0) {
        throw new OutboxError(
          'INVALID_CONFIG',
          'no broker: pass --broker <url> (OUTBOX_BROKER_URL) or configure publishers',
        );
      }
      const logger = consoleLogger({ level: flags.logLevel });
      const overrides: RelayOptions = {
        batchSize: int('batch-size', flags.batchSize),
        maxAttempts: int('max-attempts', flags.maxAttempts),
        pollIntervalMs: int('poll-interval-ms', flags.pollIntervalMs),
        leaseTtlMs: int('lease-ttl-ms', flags.leaseTtlMs),
      };
      const outbox = createOutbox({
        ...config,
        relay: { ...config.relay, ...dropUndefined(overrides), logger },
      });
      const relay = outbox.relay();
      const totals = { published: 0, retried: 0, dead: 0 };
      relay.on('batch', (r) => {
        totals.published += r.published.length;
        totals.retried += r.retried.length;
        totals.dead += r.dead.length;
      });
      relay.on('error', () => {}); // logged by the relay; the loop retries
      const url = typeof config.database === 'string' ? config.database : config.database.url;
      logger.info('relay starting', {
        relay: relay.id,
        database: redactUrl(url),
        publishers: Object.keys(config.publishers),
      });
      // Registered before anything starts: a SIGTERM during startup stops the relay once it runs.
      const stopped = new Promise<void>((resolve) => {
        const shutdown = (signal: string) => {
          logger.info('relay stopping', { relay: relay.id, signal });
          resolve();
        };
        process.once('SIGTERM', () => shutdown('SIGTERM'));
        process.once('SIGINT', () => shutdown('SIGINT'));
      });
      let http: RelayServer | undefined;
      try {
        if (listen) {
          // The dashboard, read-only, beside /metrics, /healthz and /readyz.
          const retainPublished =
            typeof config.database !== 'string' && config.database.retainPublished === true;
          const dashboard = dashboardHandler(outbox, { relay, retainPublished });
          http = await serveRelay(relay, { ...listen, logger, handlers: [dashboard] });
          logger.info('http listening', { relay: relay.id, url: http.url });
        }
        await relay.start();
      } catch (error) {
        await http?.close();
        await outbox.close();
        throw error;
      }
      await stopped;
      await outbox.close();
      await http?.close(); // after the stop: /readyz says 503 while the relay winds down
      logger.info('relay stopped', { relay: relay.id, ...totals });
    });
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
