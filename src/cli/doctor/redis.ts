/**
 * `outbox doctor` behind a Redis Streams publisher: the relay deletes an event once Redis has
 * acknowledged its XADD, so a Redis without its append-only file loses every event acknowledged
 * since its last snapshot when it restarts. Asks the server (CONFIG GET) through the publisher's
 * URL; changes nothing.
 */
import { describeError, OutboxError } from '../../core/errors.js';
import { redactUrl } from '../config.js';
import { type Check, ok } from './checks.js';

const CONNECT_TIMEOUT_MS = 5000;

/** The redis:// and rediss:// publishers of a configuration, by name. */
export function redisPublishers(
  publishers: Readonly<Record<string, unknown>> | undefined,
): [string, string][] {
  const urls: [string, string][] = [];
  for (const [name, entry] of Object.entries(publishers ?? {})) {
    const url = typeof entry === 'string' ? entry : (entry as { url?: unknown } | null)?.url;
    if (typeof url === 'string' && /^rediss?:\/\//i.test(url)) urls.push([name, url]);
  }
  return urls;
}

export async function redisAofCheck(name: string, url: string): Promise<Check> {
  const id = `redis-aof.${name}`;
  let redis: typeof import('redis');
  try {
    redis = await import('redis');
  } catch (cause) {
    throw new OutboxError(
      'DRIVER_MISSING',
      'outbox doctor needs the "redis" package to check a Redis publisher: npm install redis',
      {
        cause,
      },
    );
  }
  const client = redis.createClient({
    url,
    socket: { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: false },
  });
  client.on('error', () => {}); // the awaited calls below report it
  const where = `publisher "${name}" (${redactUrl(url)})`;
  try {
    await client.connect();
    const config = await client.configGet('append*');
    const appendonly = config.appendonly;
    const fsync = config.appendfsync;
    const details = { appendonly: appendonly ?? null, appendfsync: fsync ?? null };
    if (appendonly !== 'yes') {
      return {
        id,
        status: 'fail',
        summary: `Redis behind ${where} runs without its append-only file (appendonly ${appendonly ?? 'unknown'}): a restart loses every event it acknowledged since its last snapshot, and the outbox has already deleted them`,
        fix: 'CONFIG SET appendonly yes, and appendonly yes + appendfsync everysec (or always) in redis.conf so it survives a restart',
        details,
      };
    }
    if (fsync === 'no') {
      return {
        id,
        status: 'warn',
        summary: `Redis behind ${where} has AOF on but appendfsync no: the OS flushes it when it likes, so a power loss can drop recent acknowledged events`,
        fix: 'CONFIG SET appendfsync everysec (or always), and the same in redis.conf',
        details,
      };
    }
    return ok(
      id,
      `Redis behind ${where} keeps an append-only file (appendfsync ${fsync ?? 'unknown'})`,
      details,
    );
  } catch (error) {
    return {
      id,
      status: 'warn',
      summary: `could not ask Redis behind ${where} about its persistence: ${describeError(error)}`,
      fix: 'make sure the server is reachable and allows CONFIG GET; on a managed Redis, check in its console that AOF persistence is on',
    };
  } finally {
    if (client.isOpen) await client.close().catch(() => undefined);
  }
}
