/**
 * `outbox dashboard`: serves the web dashboard on 127.0.0.1 until SIGTERM or SIGINT. Read-only
 * unless `--allow-actions`; then retry and discard need a token, generated and printed in the
 * URL's fragment unless `--token` (OUTBOX_DASHBOARD_TOKEN) gives one.
 */
import { isIP } from 'node:net';
import { Command, Option } from 'commander';
import { OutboxError } from '../../core/errors.js';
import { generateToken, MIN_TOKEN_LENGTH } from '../../dashboard/handler.js';
import { DEFAULT_DASHBOARD_HOST, DEFAULT_DASHBOARD_PORT, startDashboard } from '../../dashboard/server.js';
import { createOutbox } from '../../outbox.js';
import { type CommonOptions, common, redactUrl, resolveConfig } from '../config.js';

interface DashboardFlags extends CommonOptions {
  host: string;
  port: string;
  allowActions?: boolean;
  token?: string;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535)
    throw new OutboxError('INVALID_CONFIG', `--port must be 0 to 65535, got "${value}"`);
  return n;
}

/**
 * commander turns a boolean flag on whenever its env twin is set, whatever the value: for the
 * switch that allows actions, "false" must mean false.
 */
function envFlag(name: string): boolean {
  const value = process.env[name]?.trim().toLowerCase();
  if (value === undefined || value === '' || value === '0' || value === 'false') return false;
  if (value === '1' || value === 'true') return true;
  throw new OutboxError('INVALID_CONFIG', `${name} must be true or false, got "${process.env[name]}"`);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

export function dashboardCommand(): Command {
  return common(new Command('dashboard'))
    .description('serve the web dashboard: flow, lag, destinations, relays, dead letters')
    .addOption(
      new Option('--host <address>', 'address to listen on')
        .default(DEFAULT_DASHBOARD_HOST)
        .env('OUTBOX_DASHBOARD_HOST'),
    )
    .addOption(
      new Option('--port <n>', 'port to listen on (0: any free port)')
        .default(String(DEFAULT_DASHBOARD_PORT))
        .env('OUTBOX_DASHBOARD_PORT'),
    )
    .option(
      '--allow-actions',
      'allow retry and discard of dead letters, with a token (env: OUTBOX_DASHBOARD_ALLOW_ACTIONS=true)',
    )
    .addOption(
      new Option(
        '--token <secret>',
        `token for actions, ≥ ${MIN_TOKEN_LENGTH} characters (default: generated)`,
      ).env('OUTBOX_DASHBOARD_TOKEN'),
    )
    .action(async (flags: DashboardFlags) => {
      const config = resolveConfig(flags);
      const allowActions = flags.allowActions === true || envFlag('OUTBOX_DASHBOARD_ALLOW_ACTIONS');
      const token = allowActions ? flags.token || generateToken() : undefined;
      // Listening for the signals before the URL is printed: a SIGTERM sent as soon as it appears
      // must stop the server gracefully, not kill the process.
      const stopped = new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      const outbox = createOutbox(config);
      let dashboard: Awaited<ReturnType<typeof startDashboard>>;
      try {
        await outbox.store.checkSchema();
        const database = typeof config.database === 'string' ? { url: config.database } : config.database;
        dashboard = await startDashboard(outbox, {
          host: flags.host,
          port: port(flags.port),
          allowActions,
          token,
          retainPublished: database.retainPublished === true,
        });
        const shown = flags.token ? '<your --token>' : token;
        console.log(
          [
            `outbox dashboard for ${redactUrl(database.url)}`,
            allowActions ? `${dashboard.url}#token=${shown}` : dashboard.url,
            allowActions
              ? 'actions allowed (retry, discard): the token is the part after #, keep it secret'
              : 'read-only (--allow-actions to retry and discard dead letters)',
          ].join('\n'),
        );
        if (!isLoopback(flags.host)) {
          process.stderr.write(
            `outbox: warning: listening on ${flags.host}: anyone who reaches this port sees event types, keys and errors, over plain HTTP\n`,
          );
        }
      } catch (error) {
        await outbox.close();
        throw error;
      }
      await stopped;
      await dashboard.close();
      await outbox.close();
    });
}
