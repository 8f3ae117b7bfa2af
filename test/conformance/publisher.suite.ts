/**
 * The publisher conformance suite: run unchanged against every real broker on the machine, with a
 * real consumer on that broker as the verifier (never the publisher's own acks). Each broker
 * brings a harness (how to make a publisher, a consumed destination, a consumer that decodes what
 * it receives) and capability flags for what it can or cannot do; a scenario a broker cannot do
 * is skipped with the reason, never passed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CloudEventsMode } from '../../src/core/envelope.js';
import type { OutboundMessage, Publisher } from '../../src/core/ports.js';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { createOutbox, PublishError, silentLogger } from '../../src/index.js';
import { sqliteStore } from '../../src/stores/sqlite.js';

/** One message as the broker's consumer decoded it (binary or structured mode alike). */
export interface Received {
  readonly destination: string;
  /** The CloudEvents attributes by spec name: specversion, id, type, source, subject, time, partitionkey. */
  readonly attributes: Readonly<Record<string, string>>;
  /** The payload's content type as the message declares it (binary: the transport's; structured: datacontenttype). */
  readonly contentType: string;
  /** The event's own headers (transport headers or properties that are not CloudEvents attributes). */
  readonly headers: Readonly<Record<string, string>>;
  /** The payload, as JSON text. */
  readonly data: string;
}

export interface Consumer {
  /** Everything received so far, in the order the broker delivered it. */
  readonly received: readonly Received[];
  /** Resolves once `count` messages arrived (rejects after `timeoutMs`). */
  waitFor(count: number, timeoutMs: number): Promise<readonly Received[]>;
  close(): Promise<void>;
}

export interface PublisherCapabilities {
  /** A second message with the same id is dropped by the broker. */
  readonly dedupeById: boolean;
  /**
   * A destination the broker does not know is a publish failure. Otherwise the reason it cannot
   * tell (the destination is created on write, or a message nobody routes is dropped quietly):
   * then only routes keep such events out, refused at add().
   */
  readonly unknownDestination: true | string;
  /** The broker takes structured mode; otherwise why not. */
  readonly structured: true | string;
}

export interface PublisherHarness {
  /** As printed in the test names, e.g. 'redis streams' or 'kafka (librdkafka mock)'. */
  readonly label: string;
  readonly capabilities: PublisherCapabilities;
  /** A publisher in the given mode; the suite closes it. */
  publisher(mode: CloudEventsMode): Publisher | Promise<Publisher>;
  /** A fresh destination that exists on the broker and can be consumed, unique to `name`. */
  destination(name: string): Promise<string>;
  /** A destination the broker cannot deliver to (only asked when `unknownDestination` is true). */
  unknownDestination(): Promise<string>;
  /** A real consumer on `destination`, started before anything is published to it. */
  consume(destination: string): Promise<Consumer>;
  close(): Promise<void>;
}

/** A harness, or the reason the broker cannot be tested here (printed, and the suite skipped). */
export type HarnessFactory = () => Promise<PublisherHarness | string>;

const WAIT_MS = 10_000;

function message(destination: string, n: number, extra: Partial<OutboundMessage> = {}): OutboundMessage {
  return {
    id: `0199a0c4-0000-7000-8000-${String(n).padStart(12, '0')}`,
    key: `order:${n % 3}`,
    type: 'order.created',
    destination,
    aggregateType: 'order',
    aggregateId: String(n % 3),
    payload: JSON.stringify({ n, text: 'grüße 🚀', nested: { list: [1, 2.5, null, true] } }),
    headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tenant: 'acme' },
    createdAt: new Date('2026-11-23T10:00:00.123Z'),
    attempt: 1,
    ...extra,
  };
}

