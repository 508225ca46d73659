import { DatabaseError, PgStoreError } from '../base/errors.js';
import type { PgStorePrismaClient } from './prisma-client.js';
import { migrationStatementTimeout, type Bound, type Driver } from './driver.js';

// Prisma's limit on a whole interactive transaction, by bound. The app's adapter bounds each
// statement (its own settings); this bounds how long a transaction may hold its connection.
const transactionTimeout: Record<Bound, number> = { sweep: 60_000, migration: migrationStatementTimeout };
// How long Prisma may wait for a connection to start a transaction.
const maxWait = 10_000;

/**
 * Through an app's own Prisma client (`$queryRawUnsafe`, `$transaction`): the store knows nothing
 * of its driver, and the app's logging, tracing and extensions see every statement.
 */
export function prismaDriver(client: PgStorePrismaClient): Driver {
	return {
		async query(statement, operation) {
			let rows: unknown;
			try {
				rows = await client.$queryRawUnsafe(statement.text, ...statement.values);
			} catch (error) {
				throw new DatabaseError(operation, error);
			}
			return Array.isArray(rows) ? rows : [];
		},
		async transaction(operation, bound, work) {
			try {
				return await client.$transaction((transaction) => work({
					query: async (statement) => {
						const rows: unknown = await transaction.$queryRawUnsafe(statement.text, ...statement.values);
						return Array.isArray(rows) ? rows : [];
					},
					execute: async (sql) => {
						await transaction.$executeRawUnsafe(sql);
					},
				}), { maxWait, timeout: transactionTimeout[bound] });
			} catch (error) {
				throw error instanceof PgStoreError ? error : new DatabaseError(operation, error);
			}
		},
	};
}
