import { describe, expect, it } from 'vitest';
import {
  type DestinationGrammar,
  genericGrammar,
  httpGrammar,
  natsGrammar,
} from '../../src/core/destination.js';
import { type RoutableEvent, type RouteConfig, Router } from '../../src/core/routes.js';
import { expectOutboxError } from '../helpers/expect-error.js';

const event = (over: Partial<RoutableEvent> = {}): RoutableEvent => ({
  type: 'order.created',
  key: 'order:42',
  aggregateType: 'order',
  aggregateId: '42',
  ...over,
});

const grammars = (entries: Record<string, DestinationGrammar>) => new Map(Object.entries(entries));
const router = (
  routes: RouteConfig[] | undefined,
  publishers: Record<string, DestinationGrammar> = { main: genericGrammar },
) => new Router(routes, grammars(publishers));

describe('Router: matching', () => {
  it('with no routes, sends everything to the only publisher with the default template', () => {
    const r = router(undefined);
    expect(r.destinationFor(event(), 'event')).toBe('events.order.order.created');
    expect(r.publisherFor('anything.at.all', null)).toBe('main');
    // The catch-all allows any explicit destination.
    expect(r.destinationFor(event({ destination: 'audit-log' }), 'event')).toBe('audit-log');
  });

  it('with no routes and no publishers, names the publisher "default"', () => {
    expect(new Router([], new Map()).publisherFor('order.created', 'order')).toBe('default');
  });

  it('matches type globs: * spans any text, dots are literal', () => {
    const r = router([{ type: 'order.*', destination: 'orders.{type}' }, { destination: 'other.{type}' }]);
    expect(r.destinationFor(event({ type: 'order.created' }), 'event')).toBe('orders.order.created');
    expect(r.destinationFor(event({ type: 'order.line.added' }), 'event')).toBe('orders.order.line.added');
    expect(r.destinationFor(event({ type: 'orders.created' }), 'event')).toBe('other.orders.created');
    expect(r.destinationFor(event({ type: 'orderXcreated' }), 'event')).toBe('other.orderXcreated');
  });

  it('matches lists of globs, and aggregate types, and needs both to match', () => {
    const r = router([
      { type: ['user.signed-up', 'user.deleted'], aggregateType: 'user', destination: 'users' },
      { aggregateType: ['pay*', 'refund'], destination: 'money' },
    ]);
    expect(r.destinationFor(event({ type: 'user.deleted', aggregateType: 'user' }), 'event')).toBe('users');
    expect(r.destinationFor(event({ type: 'x', aggregateType: 'payment' }), 'event')).toBe('money');
    expect(r.destinationFor(event({ type: 'x', aggregateType: 'refund' }), 'event')).toBe('money');
    expectOutboxError(
      () => r.destinationFor(event({ type: 'user.deleted', aggregateType: 'account' }), 'event'),
      'NO_ROUTE',
      'user.deleted',
    );
  });

  it('takes the first route that matches', () => {
    const r = router([
      { type: 'order.cancelled', destination: 'cancellations' },
      { type: 'order.*', destination: 'orders' },
      { type: 'order.cancelled', destination: 'never' },
    ]);
    expect(r.destinationFor(event({ type: 'order.cancelled' }), 'event')).toBe('cancellations');
    expect(r.destinationFor(event({ type: 'order.created' }), 'event')).toBe('orders');
  });

  it('refuses an event no route takes (NO_ROUTE), and the relay side sees undefined', () => {
    const r = router([{ type: 'order.*' }]);
    expectOutboxError(
      () => r.destinationFor(event({ type: 'user.created' }), 'events[3]'),
      'NO_ROUTE',
      'events[3]',
    );
    expect(r.publisherFor('user.created', 'user')).toBeUndefined();
  });

  it('picks the publisher each route names', () => {
    const r = router([{ type: 'audit.*', publisher: 'hooks' }, { publisher: 'bus' }], {
      bus: natsGrammar,
      hooks: httpGrammar,
    });
    expect(r.publisherFor('audit.login', 'user')).toBe('hooks');
    expect(r.publisherFor('order.created', 'order')).toBe('bus');
  });
});

