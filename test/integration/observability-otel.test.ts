/**
 * OpenTelemetry with a real SDK (BasicTracerProvider and its in-memory exporter, registered
 * globally): add() captures the active span's trace context into the event, on a synchronous
 * (better-sqlite3) and an asynchronous (node-postgres) executor; the relay publishing to a real
 * webhook receiver makes one PRODUCER span per publish, a child of that context and linked to it,
 * ended with the outcome.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Context,
  type ContextManager,
  context,
  createTraceState,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBetterSqlite3 } from '../../src/executors/better-sqlite3.js';
import { fromPg } from '../../src/executors/pg.js';
import { createOutbox, silentLogger } from '../../src/index.js';
import { PG_URL, pgSkip, uniqueName } from '../helpers/services.js';

/** What @opentelemetry/context-async-hooks does (not installed here): the active context follows awaits. */
class AsyncLocalStorageContextManager implements ContextManager {
  readonly #storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    return ((...args: unknown[]) => this.with(ctx, () => target(...args))) as T;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#storage.disable();
    return this;
  }
}

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = trace.getTracer('app');

beforeAll(() => {
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager());
});
afterAll(async () => {
  trace.disable();
  context.disable();
  await provider.shutdown();
});

const pgSkipReason = await pgSkip();

const traceparentOf = (span: { spanContext(): { traceId: string; spanId: string } }) =>
  `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`;

describe('trace context captured at add()', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-otel-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a synchronous add() (better-sqlite3) takes the active span context; own headers win; none outside a span', async () => {
    const file = join(dir, 'capture.db');
    const outbox = createOutbox({ database: `sqlite:${file}` });
    await outbox.migrate();
    const db = new Database(file);
    const exec = fromBetterSqlite3(db);
    const order = (id: string, headers?: Record<string, string>) => ({
      type: 'order.created',
      aggregateType: 'order',
      aggregateId: id,
      ...(headers ? { headers } : {}),
    });
    const own = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    // A remote parent with a tracestate: the span started under it inherits the state.
    const remote = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      traceFlags: 1,
      isRemote: true,
      traceState: createTraceState('congo=t61rcWkgMzE'),
    });
    try {
      const { span, ids } = tracer.startActiveSpan('place order', {}, remote, (span) => {
        const ids = db.transaction(() => [
          ...outbox.add(exec, [order('1'), order('2', { 'x-tenant': 'acme' })]),
          outbox.add(exec, order('3', { Traceparent: own })),
        ])();
        span.end();
        return { span, ids };
      });
      const outside = db.transaction(() => outbox.add(exec, order('4')))();
      const headers = async (id: string) => (await outbox.store.get(id))!.headers;
      expect(await headers(ids[0]!)).toEqual({
        traceparent: traceparentOf(span),
        tracestate: 'congo=t61rcWkgMzE',
      });
      expect(await headers(ids[1]!)).toEqual({
        'x-tenant': 'acme',
        traceparent: traceparentOf(span),
        tracestate: 'congo=t61rcWkgMzE',
      });
      expect(await headers(ids[2]!)).toEqual({ Traceparent: own });
      expect(await headers(outside)).toEqual({});
    } finally {
      await outbox.close();
      db.close();
    }
  });

  it('a refused event is refused the same with OpenTelemetry active (headers as an array)', async () => {
    const outbox = createOutbox({ database: `sqlite:${join(dir, 'refused.db')}` });
    await outbox.migrate();
    const db = new Database(join(dir, 'refused.db'));
    try {
      tracer.startActiveSpan('bad', (span) => {
        const bad = { type: 't', aggregateType: 'a', aggregateId: '1', headers: ['x'] } as never;
        expect(() => db.transaction(() => outbox.add(fromBetterSqlite3(db), bad))()).toThrow(/headers/);
        span.end();
      });
    } finally {
      await outbox.close();
      db.close();
    }
  });

  it.skipIf(pgSkipReason)(
    'an asynchronous add() (node-postgres) takes the span active when it is called',
    async () => {
      const schema = uniqueName('outbox_otel');
      const pool = new pg.Pool({ connectionString: PG_URL });
      await pool.query(`CREATE SCHEMA "${schema}"`);
      const outbox = createOutbox({ database: { url: PG_URL, schema } });
      const client = await pool.connect();
      try {
        await outbox.migrate();
        const { span, id } = await tracer.startActiveSpan('place order', async (span) => {
          await client.query('BEGIN');
          const id = await outbox.add(fromPg(client), {
            type: 'order.created',
            aggregateType: 'order',
            aggregateId: '1',
          });
          await client.query('COMMIT');
          span.end();
          return { span, id };
        });
        expect((await outbox.store.get(id))!.headers).toEqual({ traceparent: traceparentOf(span) });
      } finally {
        client.release();
        await outbox.close();
        await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
        await pool.end();
      }
    },
  );
});

