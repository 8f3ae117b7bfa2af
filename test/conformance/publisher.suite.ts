/**
 * The publisher conformance suite: run unchanged against every real broker on the machine, with a
 * real consumer on that broker as the verifier (never the publisher's own acks). Each broker
 * brings a harness (how to make a publisher, a consumed destination, a consumer that decodes what
 * it receives) and capability flags for what it can or cannot do; a scenario a broker cannot do
 * is skipped with the reason, never passed. The fault scenarios (a broker outage, a lost ack) use
 * optional hooks: a private broker the harness may stop, or a path to the broker that loses its
 * replies; a harness without them has the scenario skipped with its reason.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CloudEventsMode } from '../../src/core/envelope.js';
import type { OutboundMessage, Publisher } from '../../src/core/ports.js';
import { PublishError } from '../../src/index.js';
import type { BatchReport } from '../../src/relay/relay.js';
import { distinctIds, expectLedgerDelivered, ledgerRun } from '../helpers/ledger.js';

/** One message as the broker's consumer decoded it (binary or structured mode alike). */
export interface Received {
  readonly destination: string;
  /**
   * The CloudEvents attributes by spec name: specversion, id, type, source, subject, time,
   * partitionkey, and traceparent / tracestate when the event had a trace context.
   */
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

/**
 * A broker of the test's own (a private server, or the shared one behind a proxy), which the
 * test may take away and bring back on the same address.
 */
export interface OutageRig {
  /** A binary-mode publisher to it, with a publish timeout shorter than the outage; the suite closes it. */
  readonly publisher: Publisher;
  /** A destination on it that `consumer` reads. */
  readonly destination: string;
  /** A real consumer that outlives the outage (it reconnects and misses nothing the broker kept). */
  readonly consumer: Consumer;
  /** Takes the broker away (stopped, or unreachable); what it acknowledged stays. */
  stop(): Promise<void>;
  /** Brings it back on the same address. */
  start(): Promise<void>;
  /** Ends the consumer and whatever the rig started (servers, proxies, files). */
  close(): Promise<void>;
}

/** A way to the broker on which the broker's replies can be lost while what the client sends arrives. */
export interface LossyPath {
  /** A binary-mode publisher whose connections take this path; the suite closes it. */
  readonly publisher: Publisher;
  readonly destination: string;
  /** A real consumer on the broker itself, not through the path. */
  readonly consumer: Consumer;
  /**
   * Set when the client itself sends an unacknowledged message again after it reconnects (an
   * MQTT persistent session), so the publish may end "published" with that copy: why.
   */
  readonly clientResends?: string;
  /** From now until cut(), what the client sends reaches the broker but no reply comes back. */
  loseReplies(): void;
  /** Resets the connections whose replies were lost; later ones are healthy. */
  cut(): void;
  close(): Promise<void>;
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
  /** A broker the suite may take away; without it the outage scenario is skipped. */
  outage?(): Promise<OutageRig>;
  /** Why this broker has no outage hook (printed when the scenario is skipped). */
  readonly outageUnsupported?: string;
  /** A path that loses the broker's replies; without it the lost-ack scenario is skipped. */
  lostAck?(): Promise<LossyPath>;
  /** Why this broker has no lost-ack hook (printed when the scenario is skipped). */
  readonly lostAckUnsupported?: string;
  close(): Promise<void>;
}

/** A harness, or the reason the broker cannot be tested here (printed, and the suite skipped). */
export type HarnessFactory = () => Promise<PublisherHarness | string>;

const WAIT_MS = 10_000;
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const TRACESTATE = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';

function message(destination: string, n: number, extra: Partial<OutboundMessage> = {}): OutboundMessage {
  return {
    id: `0199a0c4-0000-7000-8000-${String(n).padStart(12, '0')}`,
    key: `order:${n % 3}`,
    type: 'order.created',
    destination,
    aggregateType: 'order',
    aggregateId: String(n % 3),
    payload: JSON.stringify({ n, text: 'grüße 🚀', nested: { list: [1, 2.5, null, true] } }),
    headers: { tenant: 'acme' },
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
    const run = await ledgerRun(await publisher(), destination, { batchSize: 50 });
    try {
      for (let i = 0; i < 200; i++) run.add(i);
      await run.outbox.relay().drain();
      await consumer.waitFor(200, WAIT_MS);
      expectLedgerDelivered(consumer.received, run.ledger());
    } finally {
      await run.close();
      await consumer.close();
    }
  });

  it('traceparent and tracestate given at add() arrive with the message, as CloudEvents attributes', async () => {
    const destination = await h.destination('trace');
    const consumer = await h.consume(destination);
    const modes: CloudEventsMode[] =
      h.capabilities.structured === true ? ['binary', 'structured'] : ['binary'];
    const run = await ledgerRun(
      Object.fromEntries(await Promise.all(modes.map(async (mode) => [mode, await publisher(mode)]))),
      destination,
      {},
      modes.map((mode) => ({ aggregateType: mode, destination, publisher: mode })),
    );
    try {
      const headers = { traceparent: TRACEPARENT, tracestate: TRACESTATE, tenant: 'acme' };
      const ids = modes.map((mode) => run.add(0, { aggregateType: mode, headers }));
      await run.outbox.relay().drain();
      const got = await consumer.waitFor(modes.length, WAIT_MS);
      for (const [i, mode] of modes.entries()) {
        const r = got.find((g) => g.attributes.id === ids[i]);
        expect(r, `the ${mode}-mode message`).toBeDefined();
        expect(r!.attributes, `${mode} mode`).toMatchObject({
          traceparent: TRACEPARENT,
          tracestate: TRACESTATE,
        });
        // The trace context is the event's, not the transport hop's: no plain header repeats it.
        expect(r!.headers, `${mode} mode`).toEqual({ tenant: 'acme' });
      }
    } finally {
      await run.close();
      await consumer.close();
    }
  });

