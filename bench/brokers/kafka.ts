/**
 * Kafka in the brokers scenario — librdkafka's mock cluster, not Kafka: there is no Kafka broker
 * on these machines, and Debian's kcat starts the mock (3 brokers on loopback ports, topics
 * auto-created with 4 partitions) for the run. Rows say "(librdkafka mock)". kafkajs's
 * idempotent producer cannot connect to the mock, so both sides run without it, one request in
 * flight per broker (what keeps per-partition order without idempotence, as our publisher does).
 * The raw client is kafkajs sending batches of the scenario's window, `acks: -1`, with the headers
 * src/publishers/kafka.ts sends (`ce_*`, `content-type`) and the event key as the message key.
 * Verified by the broker's own count: the sum of the topic's high watermarks, against the sum
 * before the phase (the mock has no topic deletion to empty it).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { type Admin, Kafka, logLevel } from 'kafkajs';
import { cloudEventContext } from '../../src/core/envelope.js';
import type { OutboundMessage } from '../../src/index.js';
import { kafkaPublisher } from '../../src/publishers/kafka.js';
import { type BenchEnv, onCleanup } from '../env.js';
import { EVENT_TYPE } from '../workload.js';
import type { BrokerBench, Delivered } from './broker.js';

const KCAT = process.env.OUTBOX_BENCH_KCAT ?? 'kcat';
const MOCK_BROKERS = 3;
const START_TIMEOUT_MS = 20_000;

/** Starts the mock cluster (held up by a kcat consumer); resolves to it and its bootstrap list. */
async function startMock(): Promise<{ child: ChildProcess; brokers: string[] }> {
  const args = ['-b', 'unused:1', '-X', `test.mock.num.brokers=${MOCK_BROKERS}`, '-C', '-t', '__keepalive'];
  const child = spawn(KCAT, [...args, '-o', 'end', '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  try {
    const bootstrap = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no mock cluster within 20 s: ${log}`)),
        START_TIMEOUT_MS,
      );
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`kcat exited (${code}): ${log}`)));
      child.stderr.on('data', (chunk: Buffer) => {
        log += chunk.toString();
        const found = /(?:bootstrap\.servers=|replaced with )(\S+)/.exec(log);
        if (found) {
          clearTimeout(timer);
          resolve(found[1]!);
        }
      });
    });
    return { child, brokers: bootstrap.split(',') };
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`the Kafka rows need Debian's kcat (librdkafka's mock cluster): ${String(error)}`, {
      cause: error,
    });
  }
}

/** The record src/publishers/kafka.ts sends in binary mode. */
function recordOf(m: OutboundMessage) {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(cloudEventContext(m, 'outbox')))
    headers[name === 'datacontenttype' ? 'content-type' : `ce_${name}`] = value;
  return { key: m.key, value: m.payload, headers };
}

async function messagesIn(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic).catch(() => []);
  return offsets.reduce((sum, p) => sum + Number(p.high), 0);
}

export async function openKafka(env: BenchEnv): Promise<BrokerBench> {
  const prefix = `outbox-bench-${env.tag}`;
  const topic = `${prefix}.${EVENT_TYPE}`;
  const { child, brokers } = await startMock();
  const kafka = new Kafka({ clientId: 'outbox-bench', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unhook();
    await admin.disconnect().catch(() => {});
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  };
  const unhook = onCleanup(close);
  let before = 0;
  try {
    await admin.connect();
  } catch (error) {
    await close();
    throw error;
  }
  return {
    label: 'Kafka (librdkafka mock)',
    prefix,
    rawNote:
      'kafkajs alone: the same records (key, ce_* headers), acks -1, not idempotent, 1 request in flight per broker, a batch per send',
    verifyNote: 'the sum of the topic’s high watermarks',
    publisher: () => kafkaPublisher({ brokers, idempotent: false }),
    async openRaw(window) {
      const producer = kafka.producer({
        allowAutoTopicCreation: false,
        idempotent: false,
        maxInFlightRequests: 1,
      });
      await producer.connect();
      return {
        window,
        async publishBatch(messages) {
          await producer.send({ topic, acks: -1, messages: messages.map(recordOf) });
        },
        async close() {
          await producer.disconnect().catch(() => {});
        },
      };
    },
    async delivered(): Promise<Delivered> {
      return { count: (await messagesIn(admin, topic)) - before };
    },
    async reset() {
      before = await messagesIn(admin, topic);
    },
    close,
  };
}
