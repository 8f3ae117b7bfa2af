/**
 * The dashboard as one request handler, for `outbox dashboard`'s own server or any node:http
 * server (the relay's `--http`): the page, its script and style, and the JSON API under a prefix.
 *
 * Security model: reads are open to whoever reaches the port (bind to loopback, the default).
 * Retry and discard exist only with `allowActions`, and then need the token in an
 * `Authorization: Bearer` header, compared in constant time; the page takes it from the URL
 * fragment, which browsers never send to a server. Actions are JSON POSTs from the same origin:
 * a cross-site form or fetch is refused before the token is even looked at. On a loopback socket
 * only loopback host names are served, so a DNS-rebound site cannot read the API either.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { describeError, OutboxError } from '../core/errors.js';
import type { Store } from '../core/ports.js';
import type { BatchReport } from '../relay/relay.js';
import { act, deadLetters, leaseView, type PublishedSource, summary } from './api.js';
import { CHART_JS } from './assets/chart-js.js';
import { DASHBOARD_HTML } from './assets/page-html.js';
import { DASHBOARD_JS } from './assets/script-js.js';
import { DASHBOARD_CSS } from './assets/style-css.js';

/** A relay whose batches the page may count (a `Relay` is one). */
export interface RelayLike {
  on(event: 'batch', listener: (report: BatchReport) => void): unknown;
}

export interface DashboardOptions {
  /** Serve retry and discard (default false: read-only). Needs `token`. */
  readonly allowActions?: boolean;
  /** The secret the page must send with every action; at least 16 characters. */
  readonly token?: string;
  /** Where the dashboard lives on the server (default '/'). */
  readonly prefix?: string;
  /** Published rows are kept (`retainPublished`): the page's publish rate then covers every relay. */
  readonly retainPublished?: boolean;
  /** The relay serving the page: its published events give the rate when rows are not retained. */
  readonly relay?: RelayLike;
}

/** Resolves true when it answered the request, false when the path is not the dashboard's. */
export type DashboardHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export const MIN_TOKEN_LENGTH = 16;
const MAX_BODY_BYTES = 64 * 1024;

/** A random token for `--allow-actions` when none is given: 192 bits, URL-safe. */
export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Constant-time, whatever the lengths: both sides are hashed to the same size first. */
export function sameToken(given: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

const STATIC = new Map([
  ['', { body: DASHBOARD_HTML, type: 'text/html; charset=utf-8' }],
  ['index.html', { body: DASHBOARD_HTML, type: 'text/html; charset=utf-8' }],
  ['chart.js', { body: CHART_JS, type: 'text/javascript; charset=utf-8' }],
  ['dashboard.js', { body: DASHBOARD_JS, type: 'text/javascript; charset=utf-8' }],
  ['dashboard.css', { body: DASHBOARD_CSS, type: 'text/css; charset=utf-8' }],
]);

const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

function send(res: ServerResponse, status: number, type: string, body: string, extra = {}): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': CONTENT_SECURITY_POLICY,
    ...extra,
  });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown, extra = {}): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value), extra);
}

export function normalizePrefix(prefix = '/'): string {
  const withSlashes = `/${prefix}/`.replace(/\/{2,}/g, '/');
  if (!/^[/A-Za-z0-9._~-]+$/.test(withSlashes)) {
    throw new OutboxError('INVALID_CONFIG', `dashboard prefix "${prefix}" must be a plain URL path`);
  }
  return withSlashes;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** On a loopback socket, the Host header must name loopback too: a DNS-rebound name is refused. */
function hostAllowed(req: IncomingMessage): boolean {
  if (!isLoopbackAddress(req.socket.localAddress)) return true;
  const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
  return LOOPBACK_NAMES.has(host) || (isIP(host) === 4 && host.startsWith('127.'));
}

/** Why a POST is not from the page itself, or undefined when it is. */
function crossOrigin(req: IncomingMessage): string | undefined {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `Sec-Fetch-Site: ${site}`;
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  const host = req.headers.host;
  if (origin !== `http://${host}` && origin !== `https://${host}`) return `Origin ${origin}`;
  return undefined;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new OutboxError('INVALID_CONFIG', 'body: larger than 64 KiB');
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new OutboxError('INVALID_CONFIG', 'body: not valid JSON');
  }
}

