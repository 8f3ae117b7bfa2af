/**
 * CLI configuration: flag > OUTBOX_* env > outbox.config.json > default, resolved once, with the
 * source of every setting kept for `outbox doctor --print-config`.
 * `--broker <url>` is shorthand for one publisher with a catch-all route.
 */

import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { DEFAULT_BACKOFF } from '../core/backoff.js';
import { type FileConfig, fileConfigSchema, parseConfig } from '../core/config.js';
import { OutboxError } from '../core/errors.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from '../core/event.js';
import { DEFAULT_DATABASE_URL, type OutboxConfig } from '../outbox.js';
import { RELAY_DEFAULTS } from '../relay/relay.js';
import { MYSQL_STORE_DEFAULTS } from '../stores/mysql.js';
import { POSTGRES_STORE_DEFAULTS } from '../stores/postgres.js';
import { DEFAULT_PARTITIONS } from '../stores/postgres-migrations.js';
import { DEFAULT_BUSY_TIMEOUT_MS } from '../stores/sqlite.js';

export const DEFAULT_CONFIG_FILE = 'outbox.config.json';

/** Options every command shares (commander fills them from flags, then env). */
export interface CommonOptions {
  config?: string;
  db?: string;
  broker?: string;
}

/** Where a resolved setting came from. */
export type SettingSource = 'flag' | 'env' | 'file' | 'default';

/** One resolved setting, as `outbox doctor --print-config` shows it. */
export interface ResolvedSetting {
  /** The key as in outbox.config.json (`relay.batchSize`), or `config` for the file itself. */
  readonly key: string;
  /** Secrets (passwords in URLs, signing secrets, header values) are masked. */
  readonly value: unknown;
  readonly source: SettingSource;
  /** The flag, environment variable or file that set it. */
  readonly origin?: string;
  /** Which command it applies to, when not all of them; or what a missing value means. */
  readonly note?: string;
}

/** Tells whether commander filled a common option from its flag or from its env twin. */
export type OptionSourceOf = (option: keyof CommonOptions) => 'flag' | 'env' | undefined;

/** The flag/env sources of the common options, read from the command commander parsed. */
export function optionSources(command: Command): OptionSourceOf {
  return (option) => {
    const source = command.getOptionValueSource(option);
    return source === 'cli' ? 'flag' : source === 'env' ? 'env' : undefined;
  };
}

/** The env twins of `outbox relay`'s settings (its flags are the kebab-case keys). */
export const RELAY_ENV = Object.freeze({
  batchSize: 'OUTBOX_BATCH_SIZE',
  maxAttempts: 'OUTBOX_MAX_ATTEMPTS',
  pollIntervalMs: 'OUTBOX_POLL_INTERVAL_MS',
  leaseTtlMs: 'OUTBOX_LEASE_TTL_MS',
});

const TWINS = {
  config: ['--config', 'OUTBOX_CONFIG'],
  db: ['--db', 'OUTBOX_DATABASE_URL'],
  broker: ['--broker', 'OUTBOX_BROKER_URL'],
} as const;

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

export type ResolvedConfig = OutboxConfig & { database: NonNullable<FileConfig['database']> };

/** The outbox configuration a command runs with. */
export function resolveConfig(options: CommonOptions): ResolvedConfig {
  return resolveConfigWithSources(options).config;
}

/**
 * The configuration a command runs with, and every setting with its source. `sourceOf` tells a
 * flag from its env twin (commander knows, see optionSources); `env` is read for the settings
 * that only `outbox relay` and `outbox migrate` take from the environment.
 */
export function resolveConfigWithSources(
  options: CommonOptions,
  sourceOf: OptionSourceOf = () => 'flag',
  env: NodeJS.ProcessEnv = process.env,
): { config: ResolvedConfig; settings: ResolvedSetting[] } {
  const settings: ResolvedSetting[] = [];
  const path = resolve(options.config ?? DEFAULT_CONFIG_FILE);
  const file = loadConfigFile(options.config);
  const given = (option: keyof CommonOptions): Pick<ResolvedSetting, 'source' | 'origin'> => {
    const source = sourceOf(option) ?? 'flag';
    return { source, origin: TWINS[option][source === 'env' ? 1 : 0] };
  };
  const fromFile = { source: 'file', origin: path } as const;
  const fallback = { source: 'default' } as const;
  const set = (key: string, value: unknown, from: Omit<ResolvedSetting, 'key' | 'value'>) =>
    settings.push({ key, value, ...from });

  set('config', path, {
    ...(options.config === undefined ? fallback : given('config')),
    ...(existsSync(path) ? {} : { note: 'not found: every setting is a flag, env or default' }),
  });

  let database = file.database ?? DEFAULT_DATABASE_URL;
  if (options.db) database = typeof database === 'string' ? options.db : { ...database, url: options.db };
  const config = { ...file, database };
  const url = typeof database === 'string' ? database : database.url;
  set('database.url', redactUrl(url), options.db ? given('db') : file.database ? fromFile : fallback);
  describeDatabase(url, typeof file.database === 'object' ? file.database : {}, env, (key, value, from) =>
    set(key, value, from === 'file' ? fromFile : from === 'default' ? fallback : from),
  );

  if (options.broker) {
    config.publishers = { default: options.broker };
    config.routes = [{ publisher: 'default', allow: ['*'] }];
    set('publishers.default', redactUrl(options.broker), given('broker'));
    set('routes', config.routes, { ...given('broker'), note: 'one catch-all route (--broker)' });
  } else {
    const publishers = Object.entries(file.publishers ?? {});
    for (const [name, entry] of publishers) set(`publishers.${name}`, maskPublisher(entry), fromFile);
    if (publishers.length === 0)
      set('publishers', {}, { ...fallback, note: 'none: outbox relay needs --broker or publishers' });
    if (file.routes) set('routes', file.routes, fromFile);
    else set('routes', [], { ...fallback, note: 'one catch-all route to the only publisher' });
  }
  set(
    'maxPayloadBytes',
    file.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
    file.maxPayloadBytes ? fromFile : fallback,
  );
  set('strictPayload', file.strictPayload ?? true, file.strictPayload === undefined ? fallback : fromFile);
  describeRelay(file.relay ?? {}, env, (key, value, from) =>
    set(`relay.${key}`, value, {
      ...(from === 'file' ? fromFile : from === 'default' ? fallback : from),
      note: 'outbox relay',
    }),
  );
  return { config, settings };
}

