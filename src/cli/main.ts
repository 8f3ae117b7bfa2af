#!/usr/bin/env node
/**
 * The `outbox` command: migrate, relay, status, dlq, purge, doctor, demo. Every flag has an
 * OUTBOX_* env twin; `--config` (OUTBOX_CONFIG) points at outbox.config.json. Exit codes: 0 ok,
 * 1 failure (or problems found), 2 bad configuration or usage.
 */
import { Command } from 'commander';
import { describeError, OutboxError } from '../core/errors.js';
import { dashboardCommand } from './commands/dashboard.js';
import { demoCommand } from './commands/demo.js';
import { dlqCommand } from './commands/dlq.js';
import { doctorCommand } from './commands/doctor.js';
import { migrateCommand } from './commands/migrate.js';
import { purgeCommand } from './commands/purge.js';
import { relayCommand } from './commands/relay.js';
import { statusCommand } from './commands/status.js';

const CONFIG_CODES = new Set([
  'INVALID_CONFIG',
  'INVALID_IDENTIFIER',
  'UNSUPPORTED_URL',
  'UNSUPPORTED_CHARSET',
  'DRIVER_MISSING',
  'SCHEMA_OUTDATED',
  'SCHEMA_TOO_NEW',
]);

async function main(argv: string[]): Promise<void> {
  const program = new Command('outbox')
    .description('The transactional outbox: add events in your transaction, relay them to your broker.')
    .showHelpAfterError()
    .exitOverride();
  program.addCommand(migrateCommand());
  program.addCommand(relayCommand());
  program.addCommand(statusCommand());
  program.addCommand(purgeCommand());
  program.addCommand(dlqCommand());
  program.addCommand(doctorCommand());
  program.addCommand(demoCommand());
  program.addCommand(dashboardCommand());
  // Usage errors of subcommands (an unknown flag, a missing argument) reach the catch below too,
  // so they exit 2 like the program's own instead of commander's process.exit(1).
  const overrideExits = (command: Command): void => {
    command.exitOverride();
    command.commands.forEach(overrideExits);
  };
  overrideExits(program);
  await program.parseAsync(argv);
}

main(process.argv).catch((error: unknown) => {
  const code = (error as { code?: string }).code;
  if (code === 'commander.helpDisplayed' || code === 'commander.version') process.exit(0);
  // 'commander.help' is also a command with subcommands run without one (`outbox dlq`): usage.
  if (code === 'commander.help') process.exit((error as { exitCode?: number }).exitCode === 0 ? 0 : 2);
  if (typeof code === 'string' && code.startsWith('commander.')) process.exit(2);
  if (error instanceof OutboxError) {
    process.stderr.write(`outbox: ${error.code}: ${error.message}\n`);
    process.exit(CONFIG_CODES.has(error.code) ? 2 : 1);
  }
  process.stderr.write(`outbox: ${describeError(error)}\n`);
  process.exit(1);
});
