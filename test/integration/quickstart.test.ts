/**
 * The package as users get it: `npm pack`, the tarball installed into a scratch folder, and
 * examples/01-quickstart run there with plain node. Also checks what the tarball holds (every
 * `exports` target, the bin, types; no sources or tests) and type-checks the README's TypeScript
 * against the packed types, so the README cannot drift from the API.
 *
 * Needs dist/ (npm test builds first). better-sqlite3 is linked from the repo's node_modules
 * instead of installed, so nothing is compiled; outbox's own dependencies come from the npm cache
 * that `npm ci` filled (the registry is the fallback).
 */
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  exports: Record<string, string | Record<string, string>>;
  bin: Record<string, string>;
};
const TIMEOUT_MS = 180_000;

function run(command: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}): string {
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    timeout: TIMEOUT_MS - 10_000,
    env: {
      // Not the settings of the `npm test` that runs us (lifecycle env would steer the child npm).
      ...Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !/^npm_(config|lifecycle|package)_/i.test(k)),
      ),
      ...extraEnv,
    },
  });
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} (in ${cwd}) exited ${result.status ?? result.signal}\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result.stdout;
}

/** Every file `exports` points at, normalised to 'dist/…' (package.json itself excluded). */
function exportTargets(): string[] {
  const targets = new Set<string>();
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (subpath === './package.json') continue;
    for (const file of typeof target === 'string' ? [target] : Object.values(target))
      targets.add(file.replace(/^\.\//, ''));
  }
  return [...targets];
}

/** The ```ts blocks of README.md. */
function readmeTypeScript(): string[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

describe('the packed package, installed like a user would', () => {
  let scratch: string;
  let app: string;
  let files: string[];

  beforeAll(() => {
    const missing = [...exportTargets(), ...Object.values(pkg.bin).map((b) => b.replace(/^\.\//, ''))].filter(
      (file) => !existsSync(join(root, file)),
    );
    if (missing.length > 0) {
      throw new Error(
        `dist/ is not built (missing ${missing.join(', ')}): run \`npm run build\` first (npm test does)`,
      );
    }
    scratch = mkdtempSync(join(tmpdir(), 'outbox-quickstart-'));
    const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', scratch], root)) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    files = info!.files.map((f) => f.path);

    app = join(scratch, 'app');
    mkdirSync(app);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }),
    );
    run(
      'npm',
      [
        'install',
        join(scratch, info!.filename),
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        '--loglevel=error',
      ],
      app,
    );
    symlinkSync(join(root, 'node_modules/better-sqlite3'), join(app, 'node_modules/better-sqlite3'));
  }, TIMEOUT_MS);

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('holds every exports target, the bin and the type declarations', () => {
    const inTarball = new Set(files);
    for (const target of exportTargets()) expect(inTarball.has(target), target).toBe(true);
    for (const bin of Object.values(pkg.bin)) expect(inTarball.has(bin.replace(/^\.\//, '')), bin).toBe(true);
    for (const target of exportTargets().filter((t) => t.endsWith('.js'))) {
      expect(inTarball.has(target.replace(/\.js$/, '.d.ts')), `types for ${target}`).toBe(true);
    }
    expect(inTarball.has('package.json')).toBe(true);
    expect(inTarball.has('README.md')).toBe(true);
  });

  it('holds no sources, tests, source maps or local files', () => {
    const unwanted = files.filter(
      (f) =>
        (f.endsWith('.ts') && !f.endsWith('.d.ts')) ||
        f.endsWith('.map') ||
        /^(src|test|bench|examples|\.ci|node_modules|dist-[^/]*)\//.test(f) ||
        /\.test\.|\.db$|\.tgz$/.test(f),
    );
    expect(unwanted).toEqual([]);
  });

  it('is ESM, and the installed entry points import', () => {
    const installed = JSON.parse(readFileSync(join(app, 'node_modules/outbox/package.json'), 'utf8'));
    expect(installed.type).toBe('module');
    const subpaths = Object.keys(pkg.exports).filter((s) => s !== './package.json');
    const script = subpaths
      .map((s) => `await import(${JSON.stringify(s === '.' ? pkg.name : `${pkg.name}/${s.slice(2)}`)});`)
      .join('\n');
    writeFileSync(join(app, 'imports.mjs'), `${script}\nconsole.log('ok');\n`);
    expect(run(process.execPath, ['imports.mjs'], app).trim()).toBe('ok');
  });

  it('runs examples/01-quickstart: the order commits with its event, and the event is published', () => {
    copyFileSync(join(root, 'examples/01-quickstart/index.mjs'), join(app, 'index.mjs'));
    // The example makes its database in os.tmpdir(): keep it inside the scratch folder we remove.
    const tmp = join(scratch, 'tmp');
    mkdirSync(tmp);
    const output = run(process.execPath, ['index.mjs'], app, { TMPDIR: tmp });
    expect(output).toContain(
      'published order.created to events.order.order.created: {"id":"o-1","total":42}',
    );
  });

  it("type-checks the README's TypeScript against the packed types", () => {
    const blocks = readmeTypeScript();
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    blocks.forEach((code, i) => {
      writeFileSync(join(app, `readme-${i + 1}.ts`), code);
    });
    // Type packages from the repo (@types/node, @types/better-sqlite3, @types/pg), as a user's own.
    symlinkSync(join(root, 'node_modules/@types'), join(app, 'node_modules/@types'));
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2023',
          lib: ['ES2023'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          strict: true,
          noEmit: true,
          // Our declarations must hold up in a project that checks libraries too.
          skipLibCheck: false,
        },
        include: ['readme-*.ts'],
      }),
    );
    run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', app], app);
  });
});
