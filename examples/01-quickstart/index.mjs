import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createOutbox } from 'outbox';
import { fromBetterSqlite3 } from 'outbox/executors/better-sqlite3';
import { memoryPublisher, runOnce } from 'outbox/testing';

const file = join(mkdtempSync(join(tmpdir(), 'outbox-quickstart-')), 'app.db');
const db = new Database(file);
db.exec('CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL)');

const memory = memoryPublisher();
const outbox = createOutbox({ database: `sqlite:${file}`, publishers: { memory } });
await outbox.migrate();

// The order row and its event commit together, or not at all. No await inside: better-sqlite3
// transactions are synchronous, and so is add() on a synchronous executor.
const placeOrder = db.transaction((id, total) => {
  db.prepare('INSERT INTO orders (id, total) VALUES (?, ?)').run(id, total);
  outbox.add(fromBetterSqlite3(db), {
    type: 'order.created',
    aggregateType: 'order',
    aggregateId: id,
    payload: { id, total },
  });
});
placeOrder('o-1', 42);

await runOnce(outbox); // what `outbox relay` does continuously
const [message] = memory.messages;
console.log(
  message
    ? `published ${message.type} to ${message.destination}: ${message.payload}`
    : 'nothing was published',
);
await outbox.close();
db.close();
process.exitCode = message ? 0 : 1;
