/**
 * The publisher suite's outage and lost-ack rigs, built alike for several brokers: an outage on a
 * private server the test starts on a free port (its data in a temp dir, so a restart is the same
 * broker coming back), a lost ack through a TCP proxy in front of the machine's server.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Publisher } from '../../../src/core/ports.js';
import type { Consumer, LossyPath, OutageRig } from '../../conformance/publisher.suite.js';
import { freePort, stopProcess } from '../private-servers.js';
import { TcpProxy } from '../tcp-proxy.js';

export interface PrivateServer {
  /** Names the temp dir. */
  readonly name: string;
  /** The URL scheme of its clients. */
  readonly scheme: string;
  start(port: number, dir: string): Promise<ChildProcess>;
  /** How `stop()` ends it: the signal that keeps what it acknowledged. */
  readonly signal: NodeJS.Signals;
}

/**
 * An outage of a private `server`: `rig` makes the publisher and consumer for its URL (and closes
 * what it opened for them); `stop()` and `start()` end the server and start it again.
 */
export async function privateServerOutage(
  server: PrivateServer,
  rig: (url: string) => Promise<Pick<OutageRig, 'publisher' | 'destination' | 'consumer' | 'close'>>,
): Promise<OutageRig> {
  const dir = mkdtempSync(join(tmpdir(), `outbox-${server.name}-`));
  const port = await freePort();
  let child = await server.start(port, dir);
  const made = await rig(`${server.scheme}://127.0.0.1:${port}`);
  return {
    ...made,
    stop: () => stopProcess(child, server.signal),
    async start() {
      child = await server.start(port, dir);
    },
    async close() {
      await made.close();
      await stopProcess(child, server.signal);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ProxiedPath {
  /** The machine's broker, and its port when the URL names none. */
  readonly url: string;
  readonly defaultPort: number;
  readonly destination: string;
  /** A consumer of `destination`, on the broker directly. */
  consume(destination: string): Promise<Consumer>;
  /** The publisher under test, on `url` (the proxy's). */
  publisher(url: string): Publisher;
}

/** A lost-ack path: the publisher's connections go through a TCP proxy, the consumer's do not. */
export async function proxiedLossyPath(path: ProxiedPath): Promise<LossyPath> {
  const proxy = await TcpProxy.start(path.url, path.defaultPort);
  const consumer = await path.consume(path.destination);
  return {
    publisher: path.publisher(proxy.url(path.url)),
    destination: path.destination,
    consumer,
    loseReplies: () => proxy.loseReplies(),
    cut: () => proxy.cut(),
    async close() {
      await consumer.close();
      await proxy.close();
    },
  };
}