export function publisherConformance(factory: HarnessFactory): void {
  let h: PublisherHarness;
  let skip: string | undefined;
  const opened: Publisher[] = [];

  beforeAll(async () => {
    const made = await factory();
    if (typeof made === 'string') {
      skip = made;
      console.warn(`SKIPPED: ${made}`);
    } else h = made;
  }, 60_000);
  afterAll(async () => {
    await Promise.all(opened.map((p) => p.close?.()));
    await h?.close();
  });
  beforeEach((ctx) => {
    if (skip) ctx.skip(skip);
  });

  async function publisher(mode: CloudEventsMode = 'binary'): Promise<Publisher> {
    const p = await h.publisher(mode);
    opened.push(p);
    return p;
  }

  function expectDelivered(got: Received, sent: OutboundMessage, mode: CloudEventsMode) {
    expect(got.attributes).toMatchObject({
      specversion: '1.0',
      id: sent.id,
      type: sent.type,
      subject: sent.aggregateId,
      time: sent.createdAt.toISOString(),
      partitionkey: sent.key,
    });
    expect(got.attributes.source).toBeTruthy();
    expect(got.contentType).toBe('application/json');
    expect(got.headers).toMatchObject(sent.headers);
    if (mode === 'binary') expect(got.data).toBe(sent.payload);
    else expect(JSON.parse(got.data)).toEqual(JSON.parse(sent.payload));
  }

  it('every message arrives with its id, its CloudEvents attributes, its own headers and its payload (binary mode)', async () => {
    const destination = await h.destination('binary');
    const consumer = await h.consume(destination);
    try {
      const sent = [message(destination, 1), message(destination, 2)];
      const results = await (await publisher()).publish(sent);
      expect(results).toEqual([{ ok: true }, { ok: true }]);
      const got = await consumer.waitFor(2, WAIT_MS);
      const byId = new Map(got.map((r) => [r.attributes.id, r]));
      for (const m of sent) expectDelivered(byId.get(m.id)!, m, 'binary');
      expect(got.every((r) => r.destination === destination)).toBe(true);
    } finally {
      await consumer.close();
    }
  });

  it('structured mode: one JSON document with the same attributes and the payload as data', async (ctx) => {
    const { structured } = h.capabilities;
    if (structured !== true) return ctx.skip(structured);
    const destination = await h.destination('structured');
    const consumer = await h.consume(destination);
    try {
      const sent = message(destination, 7);
      expect(await (await publisher('structured')).publish([sent])).toEqual([{ ok: true }]);
      const [got] = await consumer.waitFor(1, WAIT_MS);
      expectDelivered(got!, sent, 'structured');
    } finally {
      await consumer.close();
    }
  });

  it('a destination the broker does not know is a failure, never "published"', async (ctx) => {
    const { unknownDestination } = h.capabilities;
    if (unknownDestination !== true) return ctx.skip(unknownDestination);
    const known = await h.destination('known');
    const consumer = await h.consume(known);
    try {
      const unknown = await h.unknownDestination();
      const results = await (await publisher()).publish([message(unknown, 1), message(known, 2)]);
      expect(results[0]!.ok).toBe(false);
      if (!results[0]!.ok) expect(results[0]!.error).toBeInstanceOf(PublishError);
      // The other message of the same call is not dragged down with it.
      expect(results[1]).toEqual({ ok: true });
      const got = await consumer.waitFor(1, WAIT_MS);
      expect(got.map((r) => r.attributes.id)).toEqual([message(known, 2).id]);
    } finally {
      await consumer.close();
    }
  });

  it('through the relay: every event of the ledger arrives, in order per key', async () => {
    const destination = await h.destination('relay');
    const consumer = await h.consume(destination);
    const dir = mkdtempSync(join(tmpdir(), 'outbox-publisher-'));
    let closeDb = () => {};
    const path = join(dir, 'app.db');
    const outbox = createOutbox({
      database: sqliteStore({ path }),
      publishers: { broker: await publisher() },
      routes: [{ destination }],
      relay: { logger: silentLogger, batchSize: 50 },
    });
    try {
      await outbox.migrate();
      const db = new Database(path);
      closeDb = () => db.close();
      db.exec('CREATE TABLE ledger (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, key TEXT NOT NULL)');
      const record = db.prepare('INSERT INTO ledger (id, key) VALUES (?, ?)');
      for (let i = 0; i < 200; i++) {
        db.transaction(() => {
          const event = {
            type: 'order.updated',
            aggregateType: 'order',
            aggregateId: `k${i % 7}`,
            payload: { i },
          };
          const id = outbox.add(fromBetterSqlite3(db), event) as string;
          record.run(id, `order:k${i % 7}`);
        })();
      }
      const relay = outbox.relay();
      await relay.drain();
      const got = await consumer.waitFor(200, WAIT_MS);
      const ledger = db.prepare('SELECT id, key FROM ledger ORDER BY seq').all() as {
        id: string;
        key: string;
      }[];
      expect(new Set(got.map((r) => r.attributes.id))).toEqual(new Set(ledger.map((e) => e.id)));
      for (const key of new Set(ledger.map((e) => e.key))) {
        const expected = ledger.filter((e) => e.key === key).map((e) => e.id);
        const seen: string[] = [];
        for (const { attributes: a } of got) {
          if (a.partitionkey === key && a.id !== undefined && !seen.includes(a.id)) seen.push(a.id);
        }
        expect(seen, `order of key ${key}`).toEqual(expected);
      }
    } finally {
      closeDb();
      await outbox.close();
      rmSync(dir, { recursive: true, force: true });
      await consumer.close();
    }
  });
}

/** Runs the suite under a describe named after the broker. */
export function describePublisher(label: string, factory: HarnessFactory): void {
  describe(`publisher conformance: ${label}`, () => publisherConformance(factory));
}
