/**
 * docs/errors.md and ERROR_CODES stay in step: every code has a section saying when it is thrown
 * and what to do, the page documents no code that does not exist, and every code-like string in
 * src/ is a real code.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/core/errors.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
const known = new Set<string>(ERROR_CODES);

/** `## CODE` headings of the page, with the text of each section. */
function sections(markdown: string): Map<string, string> {
  const out = new Map<string, string>();
  const parts = markdown.split(/^## /m).slice(1);
  for (const part of parts) {
    const newline = part.indexOf('\n');
    const heading = (newline < 0 ? part : part.slice(0, newline)).trim();
    if (out.has(heading)) throw new Error(`docs/errors.md has two sections "${heading}"`);
    out.set(heading, newline < 0 ? '' : part.slice(newline + 1));
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile() && d.name.endsWith('.ts'))
    .map((d) => join(d.parentPath, d.name));
}

// UPPER_SNAKE strings in src/ that are not error codes: our OUTBOX_* environment variables, and
// other libraries' codes (Node.js ERR_*, SQLite SQLITE_*, NATS/JetStream constants). Widen this
// only for a string that really is not one of ours; a typo in a code (say in a Set of codes the
// CLI branches on) must fail here, since the compiler cannot see it.
const NOT_A_CODE = /^(OUTBOX_|ERR_|SQLITE_|JS_|NATS_)/;

describe('docs/errors.md', () => {
  const documented = sections(doc);

  it('has a section for every code in ERROR_CODES', () => {
    const missing = ERROR_CODES.filter((code) => !documented.has(code));
    expect(missing, 'codes without a "## CODE" section in docs/errors.md').toEqual([]);
  });

  it('documents no code that does not exist', () => {
    const unknown = [...documented.keys()].filter((heading) => !known.has(heading));
    expect(unknown, '"## …" sections of docs/errors.md that are not in ERROR_CODES').toEqual([]);
  });

  it('lists the codes in the order of ERROR_CODES', () => {
    expect([...documented.keys()]).toEqual([...ERROR_CODES]);
  });

  it('says, for every code, when it is thrown and what to do', () => {
    const incomplete = [...documented].filter(
      ([, text]) => !text.includes('**When:**') || !text.includes('**What to do:**'),
    );
    expect(incomplete.map(([code]) => code)).toEqual([]);
  });
});

describe('error codes used in src/', () => {
  const files = sourceFiles(join(root, 'src'));
  const used = new Map<string, string>(); // code → first file:line using it
  for (const file of files) {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      // `new OutboxError('CODE'` (also across a line break) and any quoted UPPER_SNAKE string.
      for (const m of line.matchAll(/['"`]([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)['"`]/g)) {
        const code = m[1]!;
        if (!used.has(code)) used.set(code, `${file.slice(root.length)}:${i + 1}`);
      }
    });
  }

  it('finds the codes thrown in src/ (the scan works)', () => {
    expect(files.length).toBeGreaterThan(10);
    for (const code of ['INVALID_CONFIG', 'PAYLOAD_TOO_LARGE', 'NOT_IN_TRANSACTION', 'DIALECT_MISMATCH']) {
      expect(used.has(code), code).toBe(true);
    }
  });

  it('uses only codes that are in ERROR_CODES', () => {
    const strays = [...used]
      .filter(([code]) => !known.has(code) && !NOT_A_CODE.test(code))
      .map(([code, at]) => `${code} (${at})`);
    expect(strays, 'UPPER_SNAKE strings in src/ that are not in ERROR_CODES').toEqual([]);
  });

  it('passes a known code to every `new OutboxError(`', () => {
    const bad: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/new OutboxError\(\s*([^,)]*)/g)) {
        const arg = m[1]!.trim();
        const literal = /^'([A-Z0-9_]+)'$/.exec(arg)?.[1];
        // A variable (e.g. `code`) is typed ErrorCode by the compiler; a literal must be a known code.
        if (literal !== undefined && !known.has(literal)) bad.push(`${file.slice(root.length)}: ${arg}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
