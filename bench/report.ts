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
  /** The bar of issue 2, when this row has one. */
  readonly bar?: {
    readonly kind: 'ratio-at-least' | 'value-at-most';
    readonly value: number;
    /** Why the figure cannot count for the bar (e.g. the load did not reach its rate). */
    readonly invalid?: string;
  };
  readonly note?: string;
}

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
  if (unit === 'ms') return value < 10 ? value.toFixed(2) : value.toFixed(1);
  return Math.round(value).toLocaleString('en-US');
}

function ratioOf(row: ResultRow): number | undefined {
  if (row.ours === undefined || row.reference === undefined || row.reference === 0) return undefined;
  return row.ours / row.reference;
}

function barCell(row: ResultRow): string {
  if (!row.bar) return '';
  const ratio = ratioOf(row);
  if (row.bar.kind === 'ratio-at-least') {
    const met = ratio !== undefined && ratio >= row.bar.value;
    return `≥ ${row.bar.value.toFixed(1)}× ${ratio === undefined ? '?' : met ? 'met' : 'MISSED'}`;
  }
  const met = row.ours !== undefined && row.ours <= row.bar.value;
  const verdict = row.bar.invalid ? `MISSED (${row.bar.invalid})` : met ? 'met' : 'MISSED';
  return `≤ ${row.bar.value} ${row.unit} ${row.ours === undefined ? '?' : verdict}`;
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
      ratio === undefined ? '—' : `${ratio.toFixed(2)}× (${r.better} is better)`,
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
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB; Node ${m.node}; PostgreSQL ${m.postgres}; NATS ${m.nats}; load average at start ${m.loadAtStart}.`,
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