  it('a broker outage while the relay publishes: once it is back and the relay retried, every event of the ledger arrived, in order per key', async (ctx) => {
    if (!h.outage) return ctx.skip(h.outageUnsupported ?? `the ${h.label} harness has no outage hook`);
    const rig = await h.outage();
    const run = await ledgerRun(rig.publisher, rig.destination, {
      batchSize: 20,
      maxAttempts: 1000, // the outage must not dead-letter anything: this scenario is about loss
      backoff: { baseMs: 50, capMs: 500 },
    });
    const relay = run.outbox.relay();
    let retried = 0;
    relay.on('batch', (report: BatchReport) => {
      retried += report.retried.length;
    });
    const total = 300;
    try {
      await relay.start();
      let stopped = false;
      const writer = (async () => {
        for (let i = 0; i < total; i++) {
          run.add(i);
          // Slow enough that the outage falls in the middle of the run, whatever the broker's pace.
          await sleep(stopped ? 2 : 10);
        }
      })();
      await expect
        .poll(() => rig.consumer.received.length, { timeout: 20_000, interval: 20 })
        .toBeGreaterThan(40);
      await rig.stop();
      stopped = true;
      const arrivedBefore = distinctIds(rig.consumer.received).size;
      await sleep(1500);
      await rig.start();
      await writer;
      await expect
        .poll(async () => (({ pending, dead }) => ({ pending, dead }))(await run.outbox.status()), {
          timeout: 30_000,
          interval: 100,
        })
        .toEqual({ pending: 0, dead: 0 });
      await relay.stop();
      // Published means stored by the broker: the consumer gets each one shortly. Whatever is still
      // missing then is named by the ledger check below.
      await expect
        .poll(() => distinctIds(rig.consumer.received).size, { timeout: 15_000 })
        .toBe(total)
        .catch(() => undefined);
      expectLedgerDelivered(rig.consumer.received, run.ledger());
      // The outage was real: it fell mid-run, and publishes failed during it and were retried.
      expect(arrivedBefore).toBeLessThan(total);
      expect(retried).toBeGreaterThan(0);
    } finally {
      await relay.stop();
      await run.close();
      await rig.publisher.close?.();
      await rig.close();
    }
  });

  it('a lost ack (connection reset after the broker took the message) is a retryable failure; the retry makes at most one duplicate, with the same id', async (ctx) => {
    if (!h.lostAck) return ctx.skip(h.lostAckUnsupported ?? `the ${h.label} harness has no lost-ack hook`);
    const path = await h.lostAck();
    const { consumer, publisher: p } = path;
    try {
      expect(await p.publish([message(path.destination, 101)])).toEqual([{ ok: true }]);
      await consumer.waitFor(1, WAIT_MS);
      path.loseReplies();
      const sent = message(path.destination, 102);
      const pending = p.publish([sent]);
      await consumer.waitFor(2, WAIT_MS); // the broker took it: only its reply is missing
      path.cut();
      const [first] = await pending;
      if (first!.ok) {
        // Only a client that sent the message again itself may call it published.
        expect(path.clientResends, 'published although no reply came back').toBeDefined();
      } else {
        expect(first!.error).toBeInstanceOf(PublishError);
        expect((first!.error as PublishError).retryable).toBe(true);
        await publishUntilOk(p, sent); // the relay's retry
      }
      await sleep(500); // a further copy would arrive right behind
      const copies = consumer.received.filter((r) => r.attributes.id === sent.id);
      expect(copies.length).toBeGreaterThanOrEqual(1);
      expect(copies.length).toBeLessThanOrEqual(h.capabilities.dedupeById ? 1 : 2);
      for (const copy of copies) expectDelivered(copy, sent, 'binary');
    } finally {
      await p.close?.();
      await path.close();
    }
  });
}

/** Publishes `m` again (attempt 2, 3, …) until it goes through; each failure must be retryable. */
async function publishUntilOk(publisher: Publisher, m: OutboundMessage): Promise<void> {
  for (let attempt = 2; attempt < 40; attempt++) {
    const result = (await publisher.publish([{ ...m, attempt }]))[0]!;
    if (result.ok) return;
    expect(result.error).toBeInstanceOf(PublishError);
    expect((result.error as PublishError).retryable).toBe(true);
    await sleep(250);
  }
  throw new Error(`'${m.id}' was not published within 40 attempts`);
}

/** Runs the suite under a describe named after the broker. */
export function describePublisher(label: string, factory: HarnessFactory): void {
  describe(`publisher conformance: ${label}`, () => publisherConformance(factory));
}
