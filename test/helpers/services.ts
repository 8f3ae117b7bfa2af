/**
 * The machine's real services, with URLs overridable by env. A suite whose service is down is
 * skipped with the reason printed; with CI=true it fails instead (a missing service is a broken
 * machine there, not a reason to pass).
 */
import { connect } from 'node:net';

export const PG_URL = process.env.OUTBOX_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const NATS_URL = process.env.OUTBOX_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
export const MARIADB_URL = process.env.OUTBOX_TEST_MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/test';

function reachable(url: string, defaultPort: number, timeoutMs = 1500): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: u.hostname, port: Number(u.port || defaultPort) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Resolves to a skip reason (string) when the service is unreachable outside CI, or undefined
 * when it is up. Under CI=true an unreachable service throws, failing the suite.
 */
export async function serviceSkipReason(
  name: string,
  url: string,
  defaultPort: number,
): Promise<string | undefined> {
  if (await reachable(url, defaultPort)) return undefined;
  const reason = `${name} is not reachable at ${url}`;
  if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: a missing service fails the suite)`);
  console.warn(`SKIPPED: ${reason}`);
  return reason;
}

export const pgSkip = () => serviceSkipReason('PostgreSQL', PG_URL, 5432);
export const natsSkip = () => serviceSkipReason('NATS', NATS_URL, 4222);
export const mariadbSkip = () => serviceSkipReason('MariaDB', MARIADB_URL, 3306);

/** A unique, valid SQL identifier for a per-test-file schema or table. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}
