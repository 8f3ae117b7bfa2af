/**
 * CLI configuration: flag > OUTBOX_* env > outbox.config.json > default, resolved once.
 * `--broker <url>` is shorthand for one publisher with a catch-all route.
 */

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { type FileConfig, fileConfigSchema, parseConfig } from '../core/config.js';
import { OutboxError } from '../core/errors.js';
import { DEFAULT_DATABASE_URL, type OutboxConfig } from '../outbox.js';

export const DEFAULT_CONFIG_FILE = 'outbox.config.json';

/** Options every command shares (commander fills them from flags, then env). */
export interface CommonOptions {
  config?: string;
  db?: string;
  broker?: string;
}

export function loadConfigFile(path: string | undefined): FileConfig {
  const explicit = path !== undefined;
  const file = resolve(path ?? DEFAULT_CONFIG_FILE);
  if (!existsSync(file)) {
    if (explicit) throw new OutboxError('INVALID_CONFIG', `config file ${file} does not exist`);
    return {};
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new OutboxError('INVALID_CONFIG', `config file ${file} is not valid JSON`, { cause });
  }
  return parseConfig(fileConfigSchema, json, file);
}

/** The outbox configuration a command runs with. */
export function resolveConfig(
  options: CommonOptions,
): OutboxConfig & { database: NonNullable<FileConfig['database']> } {
  const file = loadConfigFile(options.config);
  let database = file.database ?? DEFAULT_DATABASE_URL;
  if (options.db) database = typeof database === 'string' ? options.db : { ...database, url: options.db };
  const config = { ...file, database };
  if (options.broker) {
    config.publishers = { default: options.broker };
    config.routes = [{ publisher: 'default', allow: ['*'] }];
  }
  return config;
}

/** The database URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]+):[^@/]*@/i, '$1:***@');
}

/** Adds the options every command shares. */
export function common(command: Command, { broker = false } = {}): Command {
  command
    .addOption(
      new Option('--config <path>', 'configuration file (default ./outbox.config.json)').env('OUTBOX_CONFIG'),
    )
    .addOption(
      new Option('--db <url>', 'database URL: sqlite:./file.db or postgres://…').env('OUTBOX_DATABASE_URL'),
    );
  if (broker) {
    command.addOption(
      new Option(
        '--broker <url>',
        'one broker for every event: nats://, http(s)://, redis(s)://, mqtt(s)://, amqp(s)://, kafka://…',
      ).env('OUTBOX_BROKER_URL'),
    );
  }
  return command;
}
