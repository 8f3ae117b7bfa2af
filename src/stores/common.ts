/** Helpers every store dialect shares: identifier checks, the shape of stats, list() filters. */
import { OutboxError } from '../core/errors.js';
import type { DestinationStats, ListFilter, OutboxStats } from '../core/ports.js';

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

/** Rows list() returns when the filter names no limit. */
const DEFAULT_LIST_LIMIT = 100;

/** The limit of a list() filter: its own (a whole number ≥ 0) or the default. */
export function listLimit(filter: ListFilter): number {
  const limit = filter.limit ?? DEFAULT_LIST_LIMIT;
  if (!Number.isInteger(limit) || limit < 0) {
    throw new OutboxError('INVALID_CONFIG', 'list limit must be an integer ≥ 0');
  }
  return limit;
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

/**
 * The WHERE clause of `list()`: one condition per filter field given, in a fixed order (so each
 * combination is one SQL text, preparable once). `placeholder(n)` writes the n-th parameter
 * (1-based), `time` turns `createdSince` into what the dialect stores, `prefix` qualifies columns.
 */
export function listConditions(
  filter: ListFilter,
  placeholder: (n: number) => string,
  time: (date: Date) => unknown,
  prefix = '',
): { where: string; params: unknown[] } {
  const params: unknown[] = [];
  const conditions: string[] = [];
  const add = (condition: string, value: unknown) => {
    params.push(value);
    conditions.push(`${prefix}${condition} ${placeholder(params.length)}`);
  };
  if (filter.status !== undefined) add('status =', filter.status);
  if (filter.destination !== undefined) add('destination =', filter.destination);
  if (filter.type !== undefined) add('type =', filter.type);
  if (filter.createdSince !== undefined) {
    if (!(filter.createdSince instanceof Date) || Number.isNaN(filter.createdSince.getTime())) {
      throw new OutboxError('INVALID_CONFIG', 'list createdSince must be a valid Date');
    }
    add('created_at >=', time(filter.createdSince));
  }
  return { where: conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '', params };
}

/** `purge()`'s optional per-statement limit: a positive integer, or undefined. */
export function purgeLimit(limit: number | undefined): number | undefined {
  if (limit === undefined) return undefined;
  if (!Number.isInteger(limit) || limit <= 0) {
    throw new OutboxError('INVALID_CONFIG', `purge limit must be a positive integer, got ${String(limit)}`);
  }
  return limit;
}
