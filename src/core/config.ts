/**
 * The configuration shape, one for code (`createOutbox(config)`) and for `outbox.config.json`:
 * database, routes, publishers, limits and relay settings. Validated once, naming the bad key.
 */
import { z } from 'zod';
import { OutboxError } from './errors.js';

function positiveInt() {
  return z.number().int().positive();
}

const glob = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const routeSchema = z.strictObject({
  type: glob.optional(),
  aggregateType: glob.optional(),
  destination: z.string().min(1).optional(),
  publisher: z.string().min(1).optional(),
  allow: z.array(z.string().min(1)).min(1).optional(),
});

export const databaseSchema = z.strictObject({
  url: z.string().min(1),
  schema: z.string().optional(),
  table: z.string().optional(),
  notify: z.boolean().optional(),
  retainPublished: z.boolean().optional(),
  poolSize: z.number().int().positive().optional(),
  busyTimeoutMs: z.number().int().positive().optional(),
  prepareStatements: z.boolean().optional(),
  partitions: z.number().int().min(1).max(4096).optional(),
});

const publisherCommon = {
  url: z.string().min(1),
  source: z.string().min(1).optional(),
  timeoutMs: positiveInt().optional(),
  mode: z.enum(['binary', 'structured']).optional(),
};

/** Options per publisher kind: strict, so a misspelt `secret` is an error, not an unsigned webhook. */
export const publisherSchemas = {
  nats: z.strictObject(publisherCommon),
  http: z.strictObject({
    ...publisherCommon,
    secret: z.string().min(1).optional(),
    headers: z.record(z.string(), z.string()).optional(),
    concurrency: positiveInt().optional(),
  }),
  redis: z.strictObject({ ...publisherCommon, maxLen: positiveInt().optional() }),
  mqtt: z.strictObject({
    ...publisherCommon,
    qos: z.union([z.literal(1), z.literal(2)]).optional(),
    protocolVersion: z.union([z.literal(4), z.literal(5)]).optional(),
    clientId: z.string().min(1).optional(),
  }),
  amqp: z.strictObject(publisherCommon),
  kafka: z.strictObject({
    ...publisherCommon,
    clientId: z.string().min(1).optional(),
    idempotent: z.boolean().optional(),
    maxBatchBytes: positiveInt().optional(),
  }),
} as const;

/** A publisher given by URL, with its options; checked against its kind's schema by createOutbox(). */
export const publisherConfigSchema = z.looseObject({ url: z.string().min(1) });

const positive = z.number().int().positive();
const deadLetterPolicy = z.enum(['continue', 'park']);

export const relaySchema = z.strictObject({
  batchSize: positive.optional(),
  maxAttempts: positive.optional(),
  backoff: z.strictObject({ baseMs: positive.optional(), capMs: positive.optional() }).optional(),
  pollIntervalMs: positive.optional(),
  leaseTtlMs: positive.optional(),
  historyLimit: positive.optional(),
  shutdownTimeoutMs: positive.optional(),
  publishTimeoutMs: positive.optional(),
  relayId: z.string().min(1).optional(),
  onDeadLetter: z.union([deadLetterPolicy, z.record(z.string().min(1), deadLetterPolicy)]).optional(),
  retention: z
    .strictObject({
      keepPublishedForMs: positive,
      purgeEveryMs: positive.optional(),
      batchSize: positive.optional(),
      pauseMs: z.number().int().min(0).optional(),
    })
    .optional(),
});

/** The JSON file form; in code, `database` and `publishers` entries may also be instances. */
export const fileConfigSchema = z.strictObject({
  $schema: z.string().optional(),
  database: z.union([z.string().min(1), databaseSchema]).optional(),
  routes: z.array(routeSchema).optional(),
  publishers: z.record(z.string().min(1), z.union([z.string().min(1), publisherConfigSchema])).optional(),
  maxPayloadBytes: positive.optional(),
  strictPayload: z.boolean().optional(),
  relay: relaySchema.optional(),
});

export type FileConfig = z.infer<typeof fileConfigSchema>;
export type DatabaseConfig = z.infer<typeof databaseSchema>;
export type PublisherConfig = z.infer<typeof publisherConfigSchema>;

/** Parses with `schema`, turning the first problem into INVALID_CONFIG naming its key path. */
export function parseConfig<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  throw new OutboxError('INVALID_CONFIG', `${where}${path}: ${issue.message}`, {
    details: { path: issue.path.map(String) },
  });
}
