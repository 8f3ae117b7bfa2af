/**
 * The Kafka harness of the publisher conformance suite. There is no Kafka broker on these
 * machines: kcat (librdkafka) starts librdkafka's mock cluster on real loopback ports, and a
 * separate kcat process consuming with `-J` is the independent verifier (partition, offset, key,
 * headers and value of every record, as one JSON object per line: no separator to get wrong,
 * even for a `tracestate` full of ',' and '='). With OUTBOX_TEST_KAFKA_BROKERS set, the same
 * harness runs against that real cluster instead (topics created and deleted through kafkajs).
 *
 * The mock is a mock, not Kafka: it creates any topic a client asks about, has no CreateTopics,
 * and kafkajs's idempotent producer cannot connect to it. Its outage is the mock process frozen
 * (SIGSTOP) and thawed (SIGCONT): the brokers stop answering on their addresses, keeping what
 * they acknowledged, since a restarted mock would listen on new ports. Lost acks go through
 * kafkajs's socketFactory to a TCP proxy per broker.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { STRUCTURED_CONTENT_TYPE } from '../../../src/core/envelope.js';
import { type KafkaProducerLike, kafkaPublisher } from '../../../src/publishers/kafka.js';
import type {
  Consumer,
  HarnessFactory,
  LossyPath,
  OutageRig,
  PublisherHarness,
  Received,
} from '../../conformance/publisher.suite.js';
import { stopProcess } from '../private-servers.js';
import { serviceSkipReason, uniqueName } from '../services.js';
import { TcpProxy } from '../tcp-proxy.js';
import { collector } from './collector.js';

export const KCAT = process.env.OUTBOX_TEST_KCAT ?? 'kcat';
/** A real cluster's bootstrap list ('host:port,host:port'); unset = librdkafka's mock cluster. */
export const KAFKA_TEST_BROKERS = process.env.OUTBOX_TEST_KAFKA_BROKERS || undefined;
export const MOCK_LABEL = 'kafka (librdkafka mock)';
/** Partitions of every topic: the mock's auto-created ones have 4; the real cluster's get 4 too. */
export const PARTITIONS = 4;

/** One record as kcat printed it. */
export interface KafkaRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly key: string | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly value: string | null;
}

export interface KafkaConsumer extends Consumer {
  /** The raw records, in the order kcat printed them (per partition: offset order). */
  readonly records: readonly KafkaRecord[];
}

/** Every child process this file started, killed when the test process exits however it exits. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Why kcat cannot be used here (it fails the suite under CI=true), or undefined. */
export function kcatSkipReason(): string | undefined {
  const probe = spawnSync(KCAT, ['-V'], { stdio: 'ignore', timeout: 10_000 });
  if (!probe.error && probe.status === 0) return undefined;
  const reason = `${KCAT} cannot run here: install Debian's kcat (.ci/setup-services.sh does)`;
  if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: a missing tool fails the suite)`);
  console.warn(`SKIPPED: ${reason}`);
  return reason;
}

/** librdkafka's mock cluster, held up by a kcat consumer of its own. */
export interface MockCluster {
  /** 'host:port,host:port,host:port' */
  readonly bootstrap: string;
  readonly brokers: readonly string[];
  /**
   * Freezes every broker of the cluster (SIGSTOP): connections stay open, nothing answers.
   * Resolves once the process is stopped (a loaded machine may take a moment to stop it).
   */
  freeze(): Promise<void>;
  thaw(): void;
  close(): Promise<void>;
}

/**
 * Starts a mock cluster of `brokers` brokers. Without `-d mock` (its debug log is a line per
 * request), librdkafka still logs the one notice naming the mock's bootstrap servers.
 */
export async function startMockCluster(brokers = 3): Promise<MockCluster> {
  const args = ['-b', 'unused:1', '-X', `test.mock.num.brokers=${brokers}`, '-C', '-t', '__keepalive'];
  const child = track(spawn(KCAT, [...args, '-o', 'end', '-q'], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let log = '';
  const bootstrap = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no mock cluster within 20 s:\n${log}`)), 20_000);
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const found = /(?:bootstrap\.servers=|replaced with )(\S+)/.exec(log);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]!);
      }
    });
    child.once('exit', (code, signal) => fail(new Error(`kcat exited (${code ?? signal}):\n${log}`)));
  });
  return {
    bootstrap,
    brokers: bootstrap.split(','),
    async freeze() {
      child.kill('SIGSTOP');
      // Field 3 of /proc/<pid>/stat is the state: T once stopped.
      const stopped = () => readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.startsWith('T');
      for (let i = 0; i < 200 && !stopped(); i++) await new Promise((r) => setTimeout(r, 5));
    },
    thaw: () => child.kill('SIGCONT'),
    async close() {
      child.kill('SIGCONT');
      await stopProcess(child, 'SIGKILL');
    },
  };
}

