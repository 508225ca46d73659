import { createHash } from 'node:crypto';
import type pg from 'pg';
import { debug } from '../base/debug.js';
import { sqlStateOf, sqlStates } from '../base/driver-error.js';
import { DatabaseError, PgStoreError } from '../base/errors.js';
import type { Statement } from '../sql/text.js';
import { boundedQuery, ConnectionFailure, isBroken, isServerError, type BoundedPool, type StatementBound } from './bounded-pool.js';
import { migrationStatementTimeout, type Bound, type Driver } from './driver.js';

/** A sweep's statements may take this many times a request's: they may wait on rows a request holds. */
const sweepStatementFactor = 10;

/**
 * Straight to the pool under the Prisma adapter of the store's own client, every statement under
 * the bound its caller names. The statements are SQL already and their few columns need only
 * node-postgres' own parsing, so Prisma's raw-query layer would add nothing but its cost (Node
 * CPU per statement: bench/prisma-calls.ts); and a process that only serves requests and sweeps
 * never loads Prisma's query engine.
 *
 * With `prepare`, a request's statements go as named statements: PostgreSQL parses each once per
 * connection and, after five runs, may keep one generic plan for it (the field-level update costs
 * more to plan than to run on a small table: docs/performance.md). A pooler that does not keep
 * named statements with their client (PgBouncer in transaction mode before 1.21, or with
 * `max_prepared_statements = 0`) refuses one sooner or later, before running it: `26000` (not
 * prepared on the server connection it got) or `42P05` (prepared there already, by another
 * client). Then the refused statement runs again unnamed and this pool prepares nothing more: the
 * pooler costs the first refusal, never a failed request. Names carry a digest of their text, so
 * one name never stands for two texts on a server connection that processes with other tables
 * share.
 */
export function ownedDriver(pool: BoundedPool, prepare: boolean): Driver {
	let preparing = prepare;
	const requestBound: StatementBound = { ms: pool.limits.statementTimeoutMillis, setting: 'pool.query_timeout' };
	const transactionBounds: Record<Bound, StatementBound> = {
		sweep: { ms: pool.limits.statementTimeoutMillis * sweepStatementFactor, setting: `a sweep's bound, ${sweepStatementFactor} times pool.query_timeout` },
		migration: { ms: migrationStatementTimeout, setting: 'the bound of a migration' },
	};

	// One statement on a pooled connection; the connection is dropped if it broke.
	const once = async (config: pg.QueryConfig, bound: StatementBound): Promise<unknown[]> => {
		const connection = await checkOut(pool);
		try {
			const { rows } = await boundedQuery(connection.client, config, bound);
			connection.release(undefined);
			return rows;
		} catch (error) {
			connection.release(isBroken(error) ? asError(error) : undefined);
			throw error;
		}
	};

	return {
		async query(statement, operation) {
			const named = preparing;
			try {
				return await once(queryConfig(statement, named), requestBound);
			} catch (error) {
				if (named && refusedByPooler(error)) {
					if (preparing) {
						preparing = false;
						debug('named statement refused (SQLSTATE %s): a pooler in transaction mode; statements go unnamed from now on', sqlStateOf(error));
					}
					try {
						return await once(queryConfig(statement, false), requestBound);
					} catch (retryError) {
						throw new DatabaseError(operation, unanswered(retryError));
					}
				}
				throw new DatabaseError(operation, unanswered(error));
			}
		},

		async transaction(operation, bound, work) {
			const statementBound = transactionBounds[bound];
			let connection: CheckedOut;
			try {
				connection = await checkOut(pool);
			} catch (error) {
				throw new DatabaseError(operation, unanswered(error));
			}
			let broken: Error | undefined;
			const run = async (config: pg.QueryConfig): Promise<unknown[]> => {
				try {
					return (await boundedQuery(connection.client, config, statementBound)).rows;
				} catch (error) {
					if (isBroken(error)) {
						broken = asError(error);
					}
					throw new DatabaseError(operation, unanswered(error));
				}
			};
			try {
				await run({ text: 'BEGIN' });
				const result = await work({
					query: (statement) => run(queryConfig(statement, false)),
					execute: async (sql) => {
						// No parameters: the simple protocol, which takes several statements.
						await run({ text: sql });
					},
				});
				await run({ text: 'COMMIT' });
				return result;
			} catch (error) {
				if (broken === undefined && connection.failure === undefined) {
					await run({ text: 'ROLLBACK' }).catch(() => {});
				}
				throw error instanceof PgStoreError ? error : new DatabaseError(operation, unanswered(error));
			} finally {
				connection.release(broken);
			}
		},
	};
}

