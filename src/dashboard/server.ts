/** The dashboard on its own HTTP server, for `outbox dashboard` (the relay's `--http` mounts the handler). */
import type { Store } from '../core/ports.js';
import { startHttpServer } from '../http/server.js';
import { type DashboardOptions, dashboardHandler, normalizePrefix } from './handler.js';

export const DEFAULT_DASHBOARD_HOST = '127.0.0.1';
export const DEFAULT_DASHBOARD_PORT = 9465;

export interface DashboardServerOptions extends DashboardOptions {
  /** Default 127.0.0.1: anything else exposes the outbox's contents to the network. */
  readonly host?: string;
  /** Default 9465; 0 = any free port (see `url`). */
  readonly port?: number;
}

export interface DashboardServer {
  /** Where the page is, without the token. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** `http://host:port/`, with IPv6 literals in brackets. */
export function dashboardUrl(host: string, port: number, prefix = '/'): string {
  const name = host.includes(':') ? `[${host}]` : host;
  return `http://${name}:${port}${prefix}`;
}

/**
 * Serves the dashboard until close().
 * @example
 * const dashboard = await startDashboard(outbox, { port: 0 });
 * console.log(`open ${dashboard.url}`);
 */
export async function startDashboard(
  outbox: { readonly store: Store },
  options: DashboardServerOptions = {},
): Promise<DashboardServer> {
  const host = options.host ?? DEFAULT_DASHBOARD_HOST;
  const server = await startHttpServer({
    host,
    port: options.port ?? DEFAULT_DASHBOARD_PORT,
    handlers: [dashboardHandler(outbox, options)],
  });
  return {
    url: dashboardUrl(host, server.port, normalizePrefix(options.prefix)),
    port: server.port,
    close: () => server.close(),
  };
}
