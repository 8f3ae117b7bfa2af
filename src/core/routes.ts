/**
 * Routing: which publisher takes an event, and to which destination. `add()` and the relay
 * read the same routes: `add()` renders the destination (or checks an explicit one against
 * the routes and the publisher's grammar), the relay picks the publisher.
 */
import { type DestinationGrammar, genericGrammar } from './destination.js';
import { OutboxError } from './errors.js';

/** One route. The first route whose `type` and `aggregateType` both match an event takes it. */
export interface RouteConfig {
  /** Event types this route takes: exact names or globs (`order.*`). Default: every type. */
  readonly type?: string | readonly string[];
  /** Aggregate types this route takes, same syntax. Default: every aggregate type. */
  readonly aggregateType?: string | readonly string[];
  /**
   * Destination template with `{type}`, `{aggregateType}`, `{aggregateId}` and `{key}`.
   * Default: `events.{aggregateType}.{type}`.
   */
  readonly destination?: string;
  /** Name of the publisher (a key of `publishers`). Default: the only publisher there is. */
  readonly publisher?: string;
  /**
   * Globs an explicit `event.destination` must match. Default: the template's own shape, with
   * each placeholder standing for any text. `['*']` allows any destination.
   */
  readonly allow?: readonly string[];
}

export const DEFAULT_DESTINATION_TEMPLATE = 'events.{aggregateType}.{type}';
export const DEFAULT_PUBLISHER_NAME = 'default';
const PLACEHOLDERS = new Set(['type', 'aggregateType', 'aggregateId', 'key']);

/** The fields of an event that routing reads. */
export interface RoutableEvent {
  readonly type: string;
  readonly key: string;
  readonly aggregateType: string | null;
  readonly aggregateId: string | null;
  readonly destination?: string | undefined;
}

interface CompiledRoute {
  readonly index: number;
  readonly publisher: string;
  readonly template: string;
  readonly placeholders: readonly string[];
  /** The template split at its placeholders: literal, placeholder, literal, … (literals may be ''). */
  readonly pieces: readonly string[];
  readonly matchType: RegExp | undefined;
  readonly matchAggregate: RegExp | undefined;
  readonly allow: readonly RegExp[];
}

function escapeRegExp(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

export function globToRegExp(globs: string | readonly string[]): RegExp {
  const list = typeof globs === 'string' ? [globs] : globs;
  const alternatives = list.map((g) => g.split('*').map(escapeRegExp).join('.*'));
  return new RegExp(`^(?:${alternatives.join('|')})$`, 's');
}

function badRoute(index: number, message: string): never {
  throw new OutboxError('INVALID_CONFIG', `routes[${index}]: ${message}`, { details: { route: index } });
}

function compile(route: RouteConfig, index: number, defaultPublisher: string | undefined): CompiledRoute {
  const template = route.destination ?? DEFAULT_DESTINATION_TEMPLATE;
  if (typeof template !== 'string' || template === '')
    badRoute(index, 'destination must be a non-empty template');
  if (template.replace(/\{[^{}]*\}/g, '').match(/[{}]/))
    badRoute(index, `destination "${template}" has an unbalanced { or }`);
  const placeholders = [...template.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!);
  for (const p of placeholders) {
    if (!PLACEHOLDERS.has(p))
      badRoute(index, `unknown placeholder {${p}} (known: ${[...PLACEHOLDERS].join(', ')})`);
  }
  const publisher = route.publisher ?? defaultPublisher;
  if (!publisher) badRoute(index, 'names no publisher, and there is not exactly one publisher to default to');
  const shape = template
    .split(/\{[^}]*\}/)
    .map(escapeRegExp)
    .join('.+');
  return {
    index,
    publisher,
    template,
    placeholders,
    pieces: template.split(/\{([^}]*)\}/),
    matchType: route.type === undefined ? undefined : globToRegExp(route.type),
    matchAggregate: route.aggregateType === undefined ? undefined : globToRegExp(route.aggregateType),
    allow: route.allow ? [globToRegExp(route.allow)] : [new RegExp(`^${shape}$`, 's')],
  };
}

/** The routes, compiled once. */
export class Router {
  readonly #routes: readonly CompiledRoute[];
  readonly #grammars: ReadonlyMap<string, DestinationGrammar>;

  /**
   * @param routes In order of precedence; empty = one catch-all route to the default publisher
   *   that also allows any explicit destination.
   * @param grammars Destination grammar per publisher name; a route naming an unknown publisher is
   *   a configuration error when `grammars` is non-empty.
   */
  constructor(routes: readonly RouteConfig[] | undefined, grammars: ReadonlyMap<string, DestinationGrammar>) {
    const names = [...grammars.keys()];
    const defaultPublisher =
      names.length === 1 ? names[0] : names.length === 0 ? DEFAULT_PUBLISHER_NAME : undefined;
    const list = routes && routes.length > 0 ? routes : [{ allow: ['*'] }];
    this.#routes = list.map((r, i) => compile(r, i, defaultPublisher));
    if (names.length > 0) {
      for (const r of this.#routes) {
        if (!grammars.has(r.publisher))
          badRoute(r.index, `publisher "${r.publisher}" is not configured (have: ${names.join(', ')})`);
      }
    }
    this.#grammars = grammars;
  }

  #find(type: string, aggregateType: string | null): CompiledRoute | undefined {
    return this.#routes.find(
      (r) =>
        (!r.matchType || r.matchType.test(type)) &&
        (!r.matchAggregate || r.matchAggregate.test(aggregateType ?? '')),
    );
  }

  /** The publisher name for a stored event (relay side); undefined when no route takes it. */
  publisherFor(type: string, aggregateType: string | null): string | undefined {
    return this.#find(type, aggregateType)?.publisher;
  }

  /** The destination of a new event, checked against the route and the publisher's grammar. */
  destinationFor(event: RoutableEvent, path: string): string {
    const route = this.#find(event.type, event.aggregateType);
    if (!route) {
      throw new OutboxError('NO_ROUTE', `${path}: no route takes type "${event.type}"`, {
        details: { path },
      });
    }
    let destination: string;
    if (event.destination !== undefined) {
      destination = event.destination;
      if (!route.allow.some((re) => re.test(destination))) {
        throw new OutboxError(
          'DESTINATION_NOT_ALLOWED',
          `${path}.destination "${destination}" is not allowed by routes[${route.index}] (template "${route.template}"; add it to the route's allow list)`,
          { details: { path, route: route.index } },
        );
      }
    } else {
      // Odd pieces are placeholder names (split with a capturing group), even ones literal text.
      destination = route.pieces[0]!;
      for (let i = 1; i < route.pieces.length; i += 2) {
        const name = route.pieces[i]!;
        const value =
          name === 'type'
            ? event.type
            : name === 'key'
              ? event.key
              : event[name as 'aggregateType' | 'aggregateId'];
        if (value === null) {
          throw new OutboxError(
            'MISSING_AGGREGATE',
            `${path} has no ${name}, which routes[${route.index}]'s destination template "${route.template}" needs; give ${name} or an explicit destination`,
            { details: { path, route: route.index } },
          );
        }
        destination += value + route.pieces[i + 1]!;
      }
    }
    const grammar = this.#grammars.get(route.publisher) ?? genericGrammar;
    const problem = grammar(destination);
    if (problem) {
      throw new OutboxError(
        'INVALID_DESTINATION',
        `${path}.destination "${destination}" ${problem} (publisher "${route.publisher}")`,
        { details: { path, publisher: route.publisher } },
      );
    }
    return destination;
  }
}
