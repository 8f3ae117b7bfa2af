/**
 * Structured logs: one JSON line per thing worth knowing, on stderr. Payloads and SQL
 * parameters never reach the log. Bring your own (pino fits) by passing `logger`.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function isLevel(value: string | undefined): value is LogLevel {
  return value !== undefined && value in ORDER;
}

/**
 * JSON lines on stderr at or above `level` (default: OUTBOX_LOG_LEVEL, else 'warn').
 * @example
 * createOutbox({ …, relay: { logger: consoleLogger({ level: 'info' }) } })
 */
export function consoleLogger(options: { level?: LogLevel; write?: (line: string) => void } = {}): Logger {
  const env = process.env.OUTBOX_LOG_LEVEL;
  const threshold = ORDER[options.level ?? (isLevel(env) ? env : 'warn')];
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const log = (level: Exclude<LogLevel, 'silent'>) => (message: string, fields?: LogFields) => {
    if (ORDER[level] < threshold) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields })}\n`);
  };
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

/** A logger that drops everything. */
export const silentLogger: Logger = consoleLogger({ level: 'silent' });
