/** The demo's closing summary, for a person to read. */
import type { DeliveryResult } from '../../testing/delivery-check.js';

export function formatSummary(
  r: DeliveryResult,
  extra: { seconds: number; retried: number; badSignatures: number; steady: DeliveryResult },
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
    `  commit → publish latency, before the outage p50 ${extra.steady.p50Ms} ms, p99 ${extra.steady.p99Ms} ms`,
    `                           whole run          p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms (outage included)`,
    '',
  ].join('\n');
}
