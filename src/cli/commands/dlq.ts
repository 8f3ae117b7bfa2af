/**
 * `outbox dlq`: the dead letters. `list` (filters: destination, type, since), `show <id>` (the
 * payload redacted unless --show-payload, with the attempt history), `retry <id…>` (back to
 * pending with the same id, so consumers' dedupe still works) and `discard <id…>`; `retry` and
 * `discard` also take `--all` with the same filters, and `--all` with no filter needs `--yes`.
 */
import { Command, Option } from 'commander';
import { OutboxError } from '../../core/errors.js';
import type { EventRecord, ListFilter } from '../../core/ports.js';
import { createOutbox, type Outbox } from '../../outbox.js';
import { type CommonOptions, common, resolveConfig } from '../config.js';
import { parseDuration } from './purge.js';
import { formatAge, formatTable } from './status.js';

const DEFAULT_LIMIT = 100;
/** Dead letters read per page by `retry --all` / `discard --all`. */
const PAGE = 500;
const ERROR_COLUMN_WIDTH = 60;

interface FilterFlags extends CommonOptions {
  destination?: string;
  type?: string;
  since?: string;
  json?: boolean;
}

/** A dead letter in `dlq list --json`: everything but the payload and headers. */
export interface DeadLetterSummary {
  readonly id: string;
  readonly seq: number;
  readonly type: string;
  readonly key: string;
  readonly aggregateType: string | null;
  readonly aggregateId: string | null;
  readonly destination: string;
  readonly partition: number;
  readonly attempts: number;
  readonly lastError: string | null;
  /** Holds later events of its key back until retried or discarded (policy 'park'). */
  readonly parked: boolean;
  readonly createdAt: string;
  /** When its last attempt failed (from the attempt history), if it recorded one. */
  readonly deadAt: string | null;
}

/** `--since`: a duration back from now (30m, 12h, 7d) or an ISO-8601 time. */
export function parseSince(text: string): Date {
  if (/^\d+(ms|s|m|h|d)$/.test(text.trim())) return new Date(Date.now() - parseDuration(text));
  const time = Date.parse(text);
  if (Number.isNaN(time)) {
    throw new OutboxError(
      'INVALID_CONFIG',
      `--since "${text}" is neither a duration (30m, 12h, 7d) nor an ISO time (2025-01-31T08:00:00Z)`,
    );
  }
  return new Date(time);
}

function deadFilter(flags: FilterFlags): ListFilter & { status: 'dead' } {
  return {
    status: 'dead',
    ...(flags.destination === undefined ? {} : { destination: flags.destination }),
    ...(flags.type === undefined ? {} : { type: flags.type }),
    ...(flags.since === undefined ? {} : { createdSince: parseSince(flags.since) }),
  };
}

function hasFilter(flags: FilterFlags): boolean {
  return flags.destination !== undefined || flags.type !== undefined || flags.since !== undefined;
}

function summary(e: EventRecord): DeadLetterSummary {
  return {
    id: e.id,
    seq: e.seq,
    type: e.type,
    key: e.key,
    aggregateType: e.aggregateType,
    aggregateId: e.aggregateId,
    destination: e.destination,
    partition: e.partition,
    attempts: e.attempts,
    lastError: e.lastError,
    parked: e.parked,
    createdAt: e.createdAt.toISOString(),
    deadAt: e.history.at(-1)?.at ?? null,
  };
}

/** Runs `fn` on an outbox built from the command's configuration, schema checked, closed after. */
async function withOutbox<T>(flags: CommonOptions, fn: (outbox: Outbox) => Promise<T>): Promise<T> {
  const outbox = createOutbox(resolveConfig(flags));
  try {
    await outbox.store.checkSchema();
    return await fn(outbox);
  } finally {
    await outbox.close();
  }
}

function filters(command: Command): Command {
  return command
    .option('--destination <destination>', 'only this destination (exact)')
    .option('--type <type>', 'only this event type (exact)')
    .option(
      '--since <when>',
      'only events added since: a duration back from now (30m, 12h, 7d) or an ISO time',
    );
}

