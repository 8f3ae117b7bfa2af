/**
 * The NATS JetStream harness: a private stream per destination, read back by an ordered consumer.
 * Its outage runs on a private nats-server (JetStream on a file store in a temp dir), its lost
 * acks through a TCP proxy in front of the machine's server.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { natsPublisher } from '../../../src/publishers/nats.js';
import type { Consumer, HarnessFactory, Received } from '../../conformance/publisher.suite.js';
import { missingBinary, NATS_SERVER, startNatsServer } from '../private-servers.js';
import { NATS_URL, natsSkip, uniqueName } from '../services.js';
import { collector } from './collector.js';
import { decodeCloudEvent } from './decode.js';
import { privateServerOutage, proxiedLossyPath } from './rigs.js';

/**
 * Everything `stream` holds and receives, in stream order, by an ordered consumer. `expiresMs`
 * short: pulls are renewed (and missed heartbeats noticed) within seconds, so that the consumer
 * recreates itself soon after its server restarted.
 */
async function streamConsumer(nc: NatsConnection, stream: string, expiresMs?: number): Promise<Consumer> {
  const ordered = await jetstream(nc).consumers.get(stream);
  const messages = await ordered.consume(expiresMs === undefined ? {} : { expires: expiresMs });
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
}

const streamOf = (destination: string) => destination.split('.')[0]!.toUpperCase();

export const natsHarness: HarnessFactory = async () => {
  const skip = await natsSkip();
  if (skip) return skip;
  const nc = await connect({ servers: NATS_URL });
  const jsm = await jetstreamManager(nc);
  const streams: string[] = [];
  const destination = async (name: string) => {
    const stream = uniqueName(`OUTBOX_PUB_${name}`).toUpperCase();
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.events`] });
    streams.push(stream);
    return `${stream.toLowerCase()}.events`;
  };
  const noServer = missingBinary(NATS_SERVER);
  return {
    label: 'nats jetstream',
    capabilities: { dedupeById: true, unknownDestination: true, structured: true },
    publisher: (mode) => natsPublisher({ url: NATS_URL, mode }),
    destination,
    unknownDestination: async () => `${uniqueName('outbox_no_stream')}.events`,
    consume: (d) => streamConsumer(nc, streamOf(d)),
    ...(noServer
      ? { outageUnsupported: `no private nats-server: ${noServer}` }
      : {
          outage: () =>
            privateServerOutage(
              // SIGTERM: nats-server 2.9 flushes its file store on the way out (SIGKILL may lose acked messages).
              { name: 'nats', scheme: 'nats', start: startNatsServer, signal: 'SIGTERM' },
              async (url) => {
                const reader = await connect({
                  servers: url,
                  maxReconnectAttempts: -1,
                  reconnectTimeWait: 100,
                });
                await (await jetstreamManager(reader)).streams.add({
                  name: 'OUTAGE',
                  subjects: ['outage.events'],
                });
                const consumer = await streamConsumer(reader, 'OUTAGE', 2000);
                return {
                  // Shorter than the outage, so that publishes meanwhile fail and the relay retries them.
                  publisher: natsPublisher({ url, timeoutMs: 1000 }),
                  destination: 'outage.events',
                  consumer,
                  async close() {
                    await consumer.close();
                    await reader.close();
                  },
                };
              },
            ),
        }),
    lostAck: async () =>
      proxiedLossyPath({
        url: NATS_URL,
        defaultPort: 4222,
        destination: await destination('lostack'),
        consume: (d) => streamConsumer(nc, streamOf(d)),
        publisher: (url) => natsPublisher({ url, timeoutMs: 1500 }),
      }),
    async close() {
      for (const stream of streams) await jsm.streams.delete(stream).catch(() => undefined);
      await nc.drain();
    },
  };
};
