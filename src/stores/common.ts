/** Helpers every store dialect shares: identifier checks and the shape of stats. */
import { OutboxError } from '../core/errors.js';
import type { DestinationStats, OutboxStats } from '../core/ports.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,50}$/;

/** Table and schema names come from configuration: only plain identifiers reach SQL. */
export function assertIdentifier(value: string, option: string): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
    throw new OutboxError(
      'INVALID_IDENTIFIER',
      `${option} "${String(value)}" is not a valid identifier (letters, digits and _, starting with a letter or _, at most 51 characters)`,
      { details: { option } },
    );
  }
  return value;
}

/** Per-destination rows (pending, retrying, dead, published, oldest_pending_age_ms) → OutboxStats. */
export function summarizeStats(rows: ReadonlyArray<Record<string, unknown>>): OutboxStats {
  const destinations: DestinationStats[] = rows.map((r) => ({
    destination: String(r.destination),
    pending: Number(r.pending ?? 0),
    retrying: Number(r.retrying ?? 0),
    dead: Number(r.dead ?? 0),
    published: Number(r.published ?? 0),
    oldestPendingAgeMs:
      r.oldest_pending_age_ms === null || r.oldest_pending_age_ms === undefined
        ? null
        : Math.max(0, Math.round(Number(r.oldest_pending_age_ms))),
  }));
  const ages = destinations.map((d) => d.oldestPendingAgeMs).filter((a): a is number => a !== null);
  return {
    pending: destinations.reduce((n, d) => n + d.pending, 0),
    retrying: destinations.reduce((n, d) => n + d.retrying, 0),
    dead: destinations.reduce((n, d) => n + d.dead, 0),
    published: destinations.reduce((n, d) => n + d.published, 0),
    oldestPendingAgeMs: ages.length > 0 ? Math.max(...ages) : null,
    destinations,
  };
}

/** The most partitions a table may have: each is a lease row every relay may scan. */
export const MAX_PARTITIONS = 4096;

/** `partitions` comes from configuration and is written into the schema: a whole number in range. */
export function assertPartitions(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1 || value > MAX_PARTITIONS) {
    throw new OutboxError(
      'INVALID_CONFIG',
      `partitions must be an integer from 1 to ${MAX_PARTITIONS}, got ${String(value)}`,
      { details: { option: 'partitions' } },
    );
  }
  return value;
}

/** Refuses a partition count other than the table's: it is fixed when the table is created. */
export function assertPartitionCount(table: string, found: number, requested: number | undefined): void {
  if (requested === undefined || found === requested) return;
  throw new OutboxError(
    'INVALID_CONFIG',
    `outbox table ${table} has ${found} partitions, not ${requested}: the number is fixed when the table is created (changing it on a live system is not supported yet)`,
    { details: { partitions: found, requested } },
  );
}
