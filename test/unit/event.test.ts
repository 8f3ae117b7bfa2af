import { describe, expect, it } from 'vitest';
import { genericGrammar, natsGrammar } from '../../src/core/destination.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, type PrepareOptions, prepareEvents } from '../../src/core/event.js';
import { keyHash } from '../../src/core/ids.js';
import { type RouteConfig, Router } from '../../src/core/routes.js';
import { expectOutboxError } from '../helpers/expect-error.js';

const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function options(over: Partial<PrepareOptions> & { routes?: RouteConfig[] } = {}): PrepareOptions {
  const { routes, ...rest } = over;
  return {
    router: new Router(routes, new Map([['main', genericGrammar]])),
    maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES,
    strictPayload: true,
    ...rest,
  };
}

const prepareOne = (event: unknown, over: Parameters<typeof options>[0] = {}) => {
  const [prepared] = prepareEvents(event, options(over));
  return prepared!;
};

const order = { type: 'order.created', aggregateType: 'order', aggregateId: '42' } as const;

describe('prepareEvents: what is stored', () => {
  it('fills in id, key, key hash and destination, and serialises payload and headers', () => {
    const e = prepareOne({ ...order, payload: { total: 42 }, headers: { 'x-tenant': 'acme' } });
    expect(e).toEqual({
      id: expect.stringMatching(UUIDV7),
      key: 'order:42',
      keyHash: keyHash('order:42'),
      type: 'order.created',
      aggregateType: 'order',
      aggregateId: '42',
      destination: 'events.order.order.created',
      payload: '{"total":42}',
      headers: '{"x-tenant":"acme"}',
      availableAt: null,
    });
  });

  it('takes a numeric aggregateId as its decimal string', () => {
    const e = prepareOne({ ...order, aggregateId: 42 });
    expect(e.aggregateId).toBe('42');
    expect(e.key).toBe('order:42');
    expect(prepareOne({ ...order, aggregateId: 0 }).key).toBe('order:0');
    expect(prepareOne({ ...order, aggregateId: -7 }).key).toBe('order:-7');
  });

  it('refuses an aggregateId that is a fraction, unsafe integer, NaN, empty or another type', () => {
    for (const aggregateId of [1.5, 2 ** 53, Number.NaN, '', true, { id: 1 }]) {
      expectOutboxError(() => prepareOne({ ...order, aggregateId }), 'INVALID_EVENT', 'event.aggregateId');
    }
  });

  it('uses an explicit key for ordering instead of aggregateType:aggregateId', () => {
    const e = prepareOne({ ...order, key: 'customer:7' });
    expect(e.key).toBe('customer:7');
    expect(e.keyHash).toBe(keyHash('customer:7'));
    expect(e.aggregateId).toBe('42');
  });

  it('accepts an explicit key and destination without any aggregate', () => {
    const e = prepareOne({ type: 'tenant.billed', key: 'tenant-7', destination: 'billing.tenant-7' });
    expect(e).toMatchObject({
      key: 'tenant-7',
      aggregateType: null,
      aggregateId: null,
      destination: 'billing.tenant-7',
    });
  });

  it('needs aggregateType and aggregateId when there is no key, or a destination when the template needs them', () => {
    expectOutboxError(() => prepareOne({ type: 'x' }), 'MISSING_AGGREGATE', 'event');
    expectOutboxError(() => prepareOne({ type: 'x', aggregateType: 'order' }), 'MISSING_AGGREGATE');
    expectOutboxError(() => prepareOne({ type: 'x', aggregateId: '1' }), 'MISSING_AGGREGATE');
    expectOutboxError(() => prepareOne({ type: 'x', key: 'k' }), 'MISSING_AGGREGATE', 'aggregateType');
    // A template that does not use the aggregate is fine with a key alone.
    expect(prepareOne({ type: 'x', key: 'k' }, { routes: [{ destination: 'all.{type}' }] }).destination).toBe(
      'all.x',
    );
  });

  it('refuses an empty or non-string key', () => {
    expectOutboxError(() => prepareOne({ ...order, key: '' }), 'INVALID_KEY', 'event.key');
    expectOutboxError(() => prepareOne({ ...order, key: 7 }), 'INVALID_KEY');
    expectOutboxError(() => prepareOne({ ...order, key: 'k'.repeat(1025) }), 'INVALID_KEY', '1024');
    expectOutboxError(() => prepareOne({ ...order, key: 'a\u0000' }), 'INVALID_CHARACTERS', 'event.key');
  });

  it('keeps a given lower-case UUID as the id and refuses anything else', () => {
    const id = '0190c2d6-7d2a-7c4e-9a1b-2f3c4d5e6f70';
    expect(prepareOne({ ...order, id }).id).toBe(id);
    expectOutboxError(() => prepareOne({ ...order, id: id.toUpperCase() }), 'INVALID_ID', 'event.id');
    expectOutboxError(() => prepareOne({ ...order, id: 'order-1' }), 'INVALID_ID');
  });

  it('takes availableAt as a valid Date only', () => {
    const at = new Date('2030-01-01T00:00:00Z');
    expect(prepareOne({ ...order, availableAt: at }).availableAt).toEqual(at);
    expectOutboxError(
      () => prepareOne({ ...order, availableAt: new Date(Number.NaN) }),
      'INVALID_AVAILABLE_AT',
    );
    expectOutboxError(() => prepareOne({ ...order, availableAt: '2030-01-01' }), 'INVALID_AVAILABLE_AT');
    expectOutboxError(() => prepareOne({ ...order, availableAt: Date.now() }), 'INVALID_AVAILABLE_AT');
  });
});

