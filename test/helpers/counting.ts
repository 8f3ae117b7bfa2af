/** An executor wrapper that counts the statements sent: proof that bad input sends none. */
import type { Executor } from '../../src/core/ports.js';

export function countingExecutor(inner: Executor): Executor & { statements: number } {
  const wrapper = { ...inner, statements: 0 } as Executor & { statements: number };
  if (inner.sync) {
    (wrapper as { query: typeof inner.query }).query = (sql, params) => {
      wrapper.statements++;
      return inner.query(sql, params);
    };
  } else {
    (wrapper as { query: typeof inner.query }).query = (sql, params) => {
      wrapper.statements++;
      return inner.query(sql, params);
    };
  }
  return wrapper;
}
