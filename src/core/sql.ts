/** Helpers for the SQL text outbox sends, shared by stores and executors. */
import { createHash } from 'node:crypto';

const names = new Map<string, string>();

/**
 * A stable prepared-statement name for a SQL text: PostgreSQL drivers prepare a named statement
 * once per connection and then only bind and execute it. The set of texts is small and fixed
 * (one per statement kind, store and table), so the cache stays small.
 */
export function statementName(sql: string): string {
  let name = names.get(sql);
  if (!name) {
    name = `outbox_${createHash('sha1').update(sql).digest('hex').slice(0, 24)}`;
    names.set(sql, name);
  }
  return name;
}