/** One line of `kcat -J`: the record as JSON, headers as a flat [name, value, …] list. */
function parseLine(line: string): KafkaRecord {
  const raw = JSON.parse(line) as {
    topic: string;
    partition: number;
    offset: number;
    key?: string | null;
    payload?: string | null;
    headers?: (string | null)[];
  };
  const headers: Record<string, string> = {};
  const list = raw.headers ?? [];
  for (let i = 0; i + 1 < list.length; i += 2) headers[list[i]!] = list[i + 1] ?? '';
  return {
    topic: raw.topic,
    partition: raw.partition,
    offset: raw.offset,
    key: raw.key ?? null,
    headers,
    value: raw.payload ?? null,
  };
}

/** A record as the suite sees it: binary mode reads `ce_*` headers, structured mode the value. */
export function decodeKafka(record: KafkaRecord): Received {
  const attributes: Record<string, string> = {};
  const headers: Record<string, string> = {};
  let contentType = '';
  for (const [name, value] of Object.entries(record.headers)) {
    if (name === 'content-type') contentType = value;
    else if (name.startsWith('ce_')) attributes[name.slice(3)] = value;
    else headers[name] = value;
  }
  const body = record.value ?? '';
  if (contentType !== STRUCTURED_CONTENT_TYPE)
    return { destination: record.topic, attributes, contentType, headers, data: body };
  const { data, datacontenttype, ...context } = JSON.parse(body) as Record<string, unknown>;
  return {
    destination: record.topic,
    attributes: Object.fromEntries(Object.entries(context).map(([k, v]) => [k, String(v)])),
    contentType: String(datacontenttype),
    headers,
    data: JSON.stringify(data),
  };
}

/**
 * A kcat consumer of `topic` from its first offset, without a consumer group: it keeps reading
 * (through a frozen broker too) until closed. On the mock, asking for the topic creates it.
 */
export async function consumeKafka(bootstrap: string, topic: string): Promise<KafkaConsumer> {
  const args = ['-b', bootstrap, '-C', '-t', topic, '-o', 'beginning', '-J', '-u', '-q'];
  const child = track(spawn(KCAT, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const records: KafkaRecord[] = [];
  const { consumer, push } = collector(() => stopProcess(child));
  let rest = '';
  let errors = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      const record = parseLine(line);
      records.push(record);
      push(decodeKafka(record));
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    errors = (errors + chunk.toString()).slice(-2000);
  });
  const early = await new Promise<string | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 200);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(`kcat consumer of '${topic}' exited (${code}): ${errors}`);
    });
  });
  if (early !== undefined) throw new Error(early);
  return {
    ...consumer,
    records,
    async waitFor(count, timeoutMs) {
      try {
        return await consumer.waitFor(count, timeoutMs);
      } catch (error) {
        throw new Error(`kcat consumer of '${topic}': ${(error as Error).message}; kcat said: ${errors}`);
      }
    },
  };
}

/** A kafkajs producer of the harness's own (not the publisher's), silent, without idempotence on the mock. */
export function testProducer(
  brokers: readonly string[],
  options: { socketFactory?: ConstructorParameters<typeof Kafka>[0]['socketFactory'] } = {},
): Producer {
  const kafka = new Kafka({
    clientId: 'outbox-test',
    brokers: [...brokers],
    logLevel: logLevel.NOTHING,
    ...options,
  });
  return kafka.producer({ allowAutoTopicCreation: false, idempotent: false, maxInFlightRequests: 1 });
}

