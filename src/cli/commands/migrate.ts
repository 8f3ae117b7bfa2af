/** `outbox migrate`: creates or upgrades the schema; idempotent, safe to run from many processes. */
import { Command } from 'commander';
import { createOutbox } from '../../outbox.js';
import { type CommonOptions, common, resolveConfig } from '../config.js';

export function migrateCommand(): Command {
  return common(new Command('migrate'))
    .description('create or upgrade the outbox schema')
    .option('--json', 'print the result as JSON')
    .action(async (options: CommonOptions & { json?: boolean }) => {
      const outbox = createOutbox(resolveConfig(options));
      try {
        const result = await outbox.migrate();
        if (options.json) console.log(JSON.stringify(result));
        else if (result.applied.length === 0) console.log(`schema is current (version ${result.to})`);
        else
          console.log(`migrated from version ${result.from} to ${result.to}: ${result.applied.join(', ')}`);
      } finally {
        await outbox.close();
      }
    });
}
