/**
 * createOutbox(): configuration errors, and add() on a statement-recording executor. No I/O: a
 * `sqlite:` database is opened lazily, and nothing here migrates, relays or touches a file.
 */
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fileConfigSchema, parseConfig } from '../../src/core/config.js';
import type { Dialect, SqlRow, TransactionState } from '../../src/core/ports.js';
import { createOutbox, type OutboxConfig, OutboxError } from '../../src/index.js';
import { memoryPublisher } from '../../src/testing/index.js';
import { expectOutboxError } from '../helpers/expect-error.js';

// A file in a directory that does not exist: opening it would fail, so these tests prove no I/O.
const DB = `sqlite:${join(tmpdir(), `outbox-unit-${process.pid}-absent`, 'app.db')}`;
const order = { type: 'order.created', aggregateType: 'order', aggregateId: 42, payload: { total: 10 } };

function recorder(options: { state?: TransactionState; dialect?: Dialect } = {}) {
  const statements: Array<{ sql: string; params: readonly unknown[] }> = [];
  return {
    statements,
    dialect: options.dialect ?? ('sqlite' as Dialect),
    sync: true as const,
    transactionState: (): TransactionState => options.state ?? 'active',
    query(sql: string, params: readonly unknown[]): SqlRow[] {
      statements.push({ sql, params });
      return [];
    },
  };
}

const make = (config: OutboxConfig = {}) =>
  createOutbox({ database: DB, publishers: { memory: memoryPublisher() }, ...config });

describe('createOutbox: configuration errors name the bad key', () => {
  it('refuses an unknown option (INVALID_CONFIG)', () => {
    expectOutboxError(
      () => createOutbox({ databse: DB } as OutboxConfig),
      'INVALID_CONFIG',
      'config.databse',
    );
    expectOutboxError(() => createOutbox(null as unknown as OutboxConfig), 'INVALID_CONFIG');
  });

  it('refuses a bad relay option (INVALID_CONFIG)', () => {
    expectOutboxError(() => make({ relay: { batchSize: 0 } }), 'INVALID_CONFIG', 'config.relay.batchSize');
    expectOutboxError(
      () => make({ relay: { maxAttempts: 1.5 } }),
      'INVALID_CONFIG',
      'config.relay.maxAttempts',
    );
    expectOutboxError(
      () => make({ relay: { backoff: { baseMs: -1 } } }),
      'INVALID_CONFIG',
      'config.relay.backoff.baseMs',
    );
    expectOutboxError(
      () => make({ relay: { batchsize: 10 } as never }),
      'INVALID_CONFIG',
      'config.relay',
      'batchsize',
    );
    // Options given to relay() itself are checked too.
    expectOutboxError(() => make().relay({ pollIntervalMs: 0 }), 'INVALID_CONFIG', 'pollIntervalMs');
  });

  it('refuses a database URL it cannot use (UNSUPPORTED_URL)', () => {
    for (const url of [
      'mongodb://localhost/app',
      'app.db',
      'https://example.com',
      'sqlite::memory:',
      'sqlite:',
      'sqlite://',
    ]) {
      expectOutboxError(() => createOutbox({ database: url }), 'UNSUPPORTED_URL', url);
    }
  });

  it('refuses bad database options (INVALID_CONFIG)', () => {
    expectOutboxError(() => make({ database: { url: DB, schema: 'app' } }), 'INVALID_CONFIG', 'SQLite');
    expectOutboxError(
      () => make({ database: { url: DB, tabel: 'x' } as never }),
      'INVALID_CONFIG',
      'config.database',
      'tabel',
    );
    expectOutboxError(
      () => make({ database: { url: DB, table: 'bad-name' } }),
      'INVALID_IDENTIFIER',
      'bad-name',
    );
  });

  it('refuses a broker URL it cannot use (UNSUPPORTED_URL), and a publisher entry without url', () => {
    expectOutboxError(
      () => createOutbox({ database: DB, publishers: { k: 'pulsar://localhost:6650' } }),
      'UNSUPPORTED_URL',
      'pulsar://',
    );
    expectOutboxError(
      () => createOutbox({ database: DB, publishers: { k: { secret: 'x' } as never } }),
      'INVALID_CONFIG',
      'config.publishers.k',
    );
  });

  it('refuses bad routes (INVALID_CONFIG)', () => {
    expectOutboxError(
      () => make({ routes: [{ destnation: 'x' } as never] }),
      'INVALID_CONFIG',
      'config.routes[0]',
      'destnation',
    );
    expectOutboxError(
      () => make({ routes: [{}, { destination: '{nope}' }] }),
      'INVALID_CONFIG',
      'routes[1]',
      '{nope}',
    );
    expectOutboxError(
      () => make({ routes: [{ publisher: 'kafka' }] }),
      'INVALID_CONFIG',
      '"kafka"',
      'memory',
    );
  });

  it('refuses a maxPayloadBytes that is not a positive integer (INVALID_CONFIG)', () => {
    for (const maxPayloadBytes of [0, -1, 1.5]) {
      expectOutboxError(() => make({ maxPayloadBytes }), 'INVALID_CONFIG', 'maxPayloadBytes');
    }
  });

  it('opens nothing until it is used', async () => {
    const outbox = make();
    expect(outbox.store.dialect).toBe('sqlite');
    await outbox.close();
    expect(existsSync(DB.slice('sqlite:'.length))).toBe(false);
  });
});

