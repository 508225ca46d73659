import { createHash } from 'node:crypto';
import type pg from 'pg';
import { ConnectionFailure, isServerError } from './bounded-pool.js';
import { debug } from './debug.js';
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
 * With `prepare`, statements go as named statements: PostgreSQL parses each once per connection
 * and, after five runs, may keep one generic plan for it (planning the field-level update costs
 * more than running it on a small table: prepared, its PostgreSQL CPU halves; README, "Deploying"). A pooler that does not keep named statements with
 * their client (PgBouncer in transaction mode before 1.21, or with `max_prepared_statements = 0`)
 * refuses one sooner or later, before running it: `26000` (not prepared on the server connection
 * it got) or `42P05` (prepared there already, by another client). Then the refused statement runs
 * again unnamed and this pool prepares nothing more: the pooler costs the first refusal, never a
 * failed request. Names carry a digest of their text, so one name never stands for two texts on
 * a server connection that processes with other tables share.
 */
export function throughPool(pool: pg.Pool, prepare: boolean): StatementRunner {
	let preparing = prepare;
	const send = (statement: Statement, named: boolean) => pool.query({
		text: statement.text,
		values: statement.values as unknown[],
		types: ownTypes,
		...(named ? { name: preparedName(statement) } : {}),
	});
	return async (statement, operation) => {
		const named = preparing;
		try {
			return (await send(statement, named)).rows;
		} catch (error) {
			if (named && refusedByPooler(error)) {
				if (preparing) {
					preparing = false;
					debug('named statement refused (SQLSTATE %s): a pooler in transaction mode; statements go unnamed from now on', Reflect.get(error as object, 'code'));
				}
				try {
					return (await send(statement, false)).rows;
				} catch (retryError) {
					throw new DatabaseError(operation, unanswered(retryError));
				}
			}
			throw new DatabaseError(operation, unanswered(error));
		}
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

// What node-postgres raises without an answer from the server (a socket or TLS error, "Connection
// terminated unexpectedly" while a statement was running) is a lost connection; its code stays
// (ECONNREFUSED, …). The pool's own failures already say which bound was hit.
function unanswered(error: unknown): unknown {
	if (!(error instanceof Error) || isServerError(error) || error instanceof ConnectionFailure) {
		return error;
	}
	const code: unknown = Reflect.get(error, 'code');
	return new ConnectionFailure('connection-lost', error.message, { cause: error }, typeof code === 'string' ? code : undefined);
}

// node-postgres' error for a named statement a pooler's server connection did not have, or had.
function refusedByPooler(error: unknown): boolean {
	const code: unknown = typeof error === 'object' && error !== null ? Reflect.get(error, 'code') : undefined;
	return code === '26000' || code === '42P05';
}

const nameDigests = new Map<string, string>();

/** The name a statement is prepared under: its own name and a digest of its text. */
export function preparedName(statement: Pick<Statement, 'name' | 'text'>): string {
	let name = nameDigests.get(statement.text);
	if (name === undefined) {
		name = `koa_pgstore_${statement.name}_${createHash('sha256').update(statement.text).digest('hex').slice(0, 12)}`;
		nameDigests.set(statement.text, name);
	}
	return name;
}
