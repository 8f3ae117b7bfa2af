/**
 * Destination grammars: what each broker family accepts as a topic / subject / path.
 * `add()` checks a destination against its publisher's grammar before any SQL is sent, so an
 * event that its broker could never take is refused at once instead of dead-lettered later.
 */

/** Returns the reason a destination is invalid, or undefined when it is fine. */
export type DestinationGrammar = (destination: string) => string | undefined;

const MAX_DESTINATION_LENGTH = 1024;

/** Any broker: non-empty, bounded, no whitespace or control characters. */
export const genericGrammar: DestinationGrammar = (d) => {
  if (d.length === 0) return 'is empty';
  if (d.length > MAX_DESTINATION_LENGTH) return `is longer than ${MAX_DESTINATION_LENGTH} characters`;
  if (/[\s\u0000-\u001f\u007f]/.test(d)) return 'contains whitespace or control characters';
  return undefined;
};

/** NATS subject: dot-separated non-empty tokens, no wildcards (`*`, `>`) when publishing. */
export const natsGrammar: DestinationGrammar = (d) => {
  const generic = genericGrammar(d);
  if (generic) return generic;
  for (const token of d.split('.')) {
    if (token === '') return 'has an empty token (NATS subjects are dot-separated non-empty tokens)';
    if (token === '*' || token === '>' || token.includes('*') || token.includes('>'))
      return 'contains a wildcard (* or >), which cannot be published to';
  }
  return undefined;
};

/** HTTP: the destination becomes a URL path (`{destination}` in the webhook URL), so path characters only. */
export const httpGrammar: DestinationGrammar = (d) => {
  const generic = genericGrammar(d);
  if (generic) return generic;
  if (!/^[A-Za-z0-9._~!$&'()*+,;=:@/-]+$/.test(d)) return 'has characters that are not allowed in a URL path';
  if (d.split('/').some((s) => s === '.' || s === '..')) return 'has a "." or ".." path segment';
  return undefined;
};

const MAX_KAFKA_TOPIC_LENGTH = 249;

/**
 * Kafka topic: 1–249 of `a-z A-Z 0-9 . _ -`, not `.` or `..` (the broker's own rules), and not
 * starting with `__`, the prefix of Kafka's internal topics (`__consumer_offsets`, …), which a
 * misrouted event must never write into.
 * @example
 * kafkaGrammar('orders.created') // undefined
 * kafkaGrammar('orders/created') // "has characters other than …"
 */
export const kafkaGrammar: DestinationGrammar = (d) => {
  if (d.length === 0) return 'is empty';
  if (d.length > MAX_KAFKA_TOPIC_LENGTH)
    return `is longer than ${MAX_KAFKA_TOPIC_LENGTH} characters (Kafka's limit for a topic name)`;
  if (!/^[A-Za-z0-9._-]+$/.test(d))
    return "has characters other than letters, digits, '.', '_' and '-' (Kafka topic names allow no others)";
  if (d === '.' || d === '..') return "is '.' or '..', which Kafka refuses as a topic name";
  if (d.startsWith('__')) return "starts with '__', the prefix of Kafka's internal topics";
  return undefined;
};

const GRAMMARS: Readonly<Record<string, DestinationGrammar>> = Object.freeze({
  nats: natsGrammar,
  http: httpGrammar,
  kafka: kafkaGrammar,
});

/** The grammar of a publisher kind ('nats', 'http', …); the generic one for kinds without their own. */
export function grammarFor(kind: string): DestinationGrammar {
  return GRAMMARS[kind] ?? genericGrammar;
}

/** The publisher kind a URL names: `nats://` → 'nats', `https://` → 'http', `kafka://` → 'kafka', … */
export function kindOfUrl(url: string): string | undefined {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'nats' || scheme === 'tls') return 'nats';
  if (scheme === 'http' || scheme === 'https') return 'http';
  if (scheme === 'redis' || scheme === 'rediss') return 'redis';
  if (scheme === 'mqtt' || scheme === 'mqtts') return 'mqtt';
  if (scheme === 'amqp' || scheme === 'amqps') return 'amqp';
  if (scheme === 'kafka' || scheme === 'kafka+ssl') return 'kafka';
  if (scheme === 'memory') return 'memory';
  return undefined;
}
