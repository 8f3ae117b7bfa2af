/**
 * The relay's HTTP surface, what `outbox relay --http [host:]port` serves: `/metrics`
 * (Prometheus), `/healthz` (the process answers) and `/readyz` (health.ts), plus whatever handlers
 * are mounted beside them (the dashboard). Usable from code with any relay.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { consoleLogger, type Logger } from '../relay/logger.js';
import { type CheckedRelay, type ReadinessOptions, type RelayReadiness, relayReadiness } from './health.js';
import { type ObservedRelay, type RelayMetrics, type RelayMetricsOptions, relayMetrics } from './metrics.js';
import { PROMETHEUS_CONTENT_TYPE } from './prometheus.js';
import { type HttpHandler, type HttpServer, pathOf, sendJson, startHttpServer } from './server.js';

/** The port of `outbox relay --http` examples and of OpenTelemetry's Prometheus exporter. */
export const DEFAULT_RELAY_HTTP_PORT = 9464;

/** What the server reads from a relay (a `Relay` is one). */
export type ServedRelay = ObservedRelay & CheckedRelay;

export interface RelayServerOptions extends RelayMetricsOptions, ReadinessOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 9464; 0 = any free port. */
  readonly port?: number;
  /** More handlers, offered what the relay's three paths do not take (the dashboard's, say). */
  readonly handlers?: readonly HttpHandler[];
  /** For readiness changes and failed handlers (default: JSON lines on stderr). */
  readonly logger?: Logger;
}

export interface RelayServer extends HttpServer {
  readonly metrics: RelayMetrics;
  readonly readiness: RelayReadiness;
}

/**
 * The handler of `/metrics`, `/healthz` and `/readyz` (GET or HEAD), to mount on a server of
 * your own; it takes no other path.
 */
export function relayHandler(metrics: RelayMetrics, readiness: RelayReadiness): HttpHandler {
  return async (request: IncomingMessage, response: ServerResponse) => {
    const path = pathOf(request);
    if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') return false;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      return sendJson(response, 405, { error: 'use GET' });
    }
    if (path === '/healthz') return sendJson(response, 200, { status: 'ok' });
    if (path === '/readyz') {
      const report = await readiness.check();
      return sendJson(response, report.ready ? 200 : 503, report);
    }
    const text = await metrics.render();
    response
      .writeHead(200, {
        'Content-Type': PROMETHEUS_CONTENT_TYPE,
        'Content-Length': Buffer.byteLength(text),
        'Cache-Control': 'no-store',
      })
      .end(request.method === 'HEAD' ? undefined : text);
    return true;
  };
}

/**
 * Serves a relay's metrics, health and readiness until close() (which leaves the relay running).
 * Start it before or after the relay: until the relay runs, `/readyz` answers 503.
 * @example
 * const relay = outbox.relay();
 * const http = await serveRelay(relay, { port: 9464 });
 * await relay.start();
 * // on shutdown:
 * await relay.stop();
 * await http.close();
 */
export async function serveRelay(relay: ServedRelay, options: RelayServerOptions = {}): Promise<RelayServer> {
  const log = options.logger ?? consoleLogger();
  const metrics = relayMetrics(relay, options);
  const readiness = relayReadiness(relay, log, options);
  let server: HttpServer;
  try {
    server = await startHttpServer({
      host: options.host,
      port: options.port ?? DEFAULT_RELAY_HTTP_PORT,
      handlers: [relayHandler(metrics, readiness), ...(options.handlers ?? [])],
      logger: log,
    });
  } catch (error) {
    metrics.close();
    readiness.close();
    throw error;
  }
  return {
    url: server.url,
    host: server.host,
    port: server.port,
    metrics,
    readiness,
    async close() {
      await server.close();
      metrics.close();
      readiness.close();
    },
  };
}
