// @ts-check
/**
 * An order service on Knex and MariaDB (or MySQL 8): `POST /orders` writes the order row and its
 * `order.placed` event in one Knex transaction; the relay in this process POSTs the event to a
 * webhook receiver.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import knex from 'knex';
import { createOutbox } from 'outbox';
import { fromKnex } from 'outbox/executors/knex';

const DATABASE_URL = process.env.DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/test';
// `{destination}` becomes the event's destination, here `events.order.order.placed`.
const WEBHOOK_URL = process.env.WEBHOOK_URL ?? 'http://127.0.0.1:4000/hooks/{destination}';
const PORT = Number(process.env.PORT ?? 3000);

const db = knex({ client: 'mysql2', connection: DATABASE_URL });
if (!(await db.schema.hasTable('orders'))) {
  await db.schema.createTable('orders', (table) => {
    table.uuid('id').primary();
    table.string('customer_id').notNullable();
    table.integer('total_cents').notNullable();
    table.timestamp('placed_at').notNullable().defaultTo(db.fn.now());
  });
}

const outbox = createOutbox({ database: DATABASE_URL, publishers: { webhook: WEBHOOK_URL } });
await outbox.migrate();

/** @param {{ customerId: string; totalCents: number }} order */
async function placeOrder({ customerId, totalCents }) {
  const id = randomUUID();
  // The order and its event commit together, or neither does.
  await db.transaction(async (trx) => {
    await trx('orders').insert({ id, customer_id: customerId, total_cents: totalCents });
    await outbox.add(fromKnex(trx), {
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
    await db.destroy();
  });
}
