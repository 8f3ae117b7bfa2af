/**
 * Broker servers a test starts for itself on a random loopback port, so that it may stop them
 * (the machine's shared services are never stopped outside `npm run test:chaos`). Each keeps its
 * data in a directory the test gives, so a restart on the same port and directory is the same
 * broker coming back.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const NATS_SERVER = process.env.OUTBOX_TEST_NATS_SERVER ?? '/usr/sbin/nats-server';
export const MOSQUITTO = process.env.OUTBOX_TEST_MOSQUITTO ?? '/usr/sbin/mosquitto';
export const REDIS_SERVER = process.env.OUTBOX_TEST_REDIS_SERVER ?? 'redis-server';

/**
 * Why `command` cannot run here (not installed, not executable), or undefined when it can.
 * `probeArg` makes it exit at once; its exit status does not matter (`mosquitto -h` exits 3).
 */
export function missingBinary(command: string, probeArg = '--help'): string | undefined {
  const probe = spawnSync(command, [probeArg], { stdio: 'ignore', timeout: 10_000 });
  return probe.error ? `${command} cannot run here (${probe.error.message})` : undefined;
}

/** A free loopback port (the OS picks it; closed again before the server binds it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function accepts(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.once('connect', () => done(true)).once('error', () => done(false));
    socket.setTimeout(500, () => done(false));
  });
}

/** Resolves once `port` accepts connections; throws if `child` exits first or 20 s pass. */
async function listening(child: ChildProcess, port: number, name: string): Promise<ChildProcess> {
  for (const until = Date.now() + 20_000; Date.now() < until; ) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before listening on ${port}`);
    if (await accepts(port)) return child;
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`${name} did not listen on ${port} within 20 s`);
}

/** Sends `signal` and waits for the exit; nothing to do for a process already gone. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

/** nats-server with JetStream, its store in `dir`. Stop it with SIGTERM: it flushes its file store then. */
export async function startNatsServer(port: number, dir: string): Promise<ChildProcess> {
  const args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir, '-l', join(dir, 'nats.log')];
  return listening(spawn(NATS_SERVER, args, { stdio: 'ignore' }), port, 'nats-server');
}

/**
 * redis-server with AOF and an fsync per write: what it acknowledged survives even SIGKILL
 * (the shared Redis keeps nothing on disk).
 */
export async function startRedisServer(port: number, dir: string): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes'];
  const child = spawn(REDIS_SERVER, [...args, '--appendfsync', 'always', '--dir', dir], { stdio: 'ignore' });
  return listening(child, port, 'redis-server');
}

/**
 * Mosquitto with persistence in `dir`. Stop it with SIGTERM: it writes its persistence (sessions,
 * queued messages) on the way out, and a crash loses what it acked since its last autosave.
 */
export async function startMosquitto(port: number, dir: string, extra = ''): Promise<ChildProcess> {
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${dir}/`,
      // Mosquitto started as root drops to this user; the same user keeps the tmp dir writable.
      `user ${userInfo().username}`,
      extra,
    ].join('\n'),
  );
  return listening(spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' }), port, 'mosquitto');
}