type Describe = (
  key: string,
  value: unknown,
  from: 'file' | 'default' | { source: 'env'; origin: string },
) => void;

/** The database options that apply to the URL's dialect, each from the file or its default. */
function describeDatabase(
  url: string,
  file: Partial<Record<string, unknown>>,
  env: NodeJS.ProcessEnv,
  describe: Describe,
): void {
  const defaults: Record<string, unknown> = { table: 'outbox', retainPublished: false };
  if (/^postgres(ql)?:/i.test(url)) {
    const { schema, notify, poolSize, prepareStatements } = POSTGRES_STORE_DEFAULTS;
    Object.assign(defaults, { schema, notify, poolSize, prepareStatements });
  } else if (/^(mysql|mariadb):/i.test(url)) {
    const { poolSize, prepareStatements } = MYSQL_STORE_DEFAULTS;
    Object.assign(defaults, { schema: urlDatabase(url), poolSize, prepareStatements });
  } else if (/^sqlite:/i.test(url)) {
    defaults.busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS;
  }
  for (const key of new Set([...Object.keys(defaults), ...Object.keys(file)])) {
    if (key === 'url') continue;
    describe(`database.${key}`, file[key] ?? defaults[key], file[key] === undefined ? 'default' : 'file');
  }
  // Read by `outbox migrate` only, which fixes the partition count of a new table.
  const partitions = env.OUTBOX_PARTITIONS;
  if (partitions !== undefined)
    describe('database.partitions', number(partitions), envSource('OUTBOX_PARTITIONS'));
  else
    describe(
      'database.partitions',
      file.partitions ?? DEFAULT_PARTITIONS,
      file.partitions ? 'file' : 'default',
    );
}

/** `outbox relay`'s settings: env twin > file > default. */
function describeRelay(
  file: NonNullable<FileConfig['relay']>,
  env: NodeJS.ProcessEnv,
  describe: Describe,
): void {
  for (const [key, fallback] of Object.entries(RELAY_DEFAULTS)) {
    const envName = RELAY_ENV[key as keyof typeof RELAY_ENV] as string | undefined;
    const fromFile = file[key as keyof typeof file];
    if (envName && env[envName] !== undefined) describe(key, number(env[envName]!), envSource(envName));
    else describe(key, fromFile ?? fallback, fromFile === undefined ? 'default' : 'file');
  }
  for (const key of ['baseMs', 'capMs'] as const) {
    const value = file.backoff?.[key];
    describe(`backoff.${key}`, value ?? DEFAULT_BACKOFF[key], value === undefined ? 'default' : 'file');
  }
  describe('relayId', file.relayId ?? `${hostname()}:<pid>`, file.relayId ? 'file' : 'default');
  describe('onDeadLetter', file.onDeadLetter ?? 'continue', file.onDeadLetter ? 'file' : 'default');
  describe('retention', file.retention ?? null, file.retention ? 'file' : 'default');
  const level = env.OUTBOX_LOG_LEVEL;
  describe('logLevel', level ?? 'info', level === undefined ? 'default' : envSource('OUTBOX_LOG_LEVEL'));
}

function envSource(origin: string) {
  return { source: 'env', origin } as const;
}

/** An env value as a number when it is one (the command that reads it validates it). */
function number(text: string): number | string {
  return text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : text;
}

function urlDatabase(url: string): string | null {
  try {
    return decodeURIComponent(new URL(url).pathname.replace(/^\//, '')) || null;
  } catch {
    return null;
  }
}

/** A publisher entry with its secrets masked: URL passwords, signing secrets, header values. */
function maskPublisher(entry: string | Record<string, unknown>): unknown {
  if (typeof entry === 'string') return redactUrl(entry);
  return Object.fromEntries(
    Object.entries(entry).map(([key, value]) => {
      if (key === 'url' && typeof value === 'string') return [key, redactUrl(value)];
      if (/secret|password|token/i.test(key)) return [key, '***'];
      if (key === 'headers' && typeof value === 'object' && value !== null)
        return [key, Object.fromEntries(Object.keys(value).map((h) => [h, '***']))];
      return [key, value];
    }),
  );
}

/** The database URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');
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
