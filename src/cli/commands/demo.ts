/**
 * `outbox demo` (what `npm start` runs): the whole system on the embedded default, no servers.
 * An "orders" service commits orders with their events into a SQLite file at a steady rate; a
 * relay publishes them to a real HTTP receiver on loopback, which fails midway (503s, then
 * refused connections). At the end the ledger written in each order's transaction is checked
 * against what the receiver got: nothing lost, nothing out of order per key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { OutboxError } from '../../core/errors.js';
import { fromBetterSqlite3 } from '../../executors/better-sqlite3.js';
import { createOutbox } from '../../outbox.js';
import { silentLogger } from '../../relay/logger.js';
import { checkDelivery, type LedgerEntry } from '../../testing/delivery-check.js';
import { type ReceiverMode, startDemoReceiver } from '../demo/receiver.js';
import { formatSummary } from '../demo/report.js';

interface DemoFlags {
  duration: string;
  rate: string;
}

type Database = import('better-sqlite3').Database;

async function openDatabase(path: string): Promise<Database> {
  try {
    const { default: BetterSqlite3 } = await import('better-sqlite3');
    return new BetterSqlite3(path);
  } catch (cause) {
    throw new OutboxError(
      'DRIVER_MISSING',
      'the demo needs the "better-sqlite3" package: npm install better-sqlite3',
      { cause },
    );
  }
}

const STEPS = ['order.created', 'order.paid', 'order.shipped'] as const;

export function demoCommand(): Command {
  return new Command('demo')
    .description('run the whole system for a while on SQLite and a local HTTP receiver, then check it')
    .addOption(
      new Option('--duration <seconds>', 'how long the orders service writes')
        .default('40')
        .env('OUTBOX_DEMO_DURATION'),
    )
    .addOption(
      new Option('--rate <tx-per-second>', 'order transactions per second')
        .default('40')
        .env('OUTBOX_DEMO_RATE'),
    )
    .action(async (flags: DemoFlags) => {
      const seconds = Number(flags.duration);
      const rate = Number(flags.rate);
      if (!(seconds >= 5 && seconds <= 3600) || !(rate > 0 && rate <= 5000)) {
        throw new OutboxError(
          'INVALID_CONFIG',
          '--duration must be 5..3600 seconds and --rate 1..5000 per second',
        );
      }
      process.exitCode = await runDemo(seconds, rate);
    });
}

async function runDemo(seconds: number, rate: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-demo-'));
  const path = join(dir, 'orders.db');
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const receiver = await startDemoReceiver(secret);
  const outbox = createOutbox({
    database: `sqlite:${path}`,
    publishers: { webhook: { url: receiver.url, secret, timeoutMs: 2000 } },
    relay: {
      pollIntervalMs: 100,
      maxAttempts: 25,
      backoff: { baseMs: 100, capMs: 2000 },
      logger: silentLogger,
    },
  });
  const db = await openDatabase(path);
  try {
    await outbox.migrate();
    db.pragma('journal_mode = WAL');
    db.exec(`CREATE TABLE orders (id TEXT PRIMARY KEY, status TEXT NOT NULL, total INTEGER NOT NULL);
      CREATE TABLE ledger (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, key TEXT NOT NULL)`);
    const executor = fromBetterSqlite3(db);
    const insertOrder = db.prepare('INSERT INTO orders (id, status, total) VALUES (?, ?, ?)');
    const updateOrder = db.prepare('UPDATE orders SET status = ? WHERE id = ?');
    const insertLedger = db.prepare('INSERT INTO ledger (event_id, key) VALUES (?, ?)');
    const ledger: LedgerEntry[] = [];
    const open: Array<{ id: string; step: number }> = [];
    let counter = 0;

    // One business transaction: the order row, its event and the ledger row commit together.
    const writeStep = db.transaction((orderId: string, step: number) => {
      const type = STEPS[step]!;
      if (step === 0) insertOrder.run(orderId, type, 100 + (counter % 900));
      else updateOrder.run(type, orderId);
      const id = outbox.add(executor, {
        type,
        aggregateType: 'order',
        aggregateId: orderId,
        payload: { orderId, status: type },
      });
      insertLedger.run(id, `order:${orderId}`);
      return id;
    });

    function tick(): void {
      const advance = open.length > 20 || (open.length > 0 && counter % 2 === 1);
      let orderId: string;
      let step: number;
      if (advance) {
        const index = counter % open.length;
        const order = open[index]!;
        order.step++;
        orderId = order.id;
        step = order.step;
        if (step === STEPS.length - 1) open.splice(index, 1);
      } else {
        orderId = `o${String(counter).padStart(6, '0')}`;
        step = 0;
        open.push({ id: orderId, step });
      }
      counter++;
      const id = writeStep(orderId, step);
      ledger.push({ id, key: `order:${orderId}`, committedAt: Date.now() });
    }

    const relay = outbox.relay();
    let retried = 0;
    let published = 0;
    relay.on('batch', (r) => {
      retried += r.retried.length;
      published += r.published.length;
    });
    relay.on('error', () => {});
    await relay.start();

    const tty = process.stderr.isTTY;
    const started = Date.now();
    const progress = () => {
      const elapsed = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
      const line = `${elapsed}s  added ${ledger.length}  published ${published}  pending ${ledger.length - published}  retried ${retried}  receiver ${receiver.mode}`;
      process.stderr.write(tty ? `\r${line.padEnd(100)}` : `${line}\n`);
    };
    console.log(
      `outbox demo: orders commit to ${path}; the relay posts them to ${receiver.url.replace('{destination}', '…')}`,
    );
    console.log(
      `  ${seconds} s at ${rate} transactions/s; the receiver answers 503, then refuses connections, midway\n`,
    );
    const progressTimer = setInterval(progress, tty ? 200 : 5000);
    const producer = setInterval(tick, 1000 / rate);
    const switchReceiver = (mode: ReceiverMode, note: string) => {
      void receiver.setMode(mode);
      process.stderr.write(
        `${tty ? '\n' : ''}${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s  receiver: ${note}\n`,
      );
    };
    const outage = [
      setTimeout(() => switchReceiver('503', 'answering 503 Service Unavailable'), seconds * 400),
      setTimeout(() => switchReceiver('refusing', 'down, refusing connections'), seconds * 500),
      setTimeout(() => switchReceiver('up', 'back up'), seconds * 600),
    ];
    await new Promise((r) => setTimeout(r, seconds * 1000));
    clearInterval(producer);
    outage.forEach(clearTimeout);
    await receiver.setMode('up');

    // Drain: everything committed must reach the receiver (or be dead-lettered) in time.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await outbox.status()).pending > 0)
      await new Promise((r) => setTimeout(r, 100));
    clearInterval(progressTimer);
    progress();
    if (tty) process.stderr.write('\n');
    await relay.stop();

    const dead = new Set((await outbox.store.list({ status: 'dead', limit: 1_000_000 })).map((e) => e.id));
    const result = checkDelivery(ledger, receiver.receptions, dead);
    const outageStart = started + seconds * 400;
    const steady = checkDelivery(
      ledger.filter((e) => e.committedAt < outageStart - 1000),
      receiver.receptions,
      dead,
    );
    console.log(formatSummary(result, { seconds, retried, badSignatures: receiver.badSignatures, steady }));
    const ok = result.lost === 0 && result.orderViolations === 0;
    console.log(
      ok
        ? 'All committed events were delivered, in order per key.'
        : 'FAILED: events were lost or reordered.',
    );
    return ok ? 0 : 1;
  } finally {
    await outbox.close();
    await receiver.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
