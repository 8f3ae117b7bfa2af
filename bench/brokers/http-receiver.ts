/**
 * The webhook receiver of the brokers scenario, in its own process (forked by bench/brokers/http.ts)
 * so that it does not share an event loop with the relay under test: node:http with keep-alive,
 * every POST under `/<path prefix>` read to the end and answered 204, its `ce-id` header recorded
 * in arrival order; anything else answered 404 (which our publisher dead-letters: the run fails).
 * On 'take' it sends the ids recorded since the last 'take'.
 */
import { createServer } from 'node:http';

export type ToReceiver = { readonly type: 'take' };
export type FromReceiver =
  | { readonly type: 'listening'; readonly port: number }
  | { readonly type: 'taken'; readonly ids: string[] };

const pathPrefix = process.argv[2] ?? '/';
let ids: string[] = [];
const send = (message: FromReceiver) => process.send?.(message);

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.method !== 'POST' || !req.url?.startsWith(pathPrefix)) {
      res.writeHead(404).end();
      return;
    }
    ids.push(String(req.headers['ce-id']));
    res.writeHead(204).end();
  });
});
// Longer than any pause between the scenario's phases: connections stay open, as to a busy receiver.
server.keepAliveTimeout = 120_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  send({ type: 'listening', port: typeof address === 'object' && address ? address.port : 0 });
});

process.on('message', (message: ToReceiver) => {
  if (message.type !== 'take') return;
  const taken = ids;
  ids = [];
  send({ type: 'taken', ids: taken });
});
// The bench going away (or closing it) ends the receiver.
process.on('disconnect', () => process.exit(0));