describe('add() on a synchronous executor', () => {
  it('returns the id synchronously after exactly one statement', () => {
    const exec = recorder();
    const id = make().add(exec, order);
    expect(typeof id).toBe('string');
    expect(exec.statements).toHaveLength(1);
    expect(JSON.stringify(exec.statements[0]!.params)).toContain(id);
  });

  it('adds a batch in one statement, returning the ids in order; an empty batch sends nothing', () => {
    const exec = recorder();
    const outbox = make();
    const ids = outbox.add(exec, [order, { ...order, aggregateId: 43 }, { ...order, aggregateId: 44 }]);
    expect(ids).toHaveLength(3);
    expect(exec.statements).toHaveLength(1);
    const params = JSON.stringify(exec.statements[0]!.params);
    const positions = ids.map((id) => params.indexOf(id));
    expect(positions.every((p) => p >= 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(outbox.add(exec, [])).toEqual([]);
    expect(exec.statements).toHaveLength(1);
  });

  it('refuses, before any SQL, a handle outside a transaction, an aborted one, or another dialect', async () => {
    const outbox = make();
    const none = recorder({ state: 'none' });
    expectOutboxError(() => outbox.add(none, order), 'NOT_IN_TRANSACTION');
    const aborted = recorder({ state: 'aborted' });
    expectOutboxError(() => outbox.add(aborted, order), 'TRANSACTION_ABORTED');
    const postgres = recorder({ dialect: 'postgres' });
    expectOutboxError(() => outbox.add(postgres, order), 'DIALECT_MISMATCH', 'postgres', 'sqlite');
    expect([...none.statements, ...aborted.statements, ...postgres.statements]).toEqual([]);
    // Not an executor at all (e.g. a raw database handle): refused synchronously.
    expectOutboxError(() => outbox.add({} as never, order), 'INVALID_EXECUTOR');
  });

  it('sends nothing when any event of a batch is invalid', () => {
    const exec = recorder();
    expectOutboxError(
      () => make().add(exec, [order, { ...order, payload: { n: Number.NaN } }]),
      'PAYLOAD_NOT_FINITE',
      'events[1].payload.n',
    );
    expect(exec.statements).toEqual([]);
  });

  it('on an asynchronous executor, returns a promise; refusals reach the awaiting caller', async () => {
    const outbox = make({ database: 'postgres://127.0.0.1:1/never-connected' });
    const statements: unknown[] = [];
    const exec = {
      ...recorder({ dialect: 'postgres' }),
      sync: false as const,
      query: async (sql: string) => {
        statements.push(sql);
        return [];
      },
    };
    const result = outbox.add(exec, order);
    expect(result).toBeInstanceOf(Promise);
    expect(typeof (await result)).toBe('string');
    expect(statements).toHaveLength(1);
    const wrongDialect = { ...exec, dialect: 'sqlite' as const };
    await expect((async () => outbox.add(wrongDialect, order))()).rejects.toBeInstanceOf(OutboxError);
    await expect((async () => outbox.add(wrongDialect, order))()).rejects.toMatchObject({
      code: 'DIALECT_MISMATCH',
    });
    expect(statements).toHaveLength(1);
    await outbox.close();
  });
});

describe("the README's outbox.config.json", () => {
  const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
  const block = /^```json\n([\s\S]*?)^```$/m.exec(readme)?.[1];

  it('is valid, and routes as the README says', async () => {
    expect(block, 'README.md has a ```json configuration block').toBeDefined();
    const config = parseConfig(fileConfigSchema, JSON.parse(block!), 'README.md');
    const outbox = createOutbox(config); // PostgreSQL, NATS and HTTP all connect lazily: no I/O here
    const sent: string[] = [];
    const exec = {
      dialect: 'postgres' as const,
      sync: false as const,
      transactionState: (): TransactionState => 'active',
      async query(_sql: string, params: readonly unknown[]): Promise<SqlRow[]> {
        sent.push(JSON.stringify(params));
        return [];
      },
    };
    const ids = await outbox.add(exec, [
      { type: 'payment.captured', aggregateType: 'payment', aggregateId: 'p1' },
      { type: 'order.created', aggregateType: 'order', aggregateId: 'o1' },
      { type: 'user.created', aggregateType: 'user', aggregateId: 'u1' },
      { type: 'user.audited', aggregateType: 'user', aggregateId: 'u1', destination: 'audit.users' },
    ]);
    expect(ids).toHaveLength(4);
    expect(sent).toHaveLength(1);
    for (const d of [
      'payment/payment.captured',
      'shop.order.order.created',
      'events.user.user.created',
      'audit.users',
    ]) {
      expect(sent[0]).toContain(`"${d}"`);
    }
    await expect(
      outbox.add(exec, {
        type: 'user.x',
        aggregateType: 'user',
        aggregateId: 'u1',
        destination: 'billing.x',
      }),
    ).rejects.toMatchObject({ code: 'DESTINATION_NOT_ALLOWED' });
    await outbox.close();
  });
});

describe('add() guards the handle before anything else', () => {
  it('throws INVALID_EXECUTOR synchronously for a raw driver object, even one without `sync`', () => {
    const outbox = createOutbox({ database: DB });
    const rawDatabase = { prepare: () => undefined, inTransaction: true };
    expectOutboxError(
      () => outbox.add(rawDatabase as never, order as never),
      'INVALID_EXECUTOR',
      'fromBetterSqlite3',
    );
    expectOutboxError(() => outbox.add({ query: () => [] } as never, order as never), 'INVALID_EXECUTOR');
  });

  it('checks what toJSON() returns, not the object that has it', () => {
    const outbox = createOutbox({ database: DB, strictPayload: false });
    const exec = recorder();
    class Money {
      toJSON() {
        return { amount: Number.NaN };
      }
    }
    expectOutboxError(
      () => outbox.add(exec, { ...order, payload: { price: new Money() } }),
      'PAYLOAD_NOT_FINITE',
      'price',
    );
    expect(exec.statements).toHaveLength(0);
  });

  it('refuses a route template with an unbalanced brace', () => {
    expectOutboxError(
      () => createOutbox({ database: DB, routes: [{ destination: 'events.{type' }] }),
      'INVALID_CONFIG',
      'unbalanced',
    );
  });
});

describe('publishers and relays are checked when the outbox is created', () => {
  it('a misspelt publisher option is INVALID_CONFIG, not an unsigned webhook', () => {
    expectOutboxError(
      () =>
        createOutbox({
          database: DB,
          publishers: { hook: { url: 'https://h.example/in', secrett: 'whsec_x' } },
        }),
      'INVALID_CONFIG',
      'config.publishers.hook',
    );
    expectOutboxError(
      () =>
        createOutbox({ database: DB, publishers: { bus: { url: 'nats://127.0.0.1:4222', secret: 'x' } } }),
      'INVALID_CONFIG',
      'config.publishers.bus',
    );
  });

  it('a relay with no publisher to deliver to is INVALID_CONFIG', () => {
    expectOutboxError(() => createOutbox({ database: DB }).relay(), 'INVALID_CONFIG', 'publishers');
  });
});