function listCommand(): Command {
  return filters(common(new Command('list')))
    .description('list dead letters, oldest first')
    .addOption(new Option('--limit <n>', `at most this many (default ${DEFAULT_LIMIT})`))
    .option('--json', 'print the result as JSON')
    .action(async (flags: FilterFlags & { limit?: string }) => {
      const limit = flags.limit === undefined ? DEFAULT_LIMIT : Number(flags.limit);
      if (!Number.isInteger(limit) || limit <= 0) {
        throw new OutboxError('INVALID_CONFIG', `--limit must be a positive integer, got "${flags.limit}"`);
      }
      const filter = deadFilter(flags);
      await withOutbox(flags, async (outbox) => {
        const found = await outbox.store.list({ ...filter, limit: limit + 1 });
        const deadLetters = found.slice(0, limit).map(summary);
        const more = found.length > limit;
        if (flags.json) console.log(JSON.stringify({ deadLetters, count: deadLetters.length, more }));
        else console.log(formatList(deadLetters, more));
      });
    });
}

function formatList(deadLetters: readonly DeadLetterSummary[], more: boolean): string {
  if (deadLetters.length === 0) return 'no dead letters';
  const now = Date.now();
  const rows = deadLetters.map((d) => [
    d.id,
    d.type,
    d.destination,
    String(d.attempts),
    d.deadAt === null ? '-' : `${formatAge(Math.max(0, now - Date.parse(d.deadAt)))} ago`,
    oneLine(d.lastError ?? '', ERROR_COLUMN_WIDTH) + (d.parked ? ' [parked]' : ''),
  ]);
  const table = formatTable(
    [['id', 'type', 'destination', 'attempts', 'dead since', 'last error'], ...rows],
    [0, 1, 2, 5],
  );
  const count = `${deadLetters.length} dead letter${deadLetters.length === 1 ? '' : 's'}`;
  return `${table}\n${more ? `${count} shown, more match: raise --limit or narrow the filters` : count}`;
}

function oneLine(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
}

function showCommand(): Command {
  return common(new Command('show'))
    .description(
      'one event with its attempt history (payload and header values hidden unless --show-payload)',
    )
    .argument('<id>', 'the event id')
    .option('--show-payload', 'print the payload and the header values')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, flags: CommonOptions & { showPayload?: boolean; json?: boolean }) => {
      await withOutbox(flags, async (outbox) => {
        const event = await outbox.store.get(id);
        if (!event) {
          process.stderr.write(`outbox: no event with id ${id}\n`);
          process.exitCode = 1;
          return;
        }
        const view = eventView(event, flags.showPayload === true);
        console.log(flags.json ? JSON.stringify(view) : formatEvent(view));
      });
    });
}

/** `dlq show --json`: the event, its payload and header values only when asked for. */
function eventView(e: EventRecord, reveal: boolean) {
  return {
    ...summary(e),
    status: e.status,
    availableAt: e.availableAt.toISOString(),
    publishedAt: e.publishedAt?.toISOString() ?? null,
    headerNames: Object.keys(e.headers),
    headers: reveal ? e.headers : null,
    payloadBytes: Buffer.byteLength(e.payload),
    payload: reveal ? (JSON.parse(e.payload) as unknown) : null,
    payloadRedacted: !reveal,
    history: e.history,
  };
}

function formatEvent(v: ReturnType<typeof eventView>): string {
  const now = Date.now();
  const ago = (iso: string) => `${iso} (${formatAge(Math.max(0, now - Date.parse(iso)))} ago)`;
  const status =
    v.status === 'dead' && v.parked
      ? 'dead, parked: later events of its key wait until it is retried or discarded'
      : v.status;
  const fields: [string, string][] = [
    ['id', v.id],
    ['status', status],
    ['type', v.type],
    ['key', v.key],
    ['aggregate', v.aggregateType === null ? '-' : `${v.aggregateType} ${v.aggregateId}`],
    ['destination', v.destination],
    ['partition', String(v.partition)],
    ['attempts', String(v.attempts)],
    ['created', ago(v.createdAt)],
    ['last error', v.lastError ?? '-'],
    [
      'headers',
      v.headers
        ? JSON.stringify(v.headers)
        : v.headerNames.length === 0
          ? '-'
          : `${v.headerNames.join(', ')} (values hidden: --show-payload)`,
    ],
    [
      'payload',
      v.payloadRedacted
        ? `hidden, ${v.payloadBytes} bytes (--show-payload prints it)`
        : JSON.stringify(v.payload, null, 2),
    ],
  ];
  const width = Math.max(...fields.map(([k]) => k.length));
  const lines = fields.map(
    ([k, value]) => `${k.padEnd(width)}  ${value.replace(/\n/g, `\n${' '.repeat(width + 2)}`)}`,
  );
  if (v.history.length > 0) {
    lines.push('', `attempt history (oldest first, the most recent ${v.history.length} kept):`);
    lines.push(
      formatTable([['at', 'relay', 'error'], ...v.history.map((h) => [h.at, h.relay, h.error])], [0, 1, 2]),
    );
  }
  return lines.join('\n');
}