describe('Router: templates', () => {
  it('renders {type}, {aggregateType}, {aggregateId} and {key}', () => {
    const r = router([{ destination: '{aggregateType}/{aggregateId}/{type}/{key}' }]);
    expect(r.destinationFor(event(), 'event')).toBe('order/42/order.created/order:42');
  });

  it('refuses an event that lacks what the template needs, unless it gives a destination', () => {
    const r = router([{ destination: 'events.{aggregateType}.{type}', allow: ['*'] }]);
    const keyed = event({ key: 'tenant-7', aggregateType: null, aggregateId: null });
    expectOutboxError(
      () => r.destinationFor(keyed, 'event'),
      'MISSING_AGGREGATE',
      'aggregateType',
      'routes[0]',
    );
    expect(r.destinationFor({ ...keyed, destination: 'tenants.7' }, 'event')).toBe('tenants.7');
  });

  it('checks the rendered destination against the publisher grammar', () => {
    const r = router([{ destination: 'events.{aggregateId}' }], { bus: natsGrammar });
    expect(r.destinationFor(event({ aggregateId: '42' }), 'event')).toBe('events.42');
    expectOutboxError(
      () => r.destinationFor(event({ aggregateId: 'a.b..c' }), 'event'),
      'INVALID_DESTINATION',
      'events.a.b..c',
      'publisher "bus"',
    );
    expectOutboxError(() => r.destinationFor(event({ aggregateId: '4 2' }), 'event'), 'INVALID_DESTINATION');
  });
});

describe('Router: explicit destinations and allow lists', () => {
  it("by default allows what the route's template could produce", () => {
    const r = router([{ type: 'order.*', destination: 'orders.{aggregateId}' }]);
    expect(r.destinationFor(event({ destination: 'orders.anything' }), 'event')).toBe('orders.anything');
    expectOutboxError(
      () => r.destinationFor(event({ destination: 'payments.1' }), 'event'),
      'DESTINATION_NOT_ALLOWED',
      '"payments.1"',
      'routes[0]',
    );
    expectOutboxError(
      () => r.destinationFor(event({ destination: 'orders.' }), 'event'),
      'DESTINATION_NOT_ALLOWED',
    );
  });

  it('with an allow list, allows exactly what its globs match', () => {
    const r = router([{ destination: 'orders.{type}', allow: ['audit.*', 'legacy-orders'] }]);
    expect(r.destinationFor(event({ destination: 'audit.eu' }), 'event')).toBe('audit.eu');
    expect(r.destinationFor(event({ destination: 'legacy-orders' }), 'event')).toBe('legacy-orders');
    expectOutboxError(
      () => r.destinationFor(event({ destination: 'orders.x' }), 'event'),
      'DESTINATION_NOT_ALLOWED',
    );
    expectOutboxError(
      () => r.destinationFor(event({ destination: 'legacy-orders2' }), 'event'),
      'DESTINATION_NOT_ALLOWED',
    );
  });

  it('still checks an allowed destination against the publisher grammar', () => {
    const r = router([{ allow: ['*'] }], { bus: natsGrammar });
    expectOutboxError(
      () => r.destinationFor(event({ destination: 'orders.>' }), 'event'),
      'INVALID_DESTINATION',
      'wildcard',
    );
    const h = router([{ allow: ['*'] }], { hooks: httpGrammar });
    expect(h.destinationFor(event({ destination: 'in/orders' }), 'event')).toBe('in/orders');
    expectOutboxError(
      () => h.destinationFor(event({ destination: 'in/../admin' }), 'event'),
      'INVALID_DESTINATION',
    );
    expectOutboxError(
      () => h.destinationFor(event({ destination: 'in?x=1#' }), 'event'),
      'INVALID_DESTINATION',
    );
  });
});

describe('Router: configuration errors', () => {
  it('refuses an unknown placeholder (INVALID_CONFIG), naming the route and the placeholder', () => {
    expectOutboxError(
      () => router([{ type: 'a' }, { destination: 'events.{aggregate_type}' }]),
      'INVALID_CONFIG',
      'routes[1]',
      '{aggregate_type}',
    );
  });

  it('refuses a route naming a publisher that is not configured (INVALID_CONFIG)', () => {
    expectOutboxError(
      () => router([{ publisher: 'kafka' }], { bus: natsGrammar }),
      'INVALID_CONFIG',
      'routes[0]',
      '"kafka"',
      'bus',
    );
  });

  it('refuses a route without a publisher when there are several to choose from (INVALID_CONFIG)', () => {
    expectOutboxError(
      () => router([{ type: 'a.*' }], { bus: natsGrammar, hooks: httpGrammar }),
      'INVALID_CONFIG',
      'routes[0]',
    );
  });

  it('refuses an empty template (INVALID_CONFIG)', () => {
    expectOutboxError(() => router([{ destination: '' }]), 'INVALID_CONFIG', 'routes[0]');
  });
});
