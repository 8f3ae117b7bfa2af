/** `outbox status`: pending, oldest pending age, retrying and dead-lettered events, per destination. */
import { Command } from 'commander';
import type { OutboxStats } from '../../core/ports.js';
import { createOutbox } from '../../outbox.js';
import { type CommonOptions, common, resolveConfig } from '../config.js';

export function formatAge(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${ms}ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${(ms / 3_600_000).toFixed(1)}h`;
}

export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '),
    )
    .join('\n');
}

export function formatStats(stats: OutboxStats): string {
  const row = (name: string, s: Omit<OutboxStats, 'destinations'>) => [
    name,
    String(s.pending),
    formatAge(s.oldestPendingAgeMs),
    String(s.retrying),
    String(s.dead),
    String(s.published),
  ];
  return formatTable([
    ['destination', 'pending', 'oldest', 'retrying', 'dead', 'published'],
    ...stats.destinations.map((d) => row(d.destination, d)),
    row('total', stats),
  ]);
}

export function statusCommand(): Command {
  return common(new Command('status'))
    .description('pending, oldest pending age, retrying and dead-lettered events, per destination')
    .option('--json', 'print the result as JSON')
    .action(async (options: CommonOptions & { json?: boolean }) => {
      const outbox = createOutbox(resolveConfig(options));
      try {
        await outbox.store.checkSchema();
        const stats = await outbox.status();
        console.log(options.json ? JSON.stringify(stats) : formatStats(stats));
      } finally {
        await outbox.close();
      }
    });
}