describe('prepareEvents: refusals', () => {
  it('refuses a missing, empty, blank or non-string type (MISSING_TYPE)', () => {
    for (const type of [undefined, '', '   ', 42, null]) {
      expectOutboxError(() => prepareOne({ ...order, type }), 'MISSING_TYPE', 'event.type');
    }
    expectOutboxError(() => prepareOne({ ...order, type: 't'.repeat(256) }), 'INVALID_EVENT', '255');
    expectOutboxError(() => prepareOne({ ...order, type: 'a\ud800' }), 'INVALID_CHARACTERS', 'event.type');
  });

  it('refuses what is not an event object, and unknown fields (typos) (INVALID_EVENT)', () => {
    for (const input of [null, 'order.created', 42, () => 1]) {
      expectOutboxError(() => prepareOne(input), 'INVALID_EVENT', 'event');
    }
    expectOutboxError(() => prepareOne({ ...order, aggregateID: '42' }), 'INVALID_EVENT', '"aggregateID"');
    expectOutboxError(
      () => prepareOne({ ...order, aggregateType: '' }),
      'INVALID_EVENT',
      'event.aggregateType',
    );
  });

  it('refuses bad headers (INVALID_HEADER): CR/LF, non-strings, bad or reserved names', () => {
    expectOutboxError(
      () => prepareOne({ ...order, headers: { 'x-a': 'one\r\ntwo' } }),
      'INVALID_HEADER',
      'x-a',
      'CR or LF',
    );
    expectOutboxError(() => prepareOne({ ...order, headers: { 'x-a': 'one\ntwo' } }), 'INVALID_HEADER');
    expectOutboxError(
      () => prepareOne({ ...order, headers: { 'x-a': 1 } }),
      'INVALID_HEADER',
      'must be a string',
    );
    expectOutboxError(
      () => prepareOne({ ...order, headers: { 'bad name': 'v' } }),
      'INVALID_HEADER',
      'header name',
    );
    expectOutboxError(
      () => prepareOne({ ...order, headers: { 'ce-id': 'v' } }),
      'INVALID_HEADER',
      'reserved',
    );
    expectOutboxError(() => prepareOne({ ...order, headers: ['v'] }), 'INVALID_HEADER');
    expectOutboxError(() => prepareOne({ ...order, headers: { 'x-a': 'a\u0000' } }), 'INVALID_CHARACTERS');
  });

  it('refuses payload + headers over maxPayloadBytes, counting UTF-8 bytes (PAYLOAD_TOO_LARGE)', () => {
    const limit = { maxPayloadBytes: 20 };
    expect(prepareOne({ ...order, payload: 'x'.repeat(14) }, limit).payload).toHaveLength(16); // 16 + '{}' = 18
    expectOutboxError(
      () => prepareOne({ ...order, payload: 'é'.repeat(10) }, limit),
      'PAYLOAD_TOO_LARGE',
      '24 bytes',
      '(20)',
    );
    expectOutboxError(
      () => prepareOne({ ...order, payload: 1, headers: { 'x-long': 'y'.repeat(20) } }, limit),
      'PAYLOAD_TOO_LARGE',
    );
  });

  it('refuses a destination the publisher grammar cannot take (INVALID_DESTINATION)', () => {
    const nats = { router: new Router([{ allow: ['*'] }], new Map([['bus', natsGrammar]])) };
    expectOutboxError(() => prepareOne({ ...order, destination: 'orders.*' }, nats), 'INVALID_DESTINATION');
    expectOutboxError(
      () => prepareOne({ ...order, destination: 42 }),
      'INVALID_DESTINATION',
      'must be a string',
    );
    expectOutboxError(() => prepareOne({ ...order, destination: '' }), 'INVALID_DESTINATION', 'empty');
  });

  it('refuses class instances in the payload unless strictPayload is off', () => {
    const payload = { when: new Map() };
    expectOutboxError(() => prepareOne({ ...order, payload }), 'PAYLOAD_NOT_PLAIN', 'event.payload.when');
    expect(prepareOne({ ...order, payload }, { strictPayload: false }).payload).toBe('{"when":{}}');
  });
});

describe('prepareEvents: batches', () => {
  it('keeps the order, gives increasing UUIDv7 ids, and names the index of a bad event', () => {
    const events = prepareEvents(
      Array.from({ length: 10 }, (_, i) => ({ ...order, aggregateId: i })),
      options(),
    );
    expect(events.map((e) => e.aggregateId)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect([...events.map((e) => e.id)].sort()).toEqual(events.map((e) => e.id));
    expectOutboxError(
      () => prepareEvents([order, order, { ...order, type: '' }], options()),
      'MISSING_TYPE',
      'events[2].type',
    );
    expectOutboxError(
      () => prepareEvents([order, { ...order, payload: { n: 1n } }], options()),
      'PAYLOAD_NOT_SERIALIZABLE',
      'events[1].payload.n',
    );
  });

  it('refuses the same id twice in one batch', () => {
    const id = '0190c2d6-7d2a-7c4e-9a1b-2f3c4d5e6f70';
    expectOutboxError(
      () => prepareEvents([{ ...order, id }, order, { ...order, id }], options()),
      'INVALID_ID',
      'events[2]',
      'twice',
    );
  });

  it('takes an empty batch as nothing to add', () => {
    expect(prepareEvents([], options())).toEqual([]);
  });
});
