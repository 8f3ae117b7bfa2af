/**
 * Per-key order checks of a drain, with the library's own checker (outbox/testing): the ledger
 * is the table's rows in commit order, read before the drain; the receptions are what a
 * consumer saw, in the order it saw them — the stream's order for JetStream (read back after
 * the drain with an ordered consumer), the handler's call order for an in-process target.
 */
import { jetstream } from '@nats-io/jetstream';
import {
  checkDelivery,
  type DeliveryResult,
  type LedgerEntry,
  type Reception,
} from '../src/testing/index.js';
import type { BenchEnv } from './env.js';

const IDLE_MS = 2_000;

/** The Nats-Msg-Id of every message on `subjects` (e.g. `prefix.>`), in stream order. */
export async function streamIds(env: BenchEnv, subjects: string, expected: number): Promise<string[]> {
  const consumer = await jetstream(env.nc).consumers.get(env.stream, { filter_subjects: subjects });
  const messages = await consumer.consume({ max_messages: 2_000 });
  const ids: string[] = [];
  let idle: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => messages.stop(), IDLE_MS);
  };
  arm();
  for await (const m of messages) {
    ids.push(m.headers?.get('Nats-Msg-Id') ?? '');
    if (ids.length >= expected) break;
    arm();
  }
  clearTimeout(idle);
  messages.stop();
  return ids;
}

/** Receptions of `ids` (in reception order), keyed from the ledger. */
export function receptionsOf(ledger: readonly LedgerEntry[], ids: readonly string[]): Reception[] {
  const keyOf = new Map(ledger.map((e) => [e.id, e.key]));
  return ids.map((id, i) => ({ id, key: keyOf.get(id) ?? '?', at: i }));
}

/** LOST, ORDER and DUP of a drain (nothing is dead-lettered in the benchmark). */
export function checkOrder(ledger: readonly LedgerEntry[], ids: readonly string[]): DeliveryResult {
  return checkDelivery(ledger, receptionsOf(ledger, ids), new Set());
}

export function describeDelivery(d: DeliveryResult): string {
  return `${d.added} added, ${d.distinct} received (${d.duplicates} duplicates), ${d.lost} lost, ${d.orderViolations} order violations`;
}
