/**
 * A TCP proxy between a client and a real broker, for the network faults tests need: reset every
 * connection, refuse new ones for a while (an outage of a broker the test must not stop), or
 * lose the broker's replies while what the client sends still reaches it (a lost ack).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export class TcpProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  /** Client sockets whose broker → client bytes are dropped. */
  readonly #deaf = new WeakSet<Socket>();
  #port = 0;
  /** Connections accepted so far. */
  connections = 0;
  /** Set it to reset every connection right after the client's next bytes reach the broker. */
  cutAfterNextSend = false;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = createServer((client) => this.#relay(client));
  }

  /** A proxy on a random loopback port to `target`; `defaultPort` when its URL names none. */
  static async start(target: string, defaultPort: number): Promise<TcpProxy> {
    const u = new URL(target);
    const proxy = new TcpProxy({ host: u.hostname, port: Number(u.port || defaultPort) });
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    proxy.#port = (proxy.#server.address() as { port: number }).port;
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  /** `url` with its host and port replaced by the proxy's (credentials, path and query kept). */
  url(url: string): string {
    const u = new URL(url);
    u.host = `127.0.0.1:${this.#port}`;
    return u.toString();
  }

  #relay(client: Socket): void {
    this.connections += 1;
    const upstream = connect(this.#target);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.on('data', (data) => {
      if (!this.cutAfterNextSend) upstream.write(data);
      else {
        // The message is on its way and its reply cannot have come back yet.
        this.cutAfterNextSend = false;
        upstream.write(data, () => this.cut());
      }
    });
    upstream.on('data', (data) => {
      if (!this.#deaf.has(client)) client.write(data);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  /** The connections open now get no more bytes from the broker; later connections are not affected. */
  loseReplies(): void {
    for (const socket of this.#sockets) this.#deaf.add(socket);
  }

  /** Resets every open connection; the proxy keeps accepting new ones. */
  cut(): void {
    for (const socket of this.#sockets) socket.resetAndDestroy();
  }

  /** An outage: every connection reset, and new ones refused until accept(). */
  async refuse(): Promise<void> {
    const closed = new Promise((resolve) => this.#server.close(resolve));
    this.cut();
    await closed;
  }

  /** Accepts connections again, on the same port. */
  async accept(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    this.cut();
    if (this.#server.listening) await new Promise((resolve) => this.#server.close(resolve));
  }
}
