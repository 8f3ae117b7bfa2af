/** The NATS JetStream harness: a private stream per destination, read back by an ordered consumer. */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { natsPublisher } from '../../../src/publishers/nats.js';
import type { Consumer, HarnessFactory, Received } from '../../conformance/publisher.suite.js';
import { NATS_URL, natsSkip, uniqueName } from '../services.js';
import { collector } from './collector.js';
import { decodeCloudEvent } from './decode.js';

export const natsHarness: HarnessFactory = async () => {
  const skip = await natsSkip();
  if (skip) return skip;
  const nc = await connect({ servers: NATS_URL });
  const jsm = await jetstreamManager(nc);
  const streams: string[] = [];
  return {
    label: 'nats jetstream',
    capabilities: { dedupeById: true, unknownDestination: true, structured: true },
    publisher: (mode) => natsPublisher({ url: NATS_URL, mode }),
    async destination(name) {
      const stream = uniqueName(`OUTBOX_PUB_${name}`).toUpperCase();
      await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.events`] });
      streams.push(stream);
      return `${stream.toLowerCase()}.events`;
    },
    unknownDestination: async () => `${uniqueName('outbox_no_stream')}.events`,
    async consume(destination): Promise<Consumer> {
      const stream = destination.split('.')[0]!.toUpperCase();
      const messages = await (await jetstream(nc).consumers.get(stream)).consume();
      const { consumer, push } = collector(async () => {
        messages.stop();
        await done;
      });
      const done = (async () => {
        for await (const m of messages) {
          const headers: Record<string, string> = {};
          for (const name of m.headers?.keys() ?? []) headers[name] = m.headers!.get(name);
          push(decodeCloudEvent(m.subject, headers, m.string(), ['nats-msg-id']) satisfies Received);
        }
      })();
      return consumer;
    },
    async close() {
      for (const stream of streams) await jsm.streams.delete(stream).catch(() => undefined);
      await nc.drain();
    },
  };
};
