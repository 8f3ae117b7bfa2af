/**
 * The demo's webhook receiver: a real HTTP server on loopback that verifies each signature and
 * records what arrives. It can be switched to answer 503, or to refuse connections outright.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhookSignature } from '../../publishers/http.js';
import type { Reception } from '../../testing/delivery-check.js';

export type ReceiverMode = 'up' | '503' | 'refusing';

export interface DemoReceiver {
  readonly url: string;
  readonly mode: ReceiverMode;
  /** Every accepted delivery, in arrival order (duplicates included). */
  readonly receptions: Reception[];
  readonly badSignatures: number;
  setMode(mode: ReceiverMode): Promise<void>;
  close(): Promise<void>;
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function startDemoReceiver(secret: string): Promise<DemoReceiver> {
  let mode: ReceiverMode = 'up';
  let badSignatures = 0;
  const receptions: Reception[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (mode === '503') {
        res.writeHead(503, { 'retry-after': '1' }).end('maintenance');
        return;
      }
      const body = Buffer.concat(chunks);
      if (!verifyWebhookSignature({ secret, headers: req.headers, body })) {
        badSignatures++;
        res.writeHead(401).end('bad signature');
        return;
      }
      receptions.push({
        id: String(req.headers['ce-id']),
        key: String(req.headers['ce-partitionkey']),
        at: Date.now(),
      });
      res.writeHead(204).end();
    });
  });
  const port = await listen(server, 0);
  return {
    url: `http://127.0.0.1:${port}/hooks/{destination}`,
    get mode() {
      return mode;
    },
    receptions,
    get badSignatures() {
      return badSignatures;
    },
    async setMode(next: ReceiverMode) {
      if (next === mode) return;
      if (next === 'refusing') await close(server);
      else if (mode === 'refusing') await listen(server, port);
      mode = next;
    },
    async close() {
      if (mode !== 'refusing') await close(server);
    },
  };
}
