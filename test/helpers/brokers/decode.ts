/**
 * Decoding what a real consumer received back into the conformance suite's shape, for bindings
 * that name attributes with a prefix (`ce-` over HTTP, NATS and Redis Streams).
 */
import type { Received } from '../../conformance/publisher.suite.js';

const STRUCTURED = 'application/cloudevents+json';

/**
 * `headers`: every header or field the message carried (names in any case); `body`: its data.
 * Headers the transport itself owns (`nats-msg-id`, `idempotency-key`, …) are left out by `ignore`.
 */
export function decodeCloudEvent(
  destination: string,
  headers: Readonly<Record<string, string>>,
  body: string,
  ignore: readonly string[] = [],
): Received {
  const attributes: Record<string, string> = {};
  const own: Record<string, string> = {};
  let contentType = '';
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (name === 'content-type') contentType = value;
    else if (name.startsWith('ce-')) attributes[name.slice(3)] = decodeURIComponent(value);
    else if (!ignore.includes(name)) own[name] = value;
  }
  if (contentType !== STRUCTURED) return { destination, attributes, contentType, headers: own, data: body };
  const { data, datacontenttype, ...context } = JSON.parse(body) as Record<string, unknown>;
  return {
    destination,
    attributes: Object.fromEntries(Object.entries(context).map(([k, v]) => [k, String(v)])),
    contentType: String(datacontenttype),
    headers: own,
    data: JSON.stringify(data),
  };
}