type Action = 'retry' | 'discard';

function actionCommand(action: Action): Command {
  const verb = action === 'retry' ? 'retried' : 'discarded';
  return filters(common(new Command(action)))
    .description(
      action === 'retry'
        ? 'put dead letters back to pending, same ids (consumers dedupe by id), attempts reset'
        : 'delete dead letters for good',
    )
    .argument('[ids...]', 'event ids')
    .option('--all', 'every dead letter matching the filters (without a filter: needs --yes)')
    .option('--yes', 'confirm --all without a filter')
    .option('--json', 'print the result as JSON')
    .action(async (ids: string[], flags: FilterFlags & { all?: boolean; yes?: boolean }) => {
      if (flags.all === true ? ids.length > 0 : ids.length === 0) {
        throw new OutboxError('INVALID_CONFIG', `dlq ${action} takes event ids or --all, one of the two`);
      }
      if (ids.length > 0 && hasFilter(flags)) {
        throw new OutboxError(
          'INVALID_CONFIG',
          '--destination, --type and --since go with --all, not with ids',
        );
      }
      const filter = deadFilter(flags);
      await withOutbox(flags, async (outbox) => {
        if (flags.all && !hasFilter(flags) && !flags.yes) {
          const { dead } = await outbox.status();
          throw new OutboxError(
            'INVALID_CONFIG',
            `--all without a filter would ${action} every dead letter (${dead} now): add --yes to confirm`,
          );
        }
        const result = flags.all
          ? { done: await applyToAll(outbox, action, filter), skipped: [] }
          : await applyToIds(outbox, action, ids);
        if (result.skipped.length > 0) process.exitCode = 1;
        if (flags.json) {
          console.log(JSON.stringify({ [verb]: result.done, skipped: result.skipped }));
          return;
        }
        const noun = `dead letter${result.done === 1 ? '' : 's'}`;
        console.log(
          action === 'retry'
            ? `retried ${result.done} ${noun}: pending again with the same ids, so consumers' dedupe still applies`
            : `discarded ${result.done} ${noun}`,
        );
        for (const s of result.skipped) console.log(`  skipped ${s.id}: ${s.reason}`);
      });
    });
}

interface Skipped {
  readonly id: string;
  readonly reason: string;
}

/** One statement per id, so each id's outcome is known; a no-op is explained by reading the event. */
async function applyToIds(
  outbox: Outbox,
  action: Action,
  ids: readonly string[],
): Promise<{ done: number; skipped: Skipped[] }> {
  const skipped: Skipped[] = [];
  let done = 0;
  for (const id of new Set(ids)) {
    if ((await run(outbox, action, [id])) === 1) {
      done++;
      continue;
    }
    const event = await outbox.store.get(id);
    skipped.push({ id, reason: event ? `not a dead letter (status ${event.status})` : 'not found' });
  }
  return { done, skipped };
}

/** Pages through the matching dead letters; each page acted on leaves the next ones first. */
async function applyToAll(outbox: Outbox, action: Action, filter: ListFilter): Promise<number> {
  const seen = new Set<string>();
  let done = 0;
  for (;;) {
    const page = (await outbox.store.list({ ...filter, limit: PAGE }))
      .map((e) => e.id)
      .filter((id) => !seen.has(id));
    if (page.length === 0) return done;
    for (const id of page) seen.add(id);
    done += await run(outbox, action, page);
  }
}

function run(outbox: Outbox, action: Action, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return Promise.resolve(0);
  return action === 'retry' ? outbox.store.retryDead(ids) : outbox.store.discardDead(ids);
}

export function dlqCommand(): Command {
  return new Command('dlq')
    .description('dead letters: list, show, retry, discard')
    .addCommand(listCommand())
    .addCommand(showCommand())
    .addCommand(actionCommand('retry'))
    .addCommand(actionCommand('discard'));
}
