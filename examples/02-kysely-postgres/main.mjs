// @ts-check
/**
 * An order service on Kysely and PostgreSQL: `POST /orders` writes the order row and its
 * `order.placed` event in one Kysely transaction; the relay in this process publishes the event
 * to NATS JetStream.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { createOutbox } from 'outbox';
import { fromKysely } from 'outbox/executors/kysely';
import pg from 'pg';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const SUBJECTS = process.env.SUBJECT_PREFIX ?? 'shop';
const PORT = Number(process.env.PORT ?? 3000);

/**
 * @typedef {object} Database
 * @property {{ id: string; customer_id: string; total_cents: number; placed_at: import('kysely').Generated<Date> }} orders
 */

/** @type {Kysely<Database>} */
const db = new Kysely({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: DATABASE_URL }) }),
});
await db.schema
  .createTable('orders')
  .ifNotExists()
  .addColumn('id', 'uuid', (c) => c.primaryKey())
  .addColumn('customer_id', 'text', (c) => c.notNull())
  .addColumn('total_cents', 'integer', (c) => c.notNull())
  .addColumn('placed_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
  .execute();

// JetStream keeps only what a stream captures: make sure ours exists (a no-op when it does).
const nc = await connect({ servers: NATS_URL });
await (await jetstreamManager(nc)).streams.add({ name: SUBJECTS.toUpperCase(), subjects: [`${SUBJECTS}.>`] });
await nc.close();

const outbox = createOutbox({
  database: DATABASE_URL,
  publishers: { nats: NATS_URL },
  routes: [{ destination: `${SUBJECTS}.{aggregateType}.{type}` }],
});
await outbox.migrate();

/** @param {{ customerId: string; totalCents: number }} order */
async function placeOrder({ customerId, totalCents }) {
  const id = randomUUID();
  // The order and its event commit together, or neither does.
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('orders').values({ id, customer_id: customerId, total_cents: totalCents }).execute();
    await outbox.add(fromKysely(trx), {
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
