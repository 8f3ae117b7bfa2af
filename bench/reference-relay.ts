/**
 * The reference relay: the outbox relay people write by hand, kept honest and reasonably
 * efficient because it is the bar ours is measured against.
 *
 * - Its own table: bigint identity id, key, type, destination, jsonb payload, status; a partial
 *   index on pending ids; a statement-level trigger queues `pg_notify` in the writer's
 *   transaction (delivered at COMMIT, one per statement, no extra round trip for the writer).
 * - Claim: `UPDATE … SET status = 'processing' WHERE id IN (SELECT id … WHERE status = 'pending'
 *   ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …`.
 * - Publish: every message of the batch at once (no per-key order: that is what it gives up).
 * - Settle: one DELETE of the delivered ids; failures go back to 'pending'.
 * - Wake-up: LISTEN on a dedicated connection; polls every `pollIntervalMs` as a safety net,
 *   and loops at once while batches come back full.
 *
 * It does not recover rows left 'processing' by a crash (a real one needs a visibility
 * timeout), keeps no attempt count or dead letters and does not order per key.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { newTiming, type RelayTiming } from './timing.js';

/** One claimed row, as the reference hands it to its target. */
export interface ReferenceMessage {
  readonly id: string;
  readonly key: string;
  readonly type: string;
  readonly destination: string;
  /** JSON text. */
  readonly payload: string;
}

/** Delivers one message; a rejection leaves the row for the next batch. */
export type ReferenceTarget = (message: ReferenceMessage) => Promise<void>;

export interface ReferenceRelayOptions {
  readonly url: string;
  readonly schema: string;
  readonly table?: string;
  readonly batchSize: number;
  readonly pollIntervalMs?: number;
  readonly target: ReferenceTarget;
}

export const REFERENCE_TABLE = 'ref_outbox';
/** The same table without the NOTIFY trigger (write overhead with no wake-up at all). */
export const REFERENCE_SILENT_TABLE = 'ref_outbox_silent';

const q = (name: string) => `"${name}"`;

export function referenceChannel(schema: string, table = REFERENCE_TABLE): string {
  return `${schema}.${table}`;
}

/** DDL of the reference's table, its index and (unless `notify` is false) its NOTIFY trigger. */
export function referenceSchemaSql(schema: string, table = REFERENCE_TABLE, notify = true): string {
  const t = `${q(schema)}.${q(table)}`;
  const fn = `${q(schema)}.${q(`${table}_notify`)}`;
  const channel = referenceChannel(schema, table).replaceAll("'", "''");
  const create = `
CREATE TABLE ${t} (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key text NOT NULL,
  type text NOT NULL,
  destination text NOT NULL,
  payload jsonb NOT NULL,
  status text NOT NULL DEFAULT 'pending',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ${q(`${table}_pending`)} ON ${t} (id) WHERE status = 'pending';`;
  if (!notify) return create;
  return `${create}
CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${channel}', '');
  RETURN NULL;
END $$;
CREATE TRIGGER ${q(`${table}_notify`)} AFTER INSERT ON ${t}
  FOR EACH STATEMENT EXECUTE FUNCTION ${fn}();`;
}

/** The writer's INSERT of one event (the trigger adds the NOTIFY). */
export function referenceInsertSql(schema: string, table = REFERENCE_TABLE): string {
  return `INSERT INTO ${q(schema)}.${q(table)} (key, type, destination, payload) VALUES ($1, $2, $3, $4)
    RETURNING id`;
}

/** The same INSERT for many events: parameters are one array per column. */
export function referenceBatchInsertSql(schema: string, table = REFERENCE_TABLE): string {
  return `INSERT INTO ${q(schema)}.${q(table)} (key, type, destination, payload)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])`;
}

export class ReferenceRelay extends EventEmitter {
  /** Time in claim, publish (one call per batch) and delete. */
  readonly timing: RelayTiming = newTiming();
  readonly #o: Required<ReferenceRelayOptions>;
  readonly #pool: pg.Pool;
  readonly #sql: { claim: string; remove: string; release: string };
  #listener: pg.Client | undefined;
  #running: Promise<void> | undefined;
  #stopping = false;
  #wakePending = false;
  #wake: (() => void) | undefined;

  constructor(options: ReferenceRelayOptions) {
    super();
    this.#o = { table: REFERENCE_TABLE, pollIntervalMs: 250, ...options };
    this.#pool = new pg.Pool({ connectionString: options.url, max: 2 });
    this.#pool.on('error', () => {});
    const t = `${q(this.#o.schema)}.${q(this.#o.table)}`;
    this.#sql = {
      claim: `UPDATE ${t} SET status = 'processing' WHERE id IN (
          SELECT id FROM ${t} WHERE status = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING id, key, type, destination, payload::text AS payload`,
      remove: `DELETE FROM ${t} WHERE id = ANY($1::bigint[])`,
      release: `UPDATE ${t} SET status = 'pending' WHERE id = ANY($1::bigint[])`,
    };
  }

  async start(): Promise<void> {
    if (this.#running) return;
    const listener = new pg.Client({ connectionString: this.#o.url });
    listener.on('error', () => {});
    await listener.connect();
    listener.on('notification', () => this.wake());
    await listener.query(`LISTEN ${q(referenceChannel(this.#o.schema, this.#o.table))}`);
    this.#listener = listener;
    this.#running = this.#loop();
  }

  wake(): void {
    this.#wakePending = true;
    this.#wake?.();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.wake();
    await this.#running;
    await this.#listener?.end().catch(() => {});
    await this.#pool.end();
  }

  async #loop(): Promise<void> {
    while (!this.#stopping) {
      try {
        const startedAt = performance.now();
        const { rows } = await this.#pool.query(this.#sql.claim, [this.#o.batchSize]);
        this.#time('claim', startedAt);
        if (rows.length > 0) await this.#publish(rows as ReferenceMessage[]);
        if (rows.length < this.#o.batchSize) await this.#sleep(this.#o.pollIntervalMs);
      } catch (error) {
        this.emit('loop-error', error);
        await this.#sleep(100);
      }
    }
  }

  async #publish(rows: readonly ReferenceMessage[]): Promise<void> {
    let startedAt = performance.now();
    const outcomes = await Promise.allSettled(rows.map((row) => this.#o.target(row)));
    this.#time('publish', startedAt);
    const delivered: string[] = [];
    const failed: string[] = [];
    outcomes.forEach((o, i) => {
      (o.status === 'fulfilled' ? delivered : failed).push(rows[i]!.id);
    });
    startedAt = performance.now();
    if (delivered.length > 0) await this.#pool.query(this.#sql.remove, [delivered]);
    if (failed.length > 0) await this.#pool.query(this.#sql.release, [failed]);
    this.#time('settle', startedAt);
    this.emit('batch', { published: delivered.length, failed: failed.length });
  }

  #time(call: keyof RelayTiming, startedAt: number): void {
    this.timing[call].calls++;
    this.timing[call].ms += performance.now() - startedAt;
  }

  #sleep(ms: number): Promise<void> {
    if (this.#wakePending || this.#stopping) {
      this.#wakePending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        this.#wakePending = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}
