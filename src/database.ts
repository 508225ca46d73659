import { DatabaseError, type StoreOperation } from './errors.js';
import type { RawSqlClient } from './prisma-client.js';
import type { Statement } from './sql.js';

/** Runs a statement that returns rows; a failure rejects with a `DatabaseError` naming `operation`. */
export async function queryRows(client: RawSqlClient, statement: Statement, operation: StoreOperation): Promise<unknown[]> {
	let rows: unknown;
	try {
		rows = await client.$queryRawUnsafe(statement.text, ...statement.values);
	} catch (error) {
		throw new DatabaseError(operation, error);
	}
	return Array.isArray(rows) ? rows : [];
}
