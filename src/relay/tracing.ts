/**
 * OpenTelemetry, when the application has `@opentelemetry/api` installed (an optional peer
 * dependency): the active span's context is captured into an event's headers at `add()`, and the
 * relay starts a PRODUCER span per message it publishes, a child of and linked to that context.
 *
 * The API is probed once, synchronously (better-sqlite3's `add()` is synchronous), with
 * `createRequire`: without it, `add()` and the relay pay one `undefined` check and nothing else.
 * The API keeps its tracer provider and context manager on `globalThis`, so this copy sees the
 * application's SDK whichever module format either side loaded.
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import type * as OpenTelemetry from '@opentelemetry/api';
import { describeError, OutboxError } from '../core/errors.js';
import type { ClaimedEvent } from '../core/ports.js';
import type { PublishCall, RelayObserver } from './observer.js';

type Api = typeof OpenTelemetry;

const load = createRequire(import.meta.url);
let loaded: Api | null | undefined;

/** The API if installed (loaded on the first call), else null. */
function openTelemetry(): Api | null {
  if (loaded === undefined) {
    try {
      loaded = load('@opentelemetry/api') as Api;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

/** This package's version, for the tracer (the file is at the package root, from src/ and dist/ alike). */
function packageVersion(): string | undefined {
  try {
    return (load('../../package.json') as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/**
 * The function `add()` runs on its input to give events without trace context the active
 * span's (`traceparent`, and `tracestate` when not empty), in W3C format written here (without
 * an SDK, `propagation.inject` does nothing); undefined when the API is not installed.
 * Events that carry a `traceparent` or `tracestate` header of their own keep it; the input is
 * never modified.
 */
export function traceContextCapture(): ((input: unknown) => unknown) | undefined {
  const api = openTelemetry();
  if (!api) return undefined;
  // The headers of the last span context seen: a transaction's many adds share its span.
  let last: { context: OpenTelemetry.SpanContext; trace: Record<string, string> | undefined } | undefined;
  return (input) => {
    const context = api.trace.getSpanContext(api.context.active());
    if (!context) return input;
    if (last?.context !== context) last = { context, trace: traceHeaders(api, context) };
    const trace = last.trace;
    if (!trace) return input;
    return Array.isArray(input) ? input.map((e) => withTrace(e, trace)) : withTrace(input, trace);
  };
}

/** `traceparent` (and `tracestate` when not empty) of a valid span context, in W3C format. */
function traceHeaders(api: Api, context: OpenTelemetry.SpanContext): Record<string, string> | undefined {
  if (!api.isSpanContextValid(context)) return undefined;
  const flags = (context.traceFlags & 0xff).toString(16).padStart(2, '0');
  const trace: Record<string, string> = {
    traceparent: `00-${context.traceId.toLowerCase()}-${context.spanId.toLowerCase()}-${flags}`,
  };
  const state = context.traceState?.serialize();
  if (state) trace.tracestate = state;
  return trace;
}

function withTrace(event: unknown, trace: Record<string, string>): unknown {
  // Left for add() to refuse, exactly as it would without OpenTelemetry.
  if (typeof event !== 'object' || event === null || Array.isArray(event)) return event;
  const headers = (event as { headers?: unknown }).headers;
  if (headers !== undefined && headers !== null) {
    if (typeof headers !== 'object' || Array.isArray(headers)) return event;
    for (const name in headers) {
      const lower = name.toLowerCase();
      if (lower === 'traceparent' || lower === 'tracestate') return event;
    }
  }
  return { ...event, headers: { ...(headers as object | undefined), ...trace } };
}

/** messaging.system per broker family: the semantic conventions' names where they have one. */
const MESSAGING_SYSTEMS: Readonly<Record<string, string>> = { amqp: 'rabbitmq' };

/**
 * The relay's tracing: one PRODUCER span per message of each publish() call, named
 * `<destination> publish`, from the call's start to its answer, ended with the message's outcome.
 * Its parent is the trace context stored with the event, which it also links to (the messaging
 * conventions' creation context); an event without one starts a trace of its own.
 * Undefined when the API is not installed.
 */
export function producerSpans(): RelayObserver | undefined {
  const api = openTelemetry();
  if (!api) return undefined;
  // A proxy: it finds the SDK the application registers later, at the first span.
  const tracer = api.trace.getTracer('outbox', packageVersion());
  // The API is often installed with no SDK (a dependency of a dependency): then every span would
  // be a no-op, so none is made. A provider from another copy of the API is taken as an SDK.
  const noSdk = new api.ProxyTracerProvider().getDelegate();
  const sdkRegistered = () => {
    const provider = api.trace.getTracerProvider();
    return !(provider instanceof api.ProxyTracerProvider && provider.getDelegate() === noSdk);
  };
  return {
    published(call: PublishCall) {
      if (!sdkRegistered()) return;
      const startTime = performance.timeOrigin + call.startedAt;
      const endTime = performance.timeOrigin + call.endedAt;
      const system = MESSAGING_SYSTEMS[call.kind] ?? call.kind;
      call.events.forEach((event, i) => {
        const parent = storedContext(api, event);
        const span = tracer.startSpan(
          `${call.destination} publish`,
          {
            kind: api.SpanKind.PRODUCER,
            startTime,
            links: parent ? [{ context: parent }] : [],
            attributes: {
              'messaging.system': system,
              'messaging.operation': 'publish',
              'messaging.operation.name': 'publish',
              'messaging.operation.type': 'send',
              'messaging.destination.name': call.destination,
              'messaging.message.id': event.id,
              'outbox.event.type': event.type,
              'outbox.attempt': event.attempts + 1,
              'outbox.publisher': call.publisher,
            },
          },
          parent ? api.trace.setSpanContext(api.ROOT_CONTEXT, parent) : api.ROOT_CONTEXT,
        );
        const result = call.results[i];
        if (result && !result.ok) {
          span.setAttribute('error.type', errorType(result.error));
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: describeError(result.error) });
        }
        span.end(endTime);
      });
    },
  };
}

/** The event's stored W3C trace context as a remote span context, if it has a valid one. */
function storedContext(api: Api, event: ClaimedEvent): OpenTelemetry.SpanContext | undefined {
  let traceparent: string | undefined;
  let tracestate: string | undefined;
  for (const [name, value] of Object.entries(event.headers)) {
    const lower = name.toLowerCase();
    if (lower === 'traceparent') traceparent = value;
    else if (lower === 'tracestate') tracestate = value;
  }
  if (traceparent === undefined) return undefined;
  // version-traceid-parentid-flags; later versions may append fields, which are ignored.
  const [, traceId = '', spanId = '', flags = ''] = traceparent.split('-');
  const context: OpenTelemetry.SpanContext = {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16),
    isRemote: true,
    ...(tracestate ? { traceState: api.createTraceState(tracestate) } : {}),
  };
  return api.isSpanContextValid(context) && !Number.isNaN(context.traceFlags) ? context : undefined;
}

/** `error.type`: the error's code when it has one, else its class name. */
function errorType(error: unknown): string {
  if (error instanceof OutboxError) return error.code;
  if (error instanceof Error) return error.name;
  return '_OTHER';
}
