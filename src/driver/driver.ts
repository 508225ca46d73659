import type { StoreOperation } from '../base/errors.js';
import type { Statement } from '../sql/text.js';

/**
 * The bound each statement of a transaction runs under, named by the caller (a statement alone,
 * as of `get`, `set` or the catalog reads of `ensureSchema()`, has `pool.query_timeout`):
 *
 * - `'sweep'`: a statement of a cleanup batch, ten times `pool.query_timeout`: a batch may wait
 *   on rows a request holds;
 * - `'migration'`: a statement of `ensureSchema()`'s migration: two minutes, as it may wait for
 *   another instance's migration (an index build on a large table).
 *
 * With the app's own client these bounds are the app's (its adapter's settings); only the whole
 * transaction's limit is passed to Prisma.
 */
export type Bound = 'sweep' | 'migration';

/** The statements of one transaction: rows, or nothing for statements run for their effect. */
export interface TransactionQueries {
	query(statement: Statement): Promise<unknown[]>;
	/** SQL without parameters, possibly several statements (a migration file). */
	execute(sql: string): Promise<void>;
}

/** Runs one statement alone, under the request bound; a failure rejects with a `DatabaseError` naming `operation`. */
export type StatementRunner = (statement: Statement, operation: StoreOperation) => Promise<unknown[]>;

/**
 * How the store reaches PostgreSQL: the pool of its own client, or the app's Prisma client. Every
 * failure rejects with a `DatabaseError` naming `operation`.
 */
export interface Driver {
	/** One statement, alone, under the request bound. */
	readonly query: StatementRunner;
	/** `work` in one transaction, each of its statements under `bound`; rolled back if `work` throws. */
	transaction<T>(operation: StoreOperation, bound: Bound, work: (queries: TransactionQueries) => Promise<T>): Promise<T>;
}

/** Each statement of a migration may wait this long: for another instance's migration, say. */
export const migrationStatementTimeout = 120_000;
