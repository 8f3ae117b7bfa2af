/**
 * Delivery checks against a ledger: rows your test writes in the same transaction as each event,
 * compared with what a real consumer received. Never count acks: a broker's ack is not delivery.
 */

/** One message as a consumer received it. */
export interface Reception {
  readonly id: string;
  readonly key: string;
  /** Receive time (ms). */
  readonly at: number;
}

/** One ledger row: an event id, its key, and when its transaction committed. */
export interface LedgerEntry {
  readonly id: string;
  readonly key: string;
  /** When the transaction that added the event committed (ms). */
  readonly committedAt: number;
}

export interface DeliveryResult {
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
 * Compares the ledger (in commit order) with the receptions (in arrival order).
 * LOST = ledger ids never received and not dead-lettered; ORDER = per key, first receptions out
 * of ledger order; DUP = receptions minus distinct ids.
 */
export function checkDelivery(
  ledger: readonly LedgerEntry[],
  receptions: readonly Reception[],
  deadIds: ReadonlySet<string>,
): DeliveryResult {
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
