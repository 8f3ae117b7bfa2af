/**
 * The HTTP harness: a real webhook receiver on a random port. Each destination is a path it
 * accepts (204); any other path is a 404, which the publisher must report as a failure.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { httpPublisher } from '../../../src/publishers/http.js';
import type { HarnessFactory } from '../../conformance/publisher.suite.js';
import { uniqueName } from '../services.js';
import { collector } from './collector.js';
import { decodeCloudEvent } from './decode.js';

async function bodyOf(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export const httpHarness: HarnessFactory = async () => {
  const routes = new Map<string, (headers: Record<string, string>, body: string) => void>();
  const server = createServer(async (req, res) => {
    const destination = decodeURIComponent((req.url ?? '/').slice(1));
    const body = await bodyOf(req);
    const deliver = routes.get(destination);
    if (!deliver) {
      res.writeHead(404).end('no such hook');
      return;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers))
      if (typeof value === 'string') headers[name] = value;
    deliver(headers, body);
    res.writeHead(204).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/{destination}`;
  const transport = ['host', 'connection', 'content-length', 'idempotency-key', 'user-agent', 'accept'];
  return {
    label: 'http (webhook receiver)',
    capabilities: { dedupeById: false, unknownDestination: true, structured: true },
    publisher: (mode) => httpPublisher({ url, mode }),
    destination: async (name) => `hooks/${uniqueName(name)}`,
    unknownDestination: async () => `nowhere/${uniqueName('x')}`,
    async consume(destination) {
      const { consumer, push } = collector(async () => {
        routes.delete(destination);
      });
      routes.set(destination, (headers, body) => {
        const ignore = [
          ...transport,
          ...Object.keys(headers).filter((h) => /^(accept-|sec-|webhook-)/.test(h)),
        ];
        push(decodeCloudEvent(destination, headers, body, ignore));
      });
      return consumer;
    },
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
