/** The demo's checks and summary: loss, per-key order and latency, from the ledger and the receptions. */
import type { Reception } from './receiver.js';

export interface LedgerEntry {
  readonly id: string;
  readonly key: string;
  /** When the transaction that added the event committed (ms). */
  readonly committedAt: number;
}

export interface DemoResult {
  readonly added: number;
  readonly received: number;
  readonly distinct: number;
  readonly duplicates: number;
  readonly dead: number;
  readonly lost: number;
  readonly orderViolations: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * LOST = ledger ids never received and not dead-lettered; ORDER = per key, first receptions out
 * of ledger order; DUP = receptions minus distinct ids.
 */
export function checkDelivery(
  ledger: readonly LedgerEntry[],
  receptions: readonly Reception[],
  deadIds: ReadonlySet<string>,
): DemoResult {
  const first = new Map<string, number>(); // id → index of its first reception
  const firstAt = new Map<string, number>();
  receptions.forEach((r, i) => {
    if (!first.has(r.id)) {
      first.set(r.id, i);
      firstAt.set(r.id, r.at);
    }
  });
  let lost = 0;
  let orderViolations = 0;
  const lastIndexByKey = new Map<string, number>();
  const latencies: number[] = [];
  for (const entry of ledger) {
    const index = first.get(entry.id);
    if (index === undefined) {
      if (!deadIds.has(entry.id)) lost++;
      continue;
    }
    latencies.push(firstAt.get(entry.id)! - entry.committedAt);
    const previous = lastIndexByKey.get(entry.key);
    if (previous !== undefined && index < previous) orderViolations++;
    lastIndexByKey.set(entry.key, index);
  }
  latencies.sort((a, b) => a - b);
  return {
    added: ledger.length,
    received: receptions.length,
    distinct: first.size,
    duplicates: receptions.length - first.size,
    dead: deadIds.size,
    lost,
    orderViolations,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}

export function formatSummary(
  r: DemoResult,
  extra: { seconds: number; retried: number; badSignatures: number },
): string {
  const mark = (n: number) => (n === 0 ? 'ok' : 'FAILED');
  const n = (v: number) => v.toLocaleString('en-US').padStart(8);
  return [
    '',
    `outbox demo: ${extra.seconds} s, SQLite (embedded) → relay → HTTP webhook receiver`,
    '',
    `  events added (committed with their orders)  ${n(r.added)}`,
    `  published (distinct events received)        ${n(r.distinct)}`,
    `  retried attempts (receiver 503 / refused)   ${n(extra.retried)}`,
    `  duplicates received                         ${n(r.duplicates)}`,
    `  dead-lettered                               ${n(r.dead)}`,
    `  bad signatures at the receiver              ${n(extra.badSignatures)}`,
    `  lost (must be 0)                            ${n(r.lost)}  ${mark(r.lost)}`,
    `  per-key order violations (must be 0)        ${n(r.orderViolations)}  ${mark(r.orderViolations)}`,
    `  commit → publish latency                    p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms (outage included)`,
    '',
  ].join('\n');
}