describe('a PRODUCER span per publish (SQLite, a real webhook receiver)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-otel-relay-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('child of and linked to the stored context, messaging attributes, ended with the outcome', async () => {
    const received: { path: string; traceparent: string | undefined; status: number }[] = [];
    let failNext = true;
    const receiver: Server = createServer((req, res) => {
      req.resume();
      const path = req.url ?? '';
      // The traced event's first attempt fails: its span must say so, its retry's must not.
      const status = path === '/orders' && failNext ? 503 : 204;
      if (status === 503) failNext = false;
      received.push({ path, traceparent: req.headers['ce-traceparent'] as string | undefined, status });
      res.writeHead(status).end();
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const port = (receiver.address() as AddressInfo).port;
    const file = join(dir, 'relay.db');
    const outbox = createOutbox({
      database: `sqlite:${file}`,
      routes: [{ destination: '{type}' }],
      publishers: { hooks: `http://127.0.0.1:${port}/{destination}` },
    });
    await outbox.migrate();
    const db = new Database(file);
    const relay = outbox.relay({
      logger: silentLogger,
      pollIntervalMs: 20,
      backoff: { baseMs: 20, capMs: 50 },
    });
    try {
      exporter.reset();
      const { addSpan, traced } = tracer.startActiveSpan('place order', (addSpan) => {
        const traced = db.transaction(() =>
          outbox.add(fromBetterSqlite3(db), { type: 'orders', key: 'o-1' }),
        )();
        addSpan.end();
        return { addSpan, traced };
      });
      const untraced = db.transaction(() =>
        outbox.add(fromBetterSqlite3(db), { type: 'audit', key: 'a-1' }),
      )();
      await relay.start();
      const deadline = Date.now() + 20_000;
      while (received.filter((r) => r.status === 204).length < 2 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await relay.stop();
      // The consumer continues the transaction's trace: the relay does not replace the context.
      expect(received.filter((r) => r.path === '/orders').map((r) => r.traceparent)).toEqual([
        traceparentOf(addSpan),
        traceparentOf(addSpan),
      ]);
      expect(received.find((r) => r.path === '/audit')?.traceparent).toBeUndefined();

      const producers = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.PRODUCER);
      const ofOrder = producers.filter((s) => s.attributes['messaging.message.id'] === traced);
      expect(ofOrder.map((s) => s.attributes['outbox.attempt'])).toEqual([1, 2]);
      const { traceId, spanId } = addSpan.spanContext();
      for (const span of ofOrder) {
        expect(span.name).toBe('orders publish');
        expect(span.spanContext().traceId).toBe(traceId);
        expect(span.parentSpanContext?.spanId).toBe(spanId);
        expect(span.links.map((l) => l.context.spanId)).toEqual([spanId]);
        expect(span.attributes).toMatchObject({
          'messaging.system': 'http',
          'messaging.operation': 'publish',
          'messaging.operation.type': 'send',
          'messaging.destination.name': 'orders',
          'messaging.message.id': traced,
          'outbox.event.type': 'orders',
          'outbox.publisher': 'hooks',
        });
        expect(span.instrumentationScope.name).toBe('outbox');
        expect(span.ended).toBe(true);
      }
      expect(ofOrder[0]!.status).toMatchObject({
        code: SpanStatusCode.ERROR,
        message: expect.stringMatching(/503/),
      });
      expect(ofOrder[0]!.attributes['error.type']).toBe('PUBLISH_FAILED');
      expect(ofOrder[1]!.status.code).toBe(SpanStatusCode.UNSET);

      const ofAudit = producers.filter((s) => s.attributes['messaging.message.id'] === untraced);
      expect(ofAudit).toHaveLength(1);
      expect(ofAudit[0]!.name).toBe('audit publish');
      expect(ofAudit[0]!.parentSpanContext).toBeUndefined(); // a trace of its own
      expect(ofAudit[0]!.links).toEqual([]);
      expect(ofAudit[0]!.spanContext().traceId).not.toBe(traceId);
    } finally {
      await outbox.close();
      db.close();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});
