/**
 * A small node:http server that other modules extend with handlers: the relay's /metrics,
 * /healthz and /readyz (relay-server.ts), the dashboard. Each request is offered to the handlers
 * in order until one answers it; no taker is a 404. Binds to 127.0.0.1 unless told otherwise.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeError, OutboxError } from '../core/errors.js';
import { consoleLogger, type Logger } from '../relay/logger.js';

/**
 * Answers a request and resolves true, or resolves false without touching the response when the
 * request is not its own (its path, usually). A handler that throws gets a 500 for it.
 */
export type HttpHandler = (request: IncomingMessage, response: ServerResponse) => boolean | Promise<boolean>;

export const DEFAULT_HTTP_HOST = '127.0.0.1';

export interface HttpServerOptions {
  /** Default 127.0.0.1: anything else serves the network. */
  readonly host?: string;
  /** 0 = any free port (read it back from `port` or `url`). */
  readonly port: number;
  /** Tried in order for each request. */
  readonly handlers: readonly HttpHandler[];
  /** Where failed handlers are logged (default: JSON lines on stderr). */
  readonly logger?: Logger;
}

export interface HttpServer {
  /** `http://host:port`, IPv6 literals in brackets. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stops listening and closes every connection (keep-alive ones too). */
  close(): Promise<void>;
}

/**
 * Listens until close(). A port that cannot be had (in use, not allowed) is an INVALID_CONFIG
 * error naming the address.
 * @example
 * const server = await startHttpServer({
 *   port: 9464,
 *   handlers: [(req, res) => req.url === '/hello' && (res.end('hi'), true)],
 * });
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const host = options.host ?? DEFAULT_HTTP_HOST;
  const log = options.logger ?? consoleLogger();
  const handlers = [...options.handlers];
  const server: Server = createServer((request, response) => {
    void handle(handlers, request, response, log);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new OutboxError(
          'INVALID_CONFIG',
          `cannot listen on ${hostPort(host, options.port)}: ${error.code ?? describeError(error)}`,
          { cause: error },
        ),
      );
    });
    server.listen(options.port, host, () => {
      server.removeAllListeners('error');
      resolve();
    });
  });
  server.on('error', (error) => log.error('http server failed', { error: describeError(error) }));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${hostPort(host, port)}`,
    host,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Keep-alive connections (a scraper's, a browser's) would hold close() open until they time out.
        server.closeAllConnections();
      }),
  };
}

async function handle(
  handlers: readonly HttpHandler[],
  request: IncomingMessage,
  response: ServerResponse,
  log: Logger,
): Promise<void> {
  try {
    for (const handler of handlers) if (await handler(request, response)) return;
    sendJson(response, 404, { error: 'not found' });
  } catch (error) {
    log.error('http handler failed', {
      method: request.method,
      path: pathOf(request),
      error: describeError(error),
    });
    if (!response.headersSent) sendJson(response, 500, { error: 'internal error' });
    else response.destroy();
  }
}

/** The request's path, without its query. */
export function pathOf(request: IncomingMessage): string {
  const url = request.url ?? '/';
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}

/** Writes `body` as JSON with `status`; returns true (handled), for handlers to return. */
export function sendJson(response: ServerResponse, status: number, body: unknown): true {
  const text = `${JSON.stringify(body)}\n`;
  response
    .writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
      'Cache-Control': 'no-store',
    })
    .end(text);
  return true;
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * `[host:]port` as given to `--http`: `9464`, `:9464`, `0.0.0.0:9464`, `[::1]:9464`. The host
 * defaults to 127.0.0.1; port 0 takes any free one. INVALID_CONFIG when malformed.
 */
export function parseListenAddress(text: string, flag = '--http'): { host: string; port: number } {
  const match = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]\s]*):)?(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[2]);
  if (!match || port > 65_535) {
    throw new OutboxError(
      'INVALID_CONFIG',
      `${flag} must be [host:]port (e.g. :9464 or 0.0.0.0:9464), got "${text}"`,
    );
  }
  const host = match[1]?.replace(/^\[|\]$/g, '') || DEFAULT_HTTP_HOST;
  return { host, port };
}
