/** `outbox migrate`: creates or upgrades the schema; idempotent, safe to run from many processes. */
import { Command, Option } from 'commander';
import { OutboxError } from '../../core/errors.js';
import { createOutbox } from '../../outbox.js';
import { type CommonOptions, common, resolveConfig } from '../config.js';

export function migrateCommand(): Command {
  return common(new Command('migrate'))
    .description('create or upgrade the outbox schema')
    .addOption(
      new Option(
        '--partitions <n>',
        'partitions of a new outbox table (default 64; relays share them; fixed once created)',
      ).env('OUTBOX_PARTITIONS'),
    )
    .option('--json', 'print the result as JSON')
    .action(async (options: CommonOptions & { json?: boolean; partitions?: string }) => {
      const partitions = options.partitions === undefined ? undefined : Number(options.partitions);
      if (partitions !== undefined && !Number.isInteger(partitions)) {
        throw new OutboxError(
          'INVALID_CONFIG',
          `--partitions must be an integer, got "${options.partitions}"`,
        );
      }
      const outbox = createOutbox(resolveConfig(options));
      try {
        const result = await outbox.migrate(partitions === undefined ? {} : { partitions });
        if (options.json) console.log(JSON.stringify(result));
        else if (result.applied.length === 0) console.log(`schema is current (version ${result.to})`);
        else
          console.log(`migrated from version ${result.from} to ${result.to}: ${result.applied.join(', ')}`);
      } finally {
        await outbox.close();
      }
    });
}
