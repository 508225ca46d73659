import type pg from 'pg';
import { DatabaseError, type StoreOperation } from './errors.js';
import type { RawSqlClient } from './prisma-client.js';
import type { Statement } from './sql.js';

/**
 * Runs one of the store's statements of a request (`get`, `set`, `destroy`, the subject methods)
 * and gives its rows; a failure rejects with a `DatabaseError` naming `operation`.
 */
export type StatementRunner = (statement: Statement, operation: StoreOperation) => Promise<unknown[]>;

/**
 * Through an app's own Prisma client (`$queryRawUnsafe`): the store knows nothing of its driver.
 */
export function throughPrisma(client: RawSqlClient): StatementRunner {
	return async (statement, operation) => {
		let rows: unknown;
		try {
			rows = await client.$queryRawUnsafe(statement.text, ...statement.values);
		} catch (error) {
			throw new DatabaseError(operation, error);
		}
		return Array.isArray(rows) ? rows : [];
	};
}

/**
 * Straight to the pool under the Prisma adapter of the store's own client, with the same bounds
 * (see BoundedPool). The statements are SQL already and their few columns need only node-postgres'
 * own parsing, so Prisma's raw-query layer would add nothing but its cost: 160–250 µs of Node CPU
 * per statement over node-postgres alone, measured with the store's select and update of 10
 * sessions (`npx tsx bench/prisma-calls.ts`), which at 8 connections is about 100 µs a request.
 *
 * @param prepare Whether statements go as named (prepared) statements.
 */
export function throughPool(pool: pg.Pool, prepare: boolean): StatementRunner {
	return async (statement, operation) => {
		try {
			const result = await pool.query({
				text: statement.text,
				values: statement.values as unknown[],
				...(prepare ? { name: preparedName(statement) } : {}),
			});
			return result.rows;
		} catch (error) {
			throw new DatabaseError(operation, error);
		}
	};
}

/** The name a statement is prepared under, on the store's own connections. */
export function preparedName(statement: Pick<Statement, 'name'>): string {
	return `koa_pgstore_${statement.name}`;
}
