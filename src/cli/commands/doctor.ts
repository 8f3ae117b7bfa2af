/**
 * `outbox doctor`: checks what breaks outboxes in production and says how to fix each one; exits
 * 1 when a check fails (with --strict, also on a warning), so it can gate a deploy.
 * `--print-config` shows every resolved setting and where it came from instead.
 */
import { Command, Option } from 'commander';
import type { DatabaseConfig } from '../../core/config.js';
import { createOutbox } from '../../outbox.js';
import {
  type CommonOptions,
  common,
  optionSources,
  type ResolvedSetting,
  redactUrl,
  resolveConfigWithSources,
} from '../config.js';
import type { Check, CheckStatus, DoctorOptions } from '../doctor/checks.js';
import { mysqlChecks } from '../doctor/mysql.js';
import { postgresChecks } from '../doctor/postgres.js';
import { redisAofCheck, redisPublishers } from '../doctor/redis.js';
import { sqliteChecks } from '../doctor/sqlite.js';
import { parseDuration } from './purge.js';
import { formatTable } from './status.js';

const DEFAULT_LONG_TRANSACTION = '5m';

/** What `outbox doctor --json` prints. */
export interface DoctorReport {
  /** No check failed (and, with --strict, none warned). */
  readonly ok: boolean;
  readonly database: { readonly dialect: string; readonly url: string };
  readonly checks: readonly Check[];
  readonly counts: Readonly<Record<CheckStatus, number>>;
}

interface DoctorFlags extends CommonOptions {
  json?: boolean;
  strict?: boolean;
  printConfig?: boolean;
  longTransaction: string;
}

export function doctorCommand(): Command {
  return common(new Command('doctor'), { broker: true })
    .description('check what breaks outboxes in production and how to fix it; exit 1 when a check fails')
    .option('--json', 'print the result as JSON')
    .option('--strict', 'exit 1 on warnings too')
    .addOption(
      new Option('--long-transaction <duration>', 'report transactions open longer than this')
        .default(DEFAULT_LONG_TRANSACTION)
        .env('OUTBOX_DOCTOR_LONG_TRANSACTION'),
    )
    .option(
      '--print-config',
      'print every resolved setting and where it came from (flag, env, file, default), then exit',
    )
    .action(async (flags: DoctorFlags, command: Command) => {
      const { config, settings } = resolveConfigWithSources(flags, optionSources(command));
      if (flags.printConfig) {
        console.log(flags.json ? JSON.stringify({ settings }) : formatSettings(settings));
        return;
      }
      const options: DoctorOptions = { longTransactionMs: parseDuration(flags.longTransaction) };
      // Builds nothing that connects: validates the whole configuration first (exit 2 when bad).
      await createOutbox(config).close();
      const database: DatabaseConfig =
        typeof config.database === 'string' ? { url: config.database } : config.database;
      const dialect = dialectOf(database.url);
      const checks = [
        ...(dialect === 'postgres'
          ? await postgresChecks(database, options)
          : dialect === 'mysql'
            ? await mysqlChecks(database, options)
            : await sqliteChecks(database)),
      ];
      for (const [name, url] of redisPublishers(config.publishers))
        checks.push(await redisAofCheck(name, url));
      const counts = { ok: 0, warn: 0, fail: 0 };
      for (const c of checks) counts[c.status]++;
      const report: DoctorReport = {
        ok: counts.fail === 0 && !(flags.strict && counts.warn > 0),
        database: { dialect, url: redactUrl(database.url) },
        checks,
        counts,
      };
      console.log(flags.json ? JSON.stringify(report) : formatReport(report, database));
      if (!report.ok) process.exitCode = 1;
    });
}

function dialectOf(url: string): 'postgres' | 'mysql' | 'sqlite' {
  if (/^postgres(ql)?:/i.test(url)) return 'postgres';
  if (/^(mysql|mariadb):/i.test(url)) return 'mysql';
  return 'sqlite'; // createOutbox() refused anything else already
}

const LABEL: Record<CheckStatus, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL' };

export function formatReport(report: DoctorReport, database: DatabaseConfig): string {
  const where = [database.schema && `schema ${database.schema}`, `table ${database.table ?? 'outbox'}`]
    .filter(Boolean)
    .join(', ');
  const width = Math.max(...report.checks.map((c) => c.id.length));
  const lines = [`outbox doctor: ${report.database.url} (${where})`, ''];
  for (const c of report.checks) {
    lines.push(`  ${LABEL[c.status].padEnd(4)}  ${c.id.padEnd(width)}  ${c.summary}`);
    if (c.fix) lines.push(`        ${' '.repeat(width)}  fix: ${c.fix}`);
  }
  const { ok, warn, fail } = report.counts;
  lines.push('', `${fail} failed, ${warn} warning${warn === 1 ? '' : 's'}, ${ok} ok`);
  return lines.join('\n');
}

export function formatSettings(settings: readonly ResolvedSetting[]): string {
  const show = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));
  const rows = settings.map((s) => [
    s.key,
    show(s.value),
    [s.source, s.origin, s.note && `(${s.note})`].filter(Boolean).join(' '),
  ]);
  return formatTable([['setting', 'value', 'source'], ...rows], [0, 1, 2]);
}