/**
 * A producer whose connections to each broker go through a TCP proxy (kafkajs's socketFactory),
 * so a test can lose the brokers' replies or reset every connection.
 */
async function lossyProducer(
  bootstrap: readonly string[],
  advertised: readonly string[],
): Promise<{ producer: Producer; proxies: TcpProxy[] }> {
  const proxies = new Map<string, TcpProxy>();
  for (const broker of new Set([...bootstrap, ...advertised]))
    proxies.set(broker, await TcpProxy.start(`tcp://${broker}`, 9092));
  const producer = testProducer(bootstrap, {
    socketFactory: ({ host, port, onConnect }) => {
      const proxy = proxies.get(`${host}:${port}`);
      const socket = connect(proxy ? { host: '127.0.0.1', port: proxy.port } : { host, port }, onConnect);
      socket.setKeepAlive(true, 60_000);
      return socket;
    },
  });
  await producer.connect();
  return { producer, proxies: [...proxies.values()] };
}

/** The harness, with what the publisher's own tests also need. */
export interface KafkaHarness extends PublisherHarness {
  /** The bootstrap brokers ('host:port'). */
  readonly brokers: readonly string[];
  /** True on librdkafka's mock cluster, false on a real one. */
  readonly mock: boolean;
  consume(destination: string): Promise<KafkaConsumer>;
}

export async function createKafkaHarness(): Promise<KafkaHarness | string> {
  const noKcat = kcatSkipReason();
  if (noKcat) return noKcat;
  return KAFKA_TEST_BROKERS === undefined ? mockHarness() : realHarness(KAFKA_TEST_BROKERS);
}

export const kafkaHarness: HarnessFactory = createKafkaHarness;

const CONFLUENT = '@confluentinc/kafka-javascript';

interface ConfluentProducer extends KafkaProducerLike {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
}

/** The KafkaJS-compatible API of @confluentinc/kafka-javascript, as far as the harness uses it. */
interface ConfluentKafkaJS {
  Kafka: new (config: object) => { producer(config: object): ConfluentProducer };
  logLevel: { NOTHING: number };
}

/** Its KafkaJS API, or why it cannot be used here. */
async function loadConfluent(): Promise<ConfluentKafkaJS | string> {
  // Not a devDependency (it builds here only from source), so no static import for tsc to resolve.
  const name: string = CONFLUENT;
  try {
    const mod = (await import(name)) as {
      KafkaJS?: ConfluentKafkaJS;
      default?: { KafkaJS?: ConfluentKafkaJS };
    };
    return mod.KafkaJS ?? mod.default?.KafkaJS ?? `${CONFLUENT} has no KafkaJS API`;
  } catch {
    return (
      `${CONFLUENT} is not installed: it builds here only from source with CKJS_LINKING=dynamic ` +
      '(about 2 minutes), so a CI step of its own installs it and runs this suite'
    );
  }
}

/**
 * The same harness, with publishers over @confluentinc/kafka-javascript's producer (librdkafka,
 * idempotent: the mock supports that for librdkafka clients). Outage and lost-ack scenarios stay
 * with kafkajs: the confluent client has no socketFactory to route through a proxy.
 */
export async function createConfluentHarness(): Promise<KafkaHarness | string> {
  const api = await loadConfluent();
  if (typeof api === 'string') return api;
  const base = await createKafkaHarness();
  if (typeof base === 'string') return base;
  const { outage: _outage, lostAck: _lostAck, ...rest } = base;
  const producers: ConfluentProducer[] = [];
  return {
    ...rest,
    label: `${base.label} via ${CONFLUENT}`,
    async publisher(mode) {
      const kafka = new api.Kafka({
        kafkaJS: { brokers: [...base.brokers], logLevel: api.logLevel.NOTHING },
      });
      const producer = kafka.producer({
        kafkaJS: { acks: -1, idempotent: true, allowAutoTopicCreation: false },
      });
      await producer.connect();
      producers.push(producer);
      return kafkaPublisher({ producer, mode });
    },
    outageUnsupported: `runs with kafkajs only (the ${MOCK_LABEL} outage is the same for every client)`,
    lostAckUnsupported: `${CONFLUENT} has no socketFactory to route its connections through a proxy`,
    async close() {
      for (const producer of producers) await producer.disconnect().catch(() => undefined);
      await base.close();
    },
  };
}

