/**
 * Output: progress lines on stderr while a scenario runs, then one table (markdown, aligned so
 * it reads well in a terminal too) on stdout and between the markers of docs/performance.md.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { MachineInfo } from './env.js';

export interface ResultRow {
  readonly scenario: string;
  readonly unit: string;
  readonly ours: number | undefined;
  readonly reference: number | undefined;
  /** Which way is better, for reading the ratio. */
  readonly better: 'higher' | 'lower';
  /** The bar of issue 3 or 4, when this row has one. */
  readonly bar?: Bar;
  readonly note?: string;
}

/**
 * How a row is judged: ours / reference at least (or at most) `value`; ours at most `value` (in the row's
 * unit); ours / `of` at least `value` (a share of a baseline that is not the reference, e.g.
 * business-only transactions); or a yes/no `check` computed by the scenario.
 * `invalid` says why the figure cannot count for the bar (e.g. the load did not reach its rate).
 */
export type Bar =
  | { readonly kind: 'ratio-at-least'; readonly value: number; readonly invalid?: string }
  | { readonly kind: 'ratio-at-most'; readonly value: number; readonly invalid?: string }
  | { readonly kind: 'value-at-most'; readonly value: number; readonly invalid?: string }
  | {
      readonly kind: 'share-at-least';
      readonly value: number;
      readonly of: number;
      readonly ofLabel: string;
      readonly invalid?: string;
    }
  | { readonly kind: 'check'; readonly text: string; readonly met: boolean; readonly invalid?: string };

export const BEGIN_MARKER =
  '<!-- bench:begin (written by npm run bench; edits between the markers are lost) -->';
export const END_MARKER = '<!-- bench:end -->';

/** A status line on stderr: rewritten in place on a terminal, every ~2 s otherwise. */
export function progress(label: string): { update(text: string): void; done(text: string): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  return {
    update(text) {
      const now = Date.now();
      if (tty) process.stderr.write(`\r\x1b[2K  ${label}: ${text}`);
      else if (now - last >= 2_000) process.stderr.write(`  ${label}: ${text}\n`);
      last = now;
    },
    done(text) {
      process.stderr.write(`${tty ? '\r\x1b[2K' : ''}  ${label}: ${text}\n`);
    },
  };
}

export function formatNumber(value: number, unit: string): string {
  if (!Number.isFinite(value)) return value > 0 ? '∞' : '—';
  if (unit === 'ms' || unit === 'µs') return value < 10 ? value.toFixed(2) : value.toFixed(1);
  if (unit === 'MB') return value.toFixed(1);
  return Math.round(value).toLocaleString('en-US');
}

/**
 * Two decimals, cut toward the worse side (down when higher is better), so that a ratio just
 * short of a bar never prints as the bar's own value.
 */
function formatRatio(ratio: number, better: ResultRow['better']): string {
  const hundredths = ratio * 100;
  const cut = better === 'higher' ? Math.floor(hundredths + 1e-9) : Math.ceil(hundredths - 1e-9);
  return (cut / 100).toFixed(2);
}

function ratioOf(row: ResultRow): number | undefined {
  if (row.ours === undefined || row.reference === undefined || row.reference === 0) return undefined;
  const ratio = row.ours / row.reference;
  return Number.isFinite(ratio) ? ratio : undefined;
}

/** The bar's text and whether it is met (undefined: no figure to judge). */
function judge(row: ResultRow, bar: Bar): [string, boolean | undefined] {
  switch (bar.kind) {
    case 'ratio-at-least': {
      const ratio = ratioOf(row);
      return [`≥ ${bar.value}×`, ratio === undefined ? undefined : ratio >= bar.value];
    }
    case 'ratio-at-most': {
      const ratio = ratioOf(row);
      return [`≤ ${bar.value}×`, ratio === undefined ? undefined : ratio <= bar.value];
    }
    case 'value-at-most':
      return [`≤ ${bar.value} ${row.unit}`, row.ours === undefined ? undefined : row.ours <= bar.value];
    case 'share-at-least': {
      const share = row.ours === undefined || bar.of === 0 ? undefined : row.ours / bar.of;
      const text = `≥ ${bar.value}× ${bar.ofLabel}${share === undefined ? '' : ` (${formatRatio(share, 'higher')}×)`}`;
      return [text, share === undefined ? undefined : share >= bar.value];
    }
    case 'check':
      return [bar.text, bar.met];
  }
}

function barCell(row: ResultRow): string {
  if (!row.bar) return '';
  const [text, met] = judge(row, row.bar);
  if (met === undefined) return `${text} ?`;
  if (row.bar.invalid) return `${text} MISSED (${row.bar.invalid})`;
  return `${text} ${met ? 'met' : 'MISSED'}`;
}

export function renderTable(rows: readonly ResultRow[]): string {
  const header = ['scenario', 'unit', 'ours', 'reference', 'ours / ref', 'bar', 'notes'];
  const body = rows.map((r) => {
    const ratio = ratioOf(r);
    return [
      r.scenario,
      r.unit,
      r.ours === undefined ? '—' : formatNumber(r.ours, r.unit),
      r.reference === undefined ? '—' : formatNumber(r.reference, r.unit),
      ratio === undefined ? '—' : `${formatRatio(ratio, r.better)}× (${r.better} is better)`,
      barCell(r),
      r.note ?? '',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]!.length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i >= 2 && i <= 4 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), rule, ...body.map(line)].join('\n');
}

export function renderMachine(m: MachineInfo, settings: string): string {
  return [
    `Run ${m.date} UTC, commit ${m.commit}.`,
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB; Node ${m.node}; PostgreSQL ${m.postgres}; ` +
      `${m.mariadb ? `MariaDB ${m.mariadb}; ` : ''}SQLite ${m.sqlite}; NATS ${m.nats}; load average at start ${m.loadAtStart}.`,
    settings,
  ].join('\n');
}

/** Replaces the text between the markers (adding them, after `intro`, when the file has none). */
export function writeDocs(path: string, intro: string, section: string): void {
  const block = `${BEGIN_MARKER}\n\n${section}\n\n${END_MARKER}`;
  const current = existsSync(path) ? readFileSync(path, 'utf8') : `${intro.trimEnd()}\n`;
  const begin = current.indexOf('<!-- bench:begin');
  const end = current.indexOf(END_MARKER);
  const next =
    begin >= 0 && end > begin
      ? `${current.slice(0, begin)}${block}${current.slice(end + END_MARKER.length)}`
      : `${current.trimEnd()}\n\n${block}\n`;
  writeFileSync(path, next);
}
