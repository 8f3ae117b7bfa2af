/**
 * W3C Trace Context at add(): a `traceparent` (and `tracestate`) header is checked against the W3C
 * grammar before anything is written, and travels as the CloudEvents Distributed Tracing extension
 * attributes, never as a plain header.
 */
import { describe, expect, it } from 'vitest';
import { genericGrammar } from '../../src/core/destination.js';
import {
  cloudEventAttributes,
  cloudEventContext,
  eventHeaders,
  structuredCloudEvent,
  traceContext,
} from '../../src/core/envelope.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, prepareEvents } from '../../src/core/event.js';
import { Router } from '../../src/core/routes.js';
import { expectOutboxError } from '../helpers/expect-error.js';
import { orderMessage } from '../helpers/order-message.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TRACESTATE = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';
const order = { type: 'order.created', aggregateType: 'order', aggregateId: '42' } as const;

function add(headers: Record<string, string>) {
  const options = {
    router: new Router(undefined, new Map([['main', genericGrammar]])),
    maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES,
    strictPayload: true,
  };
  return prepareEvents({ ...order, headers }, options)[0]!;
}

const message = (headers: Record<string, string>) => orderMessage({ headers });

describe('add(): traceparent', () => {
  it('takes a W3C traceparent, in any header case, and stores it as given', () => {
    expect(JSON.parse(add({ traceparent: TRACEPARENT }).headers)).toEqual({ traceparent: TRACEPARENT });
    expect(JSON.parse(add({ Traceparent: TRACEPARENT }).headers)).toEqual({ Traceparent: TRACEPARENT });
    // Sampled or not, and a later version with more fields after the flags.
    add({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00' });
    add({ traceparent: `cc-${TRACEPARENT.slice(3)}-what-comes-next` });
  });

  it.each([
    ['empty', '', 'is not a W3C traceparent'],
    ['upper-case hex', TRACEPARENT.toUpperCase(), 'is not a W3C traceparent'],
    [
      'a short trace id',
      '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01',
      'is not a W3C traceparent',
    ],
    ['no flags', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7', 'is not a W3C traceparent'],
    ['spaces around', ` ${TRACEPARENT}`, 'is not a W3C traceparent'],
    ['version ff', `ff-${TRACEPARENT.slice(3)}`, 'version ff'],
    ['version 00 with more fields', `${TRACEPARENT}-extra`, 'fields after the flags'],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`, 'all-zero trace id'],
    [
      'an all-zero parent id',
      `00-4bf92f3577b34da6a3ce929d0e0e4736-${'0'.repeat(16)}-01`,
      'all-zero parent id',
    ],
  ])('refuses %s (INVALID_HEADER), naming the header', (_, value, reason) => {
    const error = expectOutboxError(
      () => add({ traceparent: value }),
      'INVALID_HEADER',
      'event.headers["traceparent"]',
      reason,
    );
    expect(error.message).not.toContain(value || '\u0000');
  });

  it('refuses the header twice in different cases', () => {
    expectOutboxError(
      () => add({ traceparent: TRACEPARENT, TraceParent: TRACEPARENT }),
      'INVALID_HEADER',
      'repeats the traceparent header',
    );
  });
});

describe('add(): tracestate', () => {
  it('takes a W3C list: simple and tenant@system keys, spaces and empty members around commas', () => {
    for (const tracestate of [
      TRACESTATE,
      'congo=t61rcWkgMzE , ,rojo=00f067aa0ba902b7',
      'tenant1@vendor=a b/c+d',
      'a*b_c-d/e=1',
      '',
      `${Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(',')}`,
    ])
      expect(JSON.parse(add({ traceparent: TRACEPARENT, tracestate }).headers).tracestate).toBe(tracestate);
  });

  it.each([
    ['no =', 'congo', 'is not a W3C tracestate'],
    ['two =', 'congo=a=b', 'is not a W3C tracestate'],
    ['an upper-case key', 'Congo=a', 'is not a W3C tracestate'],
    ['a key starting with a digit', '1congo=a', 'is not a W3C tracestate'],
    ['an empty value', 'congo=', 'is not a W3C tracestate'],
    ['a value beyond ASCII', 'congo=café', 'is not a W3C tracestate'],
    ['a system id too long', `t@${'s'.repeat(15)}=v`, 'is not a W3C tracestate'],
    ['a repeated key', 'congo=a,rojo=b,congo=c', "names the key 'congo' twice"],
    ['33 members', Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','), 'more than 32 list members'],
    ['over 512 characters', `congo=${'x'.repeat(250)},rojo=${'y'.repeat(256)}`, 'longer than 512'],
  ])('refuses %s (INVALID_HEADER)', (_, tracestate, reason) => {
    expectOutboxError(
      () => add({ traceparent: TRACEPARENT, tracestate }),
      'INVALID_HEADER',
      'event.headers["tracestate"]',
      reason,
    );
  });

  it('refuses a tracestate without a traceparent: it means nothing on its own', () => {
    expectOutboxError(() => add({ TraceState: TRACESTATE }), 'INVALID_HEADER', 'without a traceparent');
  });
});

describe('the envelope: trace context as CloudEvents Distributed Tracing attributes', () => {
  const traced = message({ traceparent: TRACEPARENT, tracestate: TRACESTATE, tenant: 'acme' });

  it('binary mode (ce- bindings): ce-traceparent and ce-tracestate after the other attributes, no plain header', () => {
    const headers = cloudEventAttributes(traced, 'orders');
    expect(Object.entries(headers).slice(6)).toEqual([
      ['ce-partitionkey', 'order:42'],
      ['ce-traceparent', TRACEPARENT],
      ['ce-tracestate', TRACESTATE],
      ['content-type', 'application/json'],
      ['tenant', 'acme'],
    ]);
  });

  it('by spec name for the other bindings and structured mode; the own headers leave them out', () => {
    expect(cloudEventContext(traced, 'orders')).toMatchObject({
      traceparent: TRACEPARENT,
      tracestate: TRACESTATE,
    });
    expect(eventHeaders(traced)).toEqual({ tenant: 'acme' });
    expect(JSON.parse(structuredCloudEvent(traced, 'orders'))).toMatchObject({
      id: traced.id,
      traceparent: TRACEPARENT,
      tracestate: TRACESTATE,
      data: { total: 10 },
    });
  });

  it('finds the headers in any case; a blank tracestate, or one without traceparent, is not sent', () => {
    expect(traceContext(message({ TraceParent: TRACEPARENT, TRACESTATE: TRACESTATE }))).toEqual({
      traceparent: TRACEPARENT,
      tracestate: TRACESTATE,
    });
    expect(traceContext(message({ traceparent: TRACEPARENT, tracestate: ' ' }))).toEqual({
      traceparent: TRACEPARENT,
    });
    const orphan = message({ tracestate: TRACESTATE });
    expect(traceContext(orphan)).toEqual({});
    expect(eventHeaders(orphan)).toEqual({});
    expect(cloudEventContext(message({}), 'orders')).not.toHaveProperty('traceparent');
  });
});
