#!/usr/bin/env node
/**
 * The `outbox` command: migrate, relay, status, purge, demo. Every flag has an OUTBOX_* env twin;
 * `--config` (OUTBOX_CONFIG) points at outbox.config.json. Exit codes: 0 ok, 1 failure,
 * 2 bad configuration or usage.
 */
import { Command } from 'commander';
import { describeError, OutboxError } from '../core/errors.js';
import { demoCommand } from './commands/demo.js';
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
  program.addCommand(demoCommand());
  await program.parseAsync(argv);
}

main(process.argv).catch((error: unknown) => {
  const code = (error as { code?: string }).code;
  if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help')
    process.exit(0);
  if (typeof code === 'string' && code.startsWith('commander.')) process.exit(2);
  if (error instanceof OutboxError) {
    process.stderr.write(`outbox: ${error.code}: ${error.message}\n`);
    process.exit(CONFIG_CODES.has(error.code) ? 2 : 1);
  }
  process.stderr.write(`outbox: ${describeError(error)}\n`);
  process.exit(1);
});
