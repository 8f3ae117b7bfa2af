/**
 * Generates the Prisma client of test/fixtures/prisma/schema.prisma into .tmp/prisma-client and
 * loads it. Runs offline: `prisma generate` only needs a schema engine file to exist (it would
 * download one), so PRISMA_SCHEMA_ENGINE_BINARY points at a stub, and telemetry is off.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const fixtures = fileURLToPath(new URL('../fixtures/prisma/', import.meta.url));
/** Where schema.prisma's generator writes (it is gitignored). */
const OUTPUT = fileURLToPath(new URL('../../.tmp/prisma-client/', import.meta.url));

/** The part of the generated module the suite uses. */
export interface GeneratedPrisma {
  PrismaClient: new (options: { adapter: unknown }) => PrismaClientLike;
}

export interface PrismaClientLike {
  $transaction<T>(
    fn: (tx: PrismaTxLike) => Promise<T>,
    options?: { timeout?: number; maxWait?: number },
  ): Promise<T>;
  $queryRawUnsafe<T = unknown>(sql: string, ...values: unknown[]): Promise<T>;
  $executeRawUnsafe(sql: string, ...values: unknown[]): Promise<number>;
  $disconnect(): Promise<void>;
  biz: { create(args: { data: { id: string } }): Promise<unknown> };
}

/** A transaction's client: the same, less what Prisma leaves out of it. */
export type PrismaTxLike = Omit<PrismaClientLike, '$disconnect'>;

/** Runs `prisma generate` (no network) and imports the client it wrote. */
export async function generatePrismaClient(): Promise<GeneratedPrisma> {
  const cli = join(dirname(createRequire(import.meta.url).resolve('prisma/package.json')), 'build/index.js');
  await promisify(execFile)(
    process.execPath,
    [cli, 'generate', '--schema', join(fixtures, 'schema.prisma')],
    {
      env: {
        ...process.env,
        PRISMA_SCHEMA_ENGINE_BINARY: join(fixtures, 'schema-engine.sh'),
        CHECKPOINT_DISABLE: '1',
        PRISMA_HIDE_UPDATE_MESSAGE: '1',
      },
      timeout: 120_000,
    },
  );
  // A computed specifier: the client exists only once generated, so tsc must not resolve it.
  return (await import(pathToFileURL(join(OUTPUT, 'client.ts')).href)) as GeneratedPrisma;
}
