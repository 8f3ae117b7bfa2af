// @ts-check
/**
 * An order service on Drizzle and PostgreSQL: `POST /orders` writes the order row and its
 * `order.placed` event in one Drizzle transaction; the relay in this process POSTs the event to a
 * webhook receiver.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { createOutbox } from 'outbox';
import { fromDrizzle } from 'outbox/executors/drizzle';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// `{destination}` becomes the event's destination, here `events.order.order.placed`.
const WEBHOOK_URL = process.env.WEBHOOK_URL ?? 'http://127.0.0.1:4000/hooks/{destination}';
const PORT = Number(process.env.PORT ?? 3000);

const orders = pgTable('orders', {
  id: uuid('id').primaryKey(),
  customerId: text('customer_id').notNull(),
  totalCents: integer('total_cents').notNull(),
  placedAt: timestamp('placed_at', { withTimezone: true }).notNull().defaultNow(),
});

const db = drizzle(DATABASE_URL);
// drizzle-kit would generate this from `orders`; a service of one table can say it itself.
await db.execute(sql`CREATE TABLE IF NOT EXISTS orders (
  id uuid PRIMARY KEY, customer_id text NOT NULL, total_cents integer NOT NULL,
  placed_at timestamptz NOT NULL DEFAULT now())`);

const outbox = createOutbox({ database: DATABASE_URL, publishers: { webhook: WEBHOOK_URL } });
await outbox.migrate();

/** @param {{ customerId: string; totalCents: number }} order */
async function placeOrder({ customerId, totalCents }) {
  const id = randomUUID();
  // The order and its event commit together, or neither does.
  await db.transaction(async (tx) => {
    await tx.insert(orders).values({ id, customerId, totalCents });
    await outbox.add(fromDrizzle(tx), {
      type: 'order.placed',
      aggregateType: 'order',
      aggregateId: id,
      payload: { id, customerId, totalCents },
    });
  });
  return id;
}

/** @param {import('node:http').IncomingMessage} req */
async function readOrder(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  const { customerId, totalCents } = JSON.parse(body);
  if (typeof customerId !== 'string' || !Number.isInteger(totalCents) || totalCents <= 0) {
    throw new RangeError('expected {"customerId": string, "totalCents": positive integer}');
  }
  return { customerId, totalCents };
}

const relay = outbox.relay();
await relay.start();

const server = createServer(async (req, res) => {
  /** @type {(status: number, body: object) => void} */
  const send = (status, body) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  if (req.method !== 'POST' || req.url !== '/orders') return send(404, { error: 'try POST /orders' });
  try {
    send(201, { id: await placeOrder(await readOrder(req)) });
  } catch (error) {
    if (error instanceof SyntaxError || error instanceof RangeError)
      return send(400, { error: error.message });
    console.error(error);
    send(500, { error: 'internal error' });
  }
});
server.listen(PORT, '127.0.0.1', () => {
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(`listening on http://127.0.0.1:${port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    server.close();
    await relay.stop(); // publishes or gives back what it holds
    await outbox.close();
    await db.$client.end();
  });
}
