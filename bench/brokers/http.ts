/**
 * HTTP webhooks in the brokers scenario: a node:http receiver in a child process
 * (bench/brokers/http-receiver.ts), destinations `outbox-bench-<tag>.<type>` as the URL path. The
 * raw client is the built-in fetch (what src/publishers/http.ts uses) POSTing the same body and
 * headers (CloudEvents attributes, Idempotency-Key), counted on a 2xx, with as many requests in
 * flight as our publisher allows per call (its default concurrency). The receiver records each
 * request before it answers, so its count is exact once the publishes are acknowledged; it also
 * gives the ids in arrival order (the per-key order check).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { cloudEventAttributes } from '../../src/core/envelope.js';
import { HTTP_PUBLISHER_DEFAULTS, httpPublisher } from '../../src/publishers/http.js';
import { type BenchEnv, onCleanup } from '../env.js';
import type { BrokerBench, Delivered } from './broker.js';
import type { FromReceiver, ToReceiver } from './http-receiver.js';

const START_TIMEOUT_MS = 10_000;

/** The receiver's port, from its first message. */
async function listeningPort(child: ChildProcess): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the HTTP receiver did not start')), START_TIMEOUT_MS);
  });
  try {
    const [message] = (await Promise.race([once(child, 'message'), timeout])) as [FromReceiver];
    if (message.type !== 'listening') throw new Error('the HTTP receiver did not say where it listens');
    return message.port;
  } finally {
    clearTimeout(timer);
  }
}

export async function openHttp(env: BenchEnv): Promise<BrokerBench> {
  const prefix = `outbox-bench-${env.tag}`;
  const child = fork(new URL('./http-receiver.js', import.meta.url).pathname, [`/${prefix}.`], {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unhook();
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    if (child.connected) child.disconnect();
    else child.kill('SIGKILL');
    await exited;
  };
  const unhook = onCleanup(close);
  let port: number;
  try {
    port = await listeningPort(child);
  } catch (error) {
    await close();
    throw error;
  }
  const base = `http://127.0.0.1:${port}`;

  const take = async (): Promise<string[]> => {
    const answer = once(child, 'message') as Promise<[FromReceiver]>;
    child.send({ type: 'take' } satisfies ToReceiver);
    const [message] = await answer;
    if (message.type !== 'taken') throw new Error('HTTP receiver: unexpected answer');
    return message.ids;
  };

  return {
    label: 'HTTP webhook (node:http receiver)',
    prefix,
    rawNote: `fetch alone: the same POSTs (body, CloudEvents headers, Idempotency-Key), counted on a 2xx, keep-alive`,
    verifyNote: 'the receiver’s count of requests',
    publisher: () => httpPublisher({ url: `${base}/{destination}` }),
    async openRaw() {
      return {
        window: HTTP_PUBLISHER_DEFAULTS.concurrency,
        async publish(m) {
          const headers = new Headers(cloudEventAttributes(m, 'outbox'));
          headers.set('idempotency-key', m.id);
          const response = await fetch(`${base}/${m.destination}`, {
            method: 'POST',
            headers,
            body: m.payload,
            redirect: 'manual',
          });
          await response.arrayBuffer();
          if (!response.ok) throw new Error(`HTTP receiver answered ${response.status}`);
        },
        async close() {},
      };
    },
    async delivered(_expected, withIds): Promise<Delivered> {
      const ids = await take();
      return withIds ? { count: ids.length, ids } : { count: ids.length };
    },
    async reset() {
      await take();
    },
    close,
  };
}