function publishedCounter(options: DashboardOptions): {
  total(): number | null;
  source: PublishedSource | null;
} {
  if (options.retainPublished) return { total: () => null, source: 'retained rows' };
  if (!options.relay) return { total: () => null, source: null };
  let published = 0;
  options.relay.on('batch', (report) => {
    published += report.published.length;
  });
  return { total: () => published, source: 'this relay' };
}

/**
 * The dashboard's request handler.
 * @example
 * const handle = dashboardHandler(outbox, { allowActions: true, token });
 * createServer(async (req, res) => {
 *   if (!(await handle(req, res))) res.writeHead(404).end();
 * }).listen(9465, '127.0.0.1');
 */
export function dashboardHandler(
  outbox: { readonly store: Store },
  options: DashboardOptions = {},
): DashboardHandler {
  const { store } = outbox;
  const allowActions = options.allowActions ?? false;
  const token = options.token;
  if (allowActions && (token === undefined || token.length < MIN_TOKEN_LENGTH)) {
    throw new OutboxError(
      'INVALID_CONFIG',
      `dashboard actions need a token of at least ${MIN_TOKEN_LENGTH} characters`,
    );
  }
  const prefix = normalizePrefix(options.prefix);
  const published = publishedCounter(options);

  async function post(req: IncomingMessage, res: ServerResponse, action: 'retry' | 'discard') {
    if (!allowActions) {
      return json(res, 403, { error: 'read-only dashboard: start it with --allow-actions to act' });
    }
    const foreign = crossOrigin(req);
    if (foreign) return json(res, 403, { error: `cross-origin request refused (${foreign})` });
    const auth = req.headers.authorization ?? '';
    const given = /^Bearer (.+)$/.exec(auth)?.[1];
    if (given === undefined || !sameToken(given, token!)) {
      return json(
        res,
        401,
        { error: 'missing or wrong token' },
        { 'WWW-Authenticate': 'Bearer realm="outbox"' },
      );
    }
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return json(res, 415, { error: 'send JSON (Content-Type: application/json)' });
    }
    return json(res, 200, await act(store, action, await readJson(req)));
  }

  async function route(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    const method = req.method ?? 'GET';
    const asset = STATIC.get(path);
    const read = method === 'GET' || method === 'HEAD';
    if (asset && read) {
      send(res, 200, asset.type, asset.body);
      return true;
    }
    const query = new URLSearchParams(req.url?.split('?')[1] ?? '');
    const reads = new Map<string, () => Promise<unknown>>([
      ['api/summary', () => summary(store, allowActions, published)],
      ['api/leases', () => leaseView(store)],
      ['api/dead', () => deadLetters(store, query)],
    ]);
    const answer = reads.get(path);
    if (answer) {
      if (!read) json(res, 405, { error: 'use GET' }, { Allow: 'GET' });
      else json(res, 200, await answer());
      return true;
    }
    if (path === 'api/dead/retry' || path === 'api/dead/discard') {
      if (method !== 'POST') json(res, 405, { error: 'use POST' }, { Allow: 'POST' });
      else await post(req, res, path === 'api/dead/retry' ? 'retry' : 'discard');
      return true;
    }
    return false;
  }

  return async (req, res) => {
    const pathname = (req.url ?? '/').split('?')[0]!;
    if (prefix !== '/' && pathname === prefix.slice(0, -1)) {
      res.writeHead(308, { Location: prefix }).end();
      return true;
    }
    if (!pathname.startsWith(prefix)) return false;
    const path = pathname.slice(prefix.length);
    if (!STATIC.has(path) && !path.startsWith('api/')) return false;
    if (!hostAllowed(req)) {
      json(res, 403, { error: 'this dashboard answers to localhost only (Host header refused)' });
      return true;
    }
    try {
      return await route(req, res, path);
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return true;
      }
      const bad = error instanceof OutboxError && error.code === 'INVALID_CONFIG';
      json(res, bad ? 400 : 503, { error: describeError(error) });
      return true;
    }
  };
}