async function mockHarness(): Promise<KafkaHarness> {
  const cluster = await startMockCluster();
  return {
    ...commonHooks(cluster.bootstrap, cluster.brokers),
    brokers: cluster.brokers,
    mock: true,
    label: MOCK_LABEL,
    capabilities: {
      dedupeById: false,
      unknownDestination:
        "librdkafka's mock cluster creates every topic a client asks about (its Metadata API predates " +
        'the allow-auto-creation flag): only routes keep such events out, refused at add()',
      structured: true,
    },
    // kafkajs's idempotent producer cannot connect to the mock (no transaction coordinator).
    publisher: (mode) => kafkaPublisher({ brokers: cluster.brokers, mode, idempotent: false }),
    destination: async (name) => uniqueName(`outbox-pub-${name}`),
    unknownDestination: () => Promise.reject(new Error('the mock cluster has no unknown topics')),
    async outage(): Promise<OutageRig> {
      const own = await startMockCluster();
      const destination = uniqueName('outbox-outage');
      const consumer = await consumeKafka(own.bootstrap, destination);
      return {
        // Shorter than the outage, so that publishes meanwhile fail and the relay retries them.
        publisher: kafkaPublisher({ brokers: own.brokers, idempotent: false, timeoutMs: 1000 }),
        destination,
        consumer,
        stop: async () => own.freeze(),
        start: async () => own.thaw(),
        async close() {
          await consumer.close();
          await own.close();
        },
      };
    },
    async close() {
      await cluster.close();
    },
  };
}

async function realHarness(bootstrap: string): Promise<KafkaHarness | string> {
  const brokers = bootstrap.split(',');
  const skip = await serviceSkipReason('Kafka', `tcp://${brokers[0]}`, 9092);
  if (skip) return skip;
  const admin = new Kafka({ clientId: 'outbox-test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const topics: string[] = [];
  const create = async (name: string) => {
    const topic = uniqueName(`outbox-pub-${name}`);
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });
    topics.push(topic);
    return topic;
  };
  // The addresses the brokers advertise, which clients connect to after the bootstrap.
  const advertised = (await admin.describeCluster()).brokers.map((b) => `${b.host}:${b.port}`);
  return {
    ...commonHooks(bootstrap, advertised, create),
    brokers,
    mock: false,
    label: 'kafka',
    capabilities: { dedupeById: false, unknownDestination: true, structured: true },
    publisher: (mode) => kafkaPublisher({ brokers, mode }),
    destination: create,
    unknownDestination: async () => uniqueName('outbox-no-such-topic'),
    outageUnsupported: 'a real Kafka cluster is not ours to stop (the chaos tier may)',
    async close() {
      if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => undefined);
      await admin.disconnect();
    },
  };
}

/** The hooks both modes share: consumers, and lost acks through a proxy per advertised broker. */
function commonHooks(
  bootstrap: string,
  advertised: readonly string[],
  create: (name: string) => Promise<string> = async (name) => uniqueName(`outbox-pub-${name}`),
): Pick<KafkaHarness, 'consume' | 'lostAck'> {
  return {
    consume: (destination) => consumeKafka(bootstrap, destination),
    async lostAck(): Promise<LossyPath> {
      const destination = await create('lostack');
      const consumer = await consumeKafka(bootstrap, destination);
      const { producer, proxies } = await lossyProducer(bootstrap.split(','), advertised);
      return {
        // kafkajs's own request timeout (30 s) is longer than the scenario: the reset ends the wait.
        publisher: kafkaPublisher({ producer, timeoutMs: 20_000 }),
        destination,
        consumer,
        clientResends:
          'kafkajs sends a produce request again on a new connection when its connection closed ' +
          'before the reply (retries inside send()); without idempotence the broker keeps both copies',
        loseReplies: () => {
          for (const proxy of proxies) proxy.loseReplies();
        },
        cut: () => {
          for (const proxy of proxies) proxy.cut();
        },
        async close() {
          await consumer.close();
          await producer.disconnect().catch(() => undefined);
          await Promise.all(proxies.map((p) => p.close()));
        },
      };
    },
  };
}
