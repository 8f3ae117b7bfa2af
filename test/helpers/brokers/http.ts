/**
 * The HTTP harness: a real webhook receiver on a random port. Each destination is a path it
 * accepts (204); any other path is a 404, which the publisher must report as a failure. Its
 * outage is a private receiver closed and opened again on the same port; its lost ack a
 * destination whose requests are recorded and then answered by a reset instead of a status.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { httpPublisher } from '../../../src/publishers/http.js';
import type { HarnessFactory, Received } from '../../conformance/publisher.suite.js';
import { uniqueName } from '../services.js';
import { collector } from './collector.js';
import { decodeCloudEvent } from './decode.js';

async function bodyOf(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const TRANSPORT = ['host', 'connection', 'content-length', 'idempotency-key', 'user-agent', 'accept'];

/** What a receiver makes of a request: headers of the transport and the signature left out. */
function decodeRequest(destination: string, req: IncomingMessage, body: string): Received {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers))
    if (typeof value === 'string') headers[name] = value;
  const ignore = [...TRANSPORT, ...Object.keys(headers).filter((h) => /^(accept-|sec-|webhook-)/.test(h))];
  return decodeCloudEvent(destination, headers, body, ignore);
}

/**
 * A receiver on `port` (0: any) that hands each request to `routes` by its path; an unknown path
 * is a 404. A route returning 'reset' gets no answer: its connection is destroyed.
 */
async function receiver(
  routes: Map<string, (r: Received) => 'reset' | undefined>,
  port = 0,
): Promise<{ server: Server; port: number }> {
  const server = createServer(async (req, res) => {
    const destination = decodeURIComponent((req.url ?? '/').slice(1));
    const body = await bodyOf(req);
    const deliver = routes.get(destination);
    if (!deliver) res.writeHead(404).end('no such hook');
    else if (deliver(decodeRequest(destination, req, body)) === 'reset') req.socket.resetAndDestroy();
    else res.writeHead(204).end();
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export const httpHarness: HarnessFactory = async () => {
  const routes = new Map<string, (r: Received) => 'reset' | undefined>();
  const { server, port } = await receiver(routes);
  const url = `http://127.0.0.1:${port}/{destination}`;
  const consume = async (destination: string) => {
    const { consumer, push } = collector(async () => {
      routes.delete(destination);
    });
    routes.set(destination, (r) => {
      push(r);
      return undefined;
    });
    return consumer;
  };
  return {
    label: 'http (webhook receiver)',
    capabilities: { dedupeById: false, unknownDestination: true, structured: true },
    publisher: (mode) => httpPublisher({ url, mode }),
    destination: async (name) => `hooks/${uniqueName(name)}`,
    unknownDestination: async () => `nowhere/${uniqueName('x')}`,
    consume,
    async outage() {
      const destination = `hooks/${uniqueName('outage')}`;
      const own = new Map<string, (r: Received) => 'reset' | undefined>();
      const { consumer, push } = collector(async () => undefined);
      own.set(destination, (r) => {
        push(r);
        return undefined;
      });
      let current = await receiver(own);
      return {
        // While the receiver is down its port refuses connections: publishes fail at once, and are retried.
        publisher: httpPublisher({ url: `http://127.0.0.1:${current.port}/{destination}`, timeoutMs: 2000 }),
        destination,
        consumer,
        stop: () => closeServer(current.server),
        async start() {
          current = await receiver(own, current.port);
        },
        close: () => closeServer(current.server),
      };
    },
    async lostAck() {
      const destination = `hooks/${uniqueName('lostack')}`;
      const { consumer, push } = collector(async () => {
        routes.delete(destination);
      });
      let lose = false;
      routes.set(destination, (r) => {
        push(r);
        return lose ? 'reset' : undefined;
      });
      return {
        publisher: httpPublisher({ url, timeoutMs: 5000 }),
        destination,
        consumer,
        loseReplies() {
          lose = true;
        },
        cut() {
          lose = false; // the request whose answer was lost has had its connection reset already
        },
        close: () => consumer.close(),
      };
    },
    close: () => closeServer(server),
  };
};