/** A connection taken from the pool, until `release`. */
interface CheckedOut {
	readonly client: pg.PoolClient;
	/** An error the connection raised while no statement ran on it (it closed, say). */
	readonly failure: Error | undefined;
	/** Gives the connection back, or drops it: with an error, or when it failed meanwhile. */
	release(error: Error | undefined): void;
}

// While a connection is out of the pool, an error it raises between statements (the server
// closed it, or `boundedQuery` ended it) has no statement to fail: without a listener it would
// crash the process. pg-pool's own `query` listens the same way.
async function checkOut(pool: BoundedPool): Promise<CheckedOut> {
	const client = await pool.connect();
	let failure: Error | undefined;
	const onError = (error: Error) => {
		failure = error;
	};
	client.on('error', onError);
	return {
		client,
		get failure() {
			return failure;
		},
		release(error) {
			client.removeListener('error', onError);
			client.release(error ?? failure);
		},
	};
}

function queryConfig(statement: Statement, named: boolean): pg.QueryConfig {
	return {
		text: statement.text,
		values: statement.values as unknown[],
		types: ownTypes,
		...(named ? { name: preparedName(statement) } : {}),
	};
}

// The store's statements return text, booleans, integers and float8 (times as epoch ms) only, and
// read them with these parsers, never with the ones an app may install globally in node-postgres
// (`pg.types.setTypeParser`), which would change what the store reads.
const ownTypes = {
	getTypeParser: (oid: number): (value: string) => unknown => {
		switch (oid) {
			case 16: // bool
				return (value) => value === 't';
			case 21: // int2
			case 23: // int4
			case 701: // float8
				return Number;
			default:
				return (value) => value;
		}
	},
} as unknown as pg.CustomTypesConfig;

function asError(error: unknown): Error {
	return error instanceof Error ? error : new Error(String(error));
}

// What node-postgres raises without an answer from the server (a socket or TLS error, "Connection
// terminated unexpectedly" while a statement was running) is a lost connection; its code stays
// (ECONNREFUSED, …). The pool's own failures already say which bound was hit.
function unanswered(error: unknown): unknown {
	if (!(error instanceof Error) || isServerError(error) || error instanceof ConnectionFailure || error instanceof PgStoreError) {
		return error;
	}
	const code: unknown = Reflect.get(error, 'code');
	return new ConnectionFailure('connection-lost', error.message, { cause: error }, typeof code === 'string' ? code : undefined);
}

// node-postgres' error for a named statement a pooler's server connection did not have, or had.
function refusedByPooler(error: unknown): boolean {
	const sqlState = sqlStateOf(error);
	return sqlState === sqlStates.invalidStatementName || sqlState === sqlStates.duplicatePreparedStatement;
}

const nameDigests = new Map<string, string>();

/** The name a statement is prepared under: its own name and a digest of its text. */
function preparedName(statement: Pick<Statement, 'name' | 'text'>): string {
	let name = nameDigests.get(statement.text);
	if (name === undefined) {
		name = `koa_pgstore_${statement.name}_${createHash('sha256').update(statement.text).digest('hex').slice(0, 12)}`;
		nameDigests.set(statement.text, name);
	}
	return name;
}
