/** A transaction on a mysql2 pool connection of its own, for the MySQL/MariaDB store tests. */
import type mysql from 'mysql2/promise';

/** Runs `fn` in a transaction on its own connection: COMMIT when it returns, ROLLBACK when it throws. */
export async function inMysqlTransaction<T>(
  pool: mysql.Pool,
  fn: (conn: mysql.PoolConnection) => Promise<T>,
): Promise<T> {
  const conn = await pool.getConnection();
  try {
    await conn.beginTransaction();
    const result = await fn(conn);
    await conn.commit();
    return result;
  } catch (error) {
    await conn.rollback();
    throw error;
  } finally {
    conn.release();
  }
}
