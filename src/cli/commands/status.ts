/**
 * `outbox status`: pending, retrying, dead and the lag (oldest pending age), per destination, and
 * which relay holds which partitions with a live or stale heartbeat. `--watch [seconds]` refreshes:
 * redrawn in place on a terminal, one block per refresh otherwise (one JSON line with --json).
 */
import { Command, Option } from 'commander';
import { describeError, OutboxError } from '../../core/errors.js';
import type { LeaseRecord, OutboxStats } from '../../core/ports.js';
import { createOutbox, type Outbox } from '../../outbox.js';
import { type CommonOptions, common, resolveConfig } from '../config.js';

const DEFAULT_WATCH_SECONDS = 2;

/** One partition owner: a relay (its id and a per-process nonce) and the leases it holds. */
export interface RelayStatus {
  readonly owner: string;
  readonly partitions: readonly number[];
  /** The latest expiry of its leases (ISO-8601). */
  readonly expiresAt: string;
  /** 'stale': every lease expired, the relay stopped heartbeating; another relay takes them over. */
  readonly heartbeat: 'live' | 'stale';
}

/** What `outbox status --json` prints: the stats, the partition owners, and when it was read. */
export interface StatusReport extends OutboxStats {
  readonly at: string;
  /** The table's number of partitions. */
  readonly partitions: number;
  /** Never owned or given back: the next relay to look takes them. */
  readonly freePartitions: readonly number[];
  readonly relays: readonly RelayStatus[];
}

/** Groups lease rows by owner; `now` is this machine's clock (doctor warns when it is off). */
export function relayStatus(
  leases: readonly LeaseRecord[],
  now: number,
): Omit<StatusReport, keyof OutboxStats | 'at'> {
  const byOwner = new Map<string, LeaseRecord[]>();
  const free: number[] = [];
  for (const lease of leases) {
    // An expired lease keeps its owner's name until taken: shown under that owner, as stale.
    if (lease.owner === '' || lease.expiresAt === null) free.push(lease.partition);
    else byOwner.set(lease.owner, [...(byOwner.get(lease.owner) ?? []), lease]);
  }
  const relays = [...byOwner].map(([owner, held]): RelayStatus => {
    const latest = Math.max(...held.map((l) => l.expiresAt!.getTime()));
    return {
      owner,
      partitions: held.map((l) => l.partition).sort((a, b) => a - b),
      expiresAt: new Date(latest).toISOString(),
      heartbeat: latest > now ? 'live' : 'stale',
    };
  });
  relays.sort((a, b) => a.heartbeat.localeCompare(b.heartbeat) || a.owner.localeCompare(b.owner));
  return { partitions: leases.length, freePartitions: free.sort((a, b) => a - b), relays };
}

export async function readStatus(outbox: Outbox): Promise<StatusReport> {
  const [stats, leases] = await Promise.all([outbox.status(), outbox.store.leases()]);
  const now = Date.now();
  return { at: new Date(now).toISOString(), ...stats, ...relayStatus(leases, now) };
}

export function formatAge(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${ms}ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  if (ms < 172_800_000) return `${(ms / 3_600_000).toFixed(1)}h`;
  return `${(ms / 86_400_000).toFixed(1)}d`;
}

/** Columns padded to their widest cell: the first left-aligned, the others right-aligned unless `left`. */
export function formatTable(rows: readonly (readonly string[])[], left: readonly number[] = [0]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (left.includes(c) ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
        .join('  ')
        .trimEnd(),
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

/** 0,1,2,3,7 → '0-3,7'. */
export function formatRanges(numbers: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < numbers.length; ) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j]! + 1) j++;
    parts.push(j === i ? String(numbers[i]) : `${numbers[i]}-${numbers[j]}`);
    i = j + 1;
  }
  return parts.join(',') || '-';
}

export function formatRelays(report: Omit<StatusReport, keyof OutboxStats>): string {
  const now = Date.parse(report.at);
  const rows = report.relays.map((r) => {
    const expires = Date.parse(r.expiresAt) - now;
    return [
      r.owner,
      String(r.partitions.length),
      formatRanges(r.partitions),
      r.heartbeat === 'live'
        ? `live (lease renewed, expires in ${formatAge(expires)})`
        : `STALE (expired ${formatAge(-expires)} ago: stopped heartbeating)`,
    ];
  });
  const table = formatTable(
    [
      ['relay (partition owner)', 'held', 'partitions', 'heartbeat'],
      ...rows,
      [
        'free (nobody holds them)',
        String(report.freePartitions.length),
        formatRanges(report.freePartitions),
        '',
      ],
    ],
    [0, 2, 3],
  );
  return `${table}\n${report.partitions} partitions`;
}

export function formatStatus(report: StatusReport): string {
  const lag = report.oldestPendingAgeMs === null ? 'none pending' : formatAge(report.oldestPendingAgeMs);
  return [
    `pending ${report.pending}, retrying ${report.retrying}, dead ${report.dead}, published (kept) ${report.published}; lag ${lag}`,
    '',
    formatStats(report),
    '',
    formatRelays(report),
  ].join('\n');
}

function watchSeconds(value: string | true | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (value === true) return DEFAULT_WATCH_SECONDS;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new OutboxError('INVALID_CONFIG', `--watch takes a number of seconds > 0, got "${value}"`);
  }
  return seconds;
}

export function statusCommand(): Command {
  return common(new Command('status'))
    .description('pending, retrying, dead and the lag, per destination and per relay (partition owner)')
    .option('--json', 'print the result as JSON (with --watch: one line per refresh)')
    .addOption(
      new Option(
        '--watch [seconds]',
        `refresh every few seconds (default ${DEFAULT_WATCH_SECONDS}) until Ctrl-C`,
      ),
    )
    .action(async (options: CommonOptions & { json?: boolean; watch?: string | true }) => {
      const seconds = watchSeconds(options.watch);
      const outbox = createOutbox(resolveConfig(options));
      try {
        await outbox.store.checkSchema();
        if (seconds === undefined) print(await readStatus(outbox), options.json === true);
        else await watch(outbox, seconds, options.json === true);
      } finally {
        await outbox.close();
      }
    });
}

function print(report: StatusReport, json: boolean): void {
  console.log(json ? JSON.stringify(report) : formatStatus(report));
}

/**
 * Refreshes until SIGINT or SIGTERM, then returns (exit 0). On a terminal each refresh redraws the
 * screen; otherwise each is a block after a `--- time` line (a JSON line with --json). A refresh
 * that fails (the database restarting) is reported on stderr and the next one tried.
 */
async function watch(outbox: Outbox, seconds: number, json: boolean): Promise<void> {
  const redraw = process.stdout.isTTY === true && !json;
  let wake: () => void = () => {};
  let stopping = false;
  const onSignal = () => {
    stopping = true;
    wake();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    while (!stopping) {
      try {
        const report = await readStatus(outbox);
        if (redraw) {
          process.stdout.write('\x1b[H\x1b[2J'); // home and clear: redrawn in place, not scrolled
          console.log(`outbox status at ${report.at}, every ${seconds}s (Ctrl-C to quit)\n`);
        } else if (!json) {
          console.log(`--- ${report.at}`);
        }
        print(report, json);
        if (!redraw && !json) console.log('');
      } catch (error) {
        process.stderr.write(
          `outbox: refresh failed, trying again in ${seconds}s: ${describeError(error)}\n`,
        );
      }
      if (stopping) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, seconds * 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
