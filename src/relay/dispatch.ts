/**
 * Publish queues, one per destination of each publisher. Events bound for one destination go out
 * together: what was handed over in one turn of the event loop becomes one publish() call, and
 * calls overlap up to a window of messages in flight per destination (so, as acks come back one
 * by one, the keys they free go out in the next calls without waiting for the slowest ack of a
 * big call). A destination never waits for another, so a slow or failing broker (or topic) holds
 * back only its own events.
 *
 * The relay hands over one event per key at a time (the key's next event only after this one's
 * outcome), so two events of a key are never in calls at once and per-key order holds however
 * the calls interleave.
 */
import { performance } from 'node:perf_hooks';
import { OutboxError, PublishError } from '../core/errors.js';
import { failpoint } from '../core/failpoints.js';
import type { ClaimedEvent, OutboundMessage, Publisher, PublishResult } from '../core/ports.js';
import type { Router } from '../core/routes.js';
import type { Observers } from './observer.js';

/** An event claimed under the lease `epoch` of its partition and not settled yet. */
export interface Flight {
  readonly event: ClaimedEvent;
  readonly epoch: number;
}

/** What became of one event: skipped = not sent (its lease is no longer trusted, or the relay is stopping). */
export type Outcome =
  | { readonly kind: 'published' }
  | { readonly kind: 'failed'; readonly error: unknown }
  | { readonly kind: 'skipped' };

const PUBLISHED: Outcome = Object.freeze({ kind: 'published' });
const SKIPPED: Outcome = Object.freeze({ kind: 'skipped' });

export interface DispatcherOptions {
  readonly publishers: ReadonlyMap<string, Publisher>;
  readonly router: Router;
  /** Messages in publish() calls at once per destination. */
  readonly windowPerDestination: number;
  /** The most messages in one publish() call: results come back per call, so smaller calls free keys sooner. */
  readonly messagesPerCall: number;
  /** A backstop for a publish() that never settles: its messages fail after this. */
  readonly publishTimeoutMs: number;
  /** Asked right before each send: false leaves the event unsent (skipped). */
  readonly mayPublish: (flight: Flight) => boolean;
  /** Told of each publish() call and its timing, when active (nothing is timed otherwise). */
  readonly observers?: Observers;
}

interface Waiting {
  readonly flight: Flight;
  readonly resolve: (outcome: Outcome) => void;
}

interface Queue {
  readonly publisher: Publisher;
  readonly waiting: Waiting[];
  /** Messages in calls not answered yet. */
  sending: number;
  scheduled: boolean;
}

export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #queues = new Map<string, Queue>();

  constructor(options: DispatcherOptions) {
    this.#o = options;
  }

  /** Publishes one event; never rejects. */
  send(flight: Flight): Promise<Outcome> {
    const { event } = flight;
    const name = this.#o.router.publisherFor(event.type, event.aggregateType);
    const publisher = name === undefined ? undefined : this.#o.publishers.get(name);
    if (name === undefined || !publisher) {
      const why =
        name === undefined ? `no route takes type "${event.type}"` : `publisher "${name}" is not configured`;
      return Promise.resolve({ kind: 'failed', error: new OutboxError('PUBLISHER_NOT_FOUND', why) });
    }
    const id = `${name}\u0000${event.destination}`;
    let queue = this.#queues.get(id);
    if (!queue) {
      queue = { publisher, waiting: [], sending: 0, scheduled: false };
      this.#queues.set(id, queue);
    }
    const q = queue;
    return new Promise((resolve) => {
      q.waiting.push({ flight, resolve });
      this.#schedule(id, q);
    });
  }

  /**
   * Starts a call for what waits, once the events handed over in this turn of the event loop
   * have joined it, unless the destination's window is full (then the next call starts when one
   * ends, with everything that waited meanwhile).
   */
  #schedule(id: string, q: Queue): void {
    if (q.scheduled || q.sending >= this.#o.windowPerDestination) return;
    if (q.waiting.length === 0) {
      if (q.sending === 0) this.#queues.delete(id);
      return;
    }
    q.scheduled = true;
    setImmediate(() => {
      q.scheduled = false;
      while (q.waiting.length > 0 && q.sending < this.#o.windowPerDestination) void this.#call(id, q);
    });
  }

  async #call(id: string, q: Queue): Promise<void> {
    const room = Math.min(this.#o.windowPerDestination - q.sending, this.#o.messagesPerCall);
    const taken = q.waiting.splice(0, room);
    q.sending += taken.length;
    try {
      try {
        await failpoint('relay.before-publish');
      } catch (error) {
        for (const w of taken) w.resolve({ kind: 'failed', error });
        return;
      }
      // Checked right before the publish: a lease that can no longer be trusted sends nothing more.
      const sending: Waiting[] = [];
      for (const w of taken) {
        if (this.#o.mayPublish(w.flight)) sending.push(w);
        else w.resolve(SKIPPED);
      }
      if (sending.length === 0) return;
      const observers = this.#o.observers?.active ? this.#o.observers : undefined;
      const startedAt = observers ? performance.now() : 0;
      const results = await this.#publish(
        q.publisher,
        sending.map((w) => messageOf(w.flight.event)),
      );
      sending.forEach((w, i) => {
        const result = results[i]!;
        w.resolve(result.ok ? PUBLISHED : { kind: 'failed', error: result.error });
      });
      observers?.published({
        publisher: id.slice(0, id.indexOf('\u0000')),
        kind: q.publisher.kind,
        destination: sending[0]!.flight.event.destination,
        events: sending.map((w) => w.flight.event),
        results,
        startedAt,
        endedAt: performance.now(),
      });
    } finally {
      q.sending -= taken.length;
      this.#schedule(id, q);
    }
  }

  /** One result per message, in order, whatever the publisher does (throws, hangs, miscounts). */
  async #publish(publisher: Publisher, messages: OutboundMessage[]): Promise<PublishResult[]> {
    const limit = this.#o.publishTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new PublishError(`publisher "${publisher.kind}" did not answer within ${limit} ms`)),
        limit,
      );
    });
    try {
      const results = await Promise.race([publisher.publish(messages), timeout]);
      if (results.length !== messages.length) {
        throw new Error(
          `publisher "${publisher.kind}" returned ${results.length} results for ${messages.length} messages`,
        );
      }
      return results;
    } catch (error) {
      return messages.map(() => ({ ok: false, error }));
    } finally {
      clearTimeout(timer);
    }
  }
}

function messageOf(event: ClaimedEvent): OutboundMessage {
  return {
    id: event.id,
    key: event.key,
    type: event.type,
    destination: event.destination,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    payload: event.payload,
    headers: event.headers,
    createdAt: event.createdAt,
    attempt: event.attempts + 1,
  };
}
