/**
 * Relays in child processes (bench/relay-process.ts): fork them, start them together, time the
 * drain until the table is empty, stop them and collect what they saw. Children are killed if
 * the bench is interrupted, and exit by themselves if the bench dies.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { onCleanup } from './env.js';
import type { FromChild, Receptions, RelayProcessConfig, ToChild } from './relay-process.js';
import { progress } from './report.js';
import { STALL_MS } from './timed-drain.js';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 30_000;

export interface RelayChild {
  readonly pid: number;
  /**
   * Events its relay reported published, fenced (settle refused) and skipped, so far; and
   * partitions it gave back or lost.
   */
  readonly counts: { published: number; fenced: number; skipped: number; givenUp: number };
  ready(): Promise<void>;
  go(): void;
  /** Graceful stop; resolves to its receptions once it has exited. */
  stop(): Promise<{ receptions: Receptions; errors: number }>;
  /** Rejects when the child fails or exits before being told to stop. */
  readonly failed: Promise<never>;
}

export function forkRelay(config: RelayProcessConfig): RelayChild {
  const child: ChildProcess = fork(
    new URL('./relay-process.js', import.meta.url).pathname,
    [JSON.stringify(config)],
    {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  const unhook = onCleanup(async () => {
    child.kill('SIGKILL');
  });
  const counts = { published: 0, fenced: 0, skipped: 0, givenUp: 0 };
  let stopping = false;
  let onReady: (() => void) | undefined;
  let onStopped: ((m: { receptions: Receptions; errors: number }) => void) | undefined;
  let reject: (error: Error) => void = () => {};
  const failed = new Promise<never>((_, r) => {
    reject = r;
  });
  failed.catch(() => {});
  child.on('message', (message: FromChild) => {
    switch (message.type) {
      case 'ready':
        onReady?.();
        break;
      case 'batch':
        counts.published += message.published;
        counts.fenced += message.fenced;
        counts.skipped += message.skipped;
        break;
      case 'lease':
        if (message.change !== 'acquired') counts.givenUp += message.partitions;
        break;
      case 'stopped':
        onStopped?.(message);
        break;
      case 'failed':
        reject(new Error(`relay ${config.relayId} (pid ${child.pid}) failed: ${message.error}`));
        break;
    }
  });
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      unhook();
      if (!stopping) reject(new Error(`relay ${config.relayId} exited early (${signal ?? code})`));
      resolve();
    });
  });
  const readyPromise = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  return {
    pid: child.pid ?? -1,
    counts,
    failed,
    ready: () => within(Promise.race([readyPromise, failed]), READY_TIMEOUT_MS, `${config.relayId} ready`),
    go: () => child.send({ type: 'go' } satisfies ToChild),
    async stop() {
      stopping = true;
      const stopped = new Promise<{ receptions: Receptions; errors: number }>((resolve) => {
        onStopped = resolve;
      });
      child.send({ type: 'stop' } satisfies ToChild);
      const result = await within(Promise.race([stopped, failed]), STOP_TIMEOUT_MS, `${config.relayId} stop`);
      await exited;
      return result;
    },
  };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resident set size of a process in MB (Linux /proc), undefined when it cannot be read. */
export function rssMb(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ChildrenDrainOptions {
  /** Rows still in the table: the drain ends when this is 0. */
  countLeft(): Promise<number>;
  /** Called every `tickMs` while draining (e.g. to sample memory), with the published total. */
  onTick?(published: number): void;
  /** Called every few ms with the published total. */
  onProgress?(published: number): void;
  readonly tickMs?: number;
}

/**
 * Times, from now, until the children (started by the caller) have published `total` and the
 * table is empty (duplicates after a lease hand-over may make the published count run ahead of it).
 */
export async function timeChildrenDrain(
  label: string,
  total: number,
  children: readonly RelayChild[],
  options: ChildrenDrainOptions,
): Promise<number> {
  const line = progress(label);
  const published = () => children.reduce((sum, c) => sum + c.counts.published, 0);
  const tickMs = options.tickMs ?? 1_000;
  const startedAt = performance.now();
  let lastTickAt = startedAt;
  let lastProgressAt = startedAt;
  let lastPublished = 0;
  const failure = Promise.race(children.map((c) => c.failed));
  let over = false;
  const watch = (async () => {
    while (!over) {
      await sleep(published() >= total ? 10 : 5);
      const now = performance.now();
      const n = published();
      if (n !== lastPublished) [lastPublished, lastProgressAt] = [n, now];
      options.onProgress?.(n);
      if (now - lastTickAt >= tickMs) {
        lastTickAt = now;
        options.onTick?.(n);
        const rate = Math.round(n / ((now - startedAt) / 1_000));
        line.update(`${n.toLocaleString('en-US')}/${total.toLocaleString('en-US')} (${rate}/s)`);
      }
      if (now - lastProgressAt > STALL_MS) throw new Error(`${label}: no progress for ${STALL_MS} ms`);
      if (n >= total && (await options.countLeft()) === 0) return performance.now() - startedAt;
    }
    return Number.NaN;
  })();
  const ms = await Promise.race([watch, failure]).finally(() => {
    over = true;
  });
  options.onTick?.(published());
  line.done(`${total.toLocaleString('en-US')} in ${(ms / 1_000).toFixed(2)} s`);
  return ms;
}
