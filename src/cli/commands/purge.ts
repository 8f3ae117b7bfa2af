/** `outbox purge --older-than 7d`: deletes published events kept by retention, in bounded chunks. */
import { Command, Option } from 'commander';
import { OutboxError } from '../../core/errors.js';
import { createOutbox } from '../../outbox.js';
import { type CommonOptions, common, resolveConfig } from '../config.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** '7d', '12h', '30m', '45s', '500ms' → milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match)
    throw new OutboxError('INVALID_CONFIG', `"${text}" is not a duration (use e.g. 7d, 12h, 30m, 45s)`);
  return Number(match[1]) * UNITS[match[2]!]!;
}

export function purgeCommand(): Command {
  return common(new Command('purge'))
    .description('delete published events kept by retention (retainPublished) older than a duration')
    .addOption(
      new Option('--older-than <duration>', 'e.g. 7d, 12h, 30m')
        .makeOptionMandatory()
        .env('OUTBOX_PURGE_OLDER_THAN'),
    )
    .option('--json', 'print the result as JSON')
    .action(async (options: CommonOptions & { olderThan: string; json?: boolean }) => {
      const olderThanMs = parseDuration(options.olderThan);
      const outbox = createOutbox(resolveConfig(options));
      try {
        await outbox.store.checkSchema();
        const deleted = await outbox.store.purge(olderThanMs);
        console.log(
          options.json
            ? JSON.stringify({ deleted })
            : `deleted ${deleted} published events older than ${options.olderThan}`,
        );
      } finally {
        await outbox.close();
      }
    });
}
