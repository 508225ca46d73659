/** Stable codes of the errors koa-pgstore throws; compare these, not messages. */
export type PgStoreErrorCode =
	| 'ERR_PGSTORE_SESSION_TOO_LARGE'
	| 'ERR_PGSTORE_INVALID_SESSION'
	| 'ERR_PGSTORE_DATABASE'
	| 'ERR_PGSTORE_CLOSED'
	| 'ERR_PGSTORE_SCHEMA';

/**
 * Base class of every error koa-pgstore throws, apart from the `TypeError`s of bad arguments.
 *
 * @example
 * ```ts
 * app.on('error', (error) => {
 * 	if (isPgStoreError(error) && error.code === 'ERR_PGSTORE_DATABASE') alertOnCall(error);
 * });
 * ```
 */
export class PgStoreError extends Error {
	override name = 'PgStoreError';
	readonly code: PgStoreErrorCode;

	constructor(message: string, code: PgStoreErrorCode, options?: ErrorOptions) {
		super(message, options);
		this.code = code;
	}
}

/** A session whose JSON is longer than the store's `maxLength`; nothing was written. */
export class SessionTooLargeError extends PgStoreError {
	override name = 'SessionTooLargeError';
	/** The session's size: bytes of its JSON in UTF-8. */
	readonly size: number;
	/** The `maxLength` option in force. */
	readonly maxLength: number;

	constructor(size: number, maxLength: number) {
		super(
			`The session is ${size} bytes of JSON, more than the store's \`maxLength\` of ${maxLength}; it was not saved`,
			'ERR_PGSTORE_SESSION_TOO_LARGE',
		);
		this.size = size;
		this.maxLength = maxLength;
	}
}

/** A session PostgreSQL cannot store (not a JSON object, or a string holding `\u0000`); nothing was written. */
export class InvalidSessionError extends PgStoreError {
	override name = 'InvalidSessionError';

	constructor(message: string, options?: ErrorOptions) {
		super(message, 'ERR_PGSTORE_INVALID_SESSION', options);
	}
}

/** The store's operations, as named in {@link DatabaseError.operation}. */
export type StoreOperation = 'get' | 'set' | 'destroy' | 'cleanup' | 'ensureSchema';

/**
 * The database failed or could not be reached. The driver's error is the `cause`; its codes are
 * copied here so that handlers need not know Prisma's error shapes.
 */
export class DatabaseError extends PgStoreError {
	override name = 'DatabaseError';
	/** What the store was doing. */
	readonly operation: StoreOperation;
	/** PostgreSQL's SQLSTATE (`'57P01'`, `'42501'`, …), when the server answered with one. */
	readonly sqlState: string | undefined;
	/** Prisma's error code (`'P2010'` raw query failed, `'P1001'` database not reachable, …), when Prisma gave one. */
	readonly prismaCode: string | undefined;
	/**
	 * What the driver adapter made of the failure (`'DatabaseNotReachable'`,
	 * `'UniqueConstraintViolation'`, `'postgres'` for other server errors, …), when it said.
	 */
	readonly driverErrorKind: string | undefined;
	/**
	 * Which limit was hit or what broke, when the database did not answer:
	 *
	 * - `'connect-timeout'`: no connection could be opened within `pool.connectionTimeoutMillis`;
	 * - `'pool-exhausted'`: every pooled connection stayed busy for `pool.connectionTimeoutMillis`;
	 * - `'query-timeout'`: a statement got no answer within `pool.query_timeout` (its connection
	 *   was closed);
	 * - `'connection-lost'`: the connection broke, was refused or was closed by the server
	 *   (SQLSTATE class 08, 57P01–57P03).
	 *
	 * `undefined` when PostgreSQL answered with an error (see `sqlState`). The limits are those
	 * of the store's own client (`connectionString`); with `prisma`, only `'connection-lost'` is
	 * told apart.
	 */
	readonly failure: DatabaseFailure | undefined;

	constructor(operation: StoreOperation, cause: unknown) {
		const code = stringProperty(cause, 'code');
		const prismaCode = code !== undefined && prismaCodePattern.test(code) ? code : undefined;
		const adapterCause = driverAdapterCause(cause);
		const sqlState = [stringProperty(adapterCause, 'originalCode'), stringProperty(adapterCause, 'code'), prismaCode ? undefined : code]
			.find((candidate) => candidate !== undefined && sqlStatePattern.test(candidate));
		const driverErrorKind = stringProperty(adapterCause, 'kind');
		const failure = failureOf(cause, sqlState, driverErrorKind);
		const codes = [failure, prismaCode, sqlState && `SQLSTATE ${sqlState}`, driverErrorKind !== 'postgres' && driverErrorKind].filter(Boolean).join(', ');
		const reason = databaseMessage(cause, adapterCause);
		super(
			`The session store's ${operation} failed in the database${codes ? ` (${codes})` : ''}${reason ? `: ${reason}` : ''}`,
			'ERR_PGSTORE_DATABASE',
			{ cause },
		);
		this.operation = operation;
		this.sqlState = sqlState;
		this.prismaCode = prismaCode;
		this.driverErrorKind = driverErrorKind;
		this.failure = failure;
	}
}

/** What {@link DatabaseError.failure} says. */
export type DatabaseFailure = 'connect-timeout' | 'pool-exhausted' | 'query-timeout' | 'connection-lost';

/**
 * The session table lacks what the store needs (a table, a column, `jsonb`, the unique index on
 * `key`): `ensureSchema()` found it in the catalog before any request. Its message names what is
 * missing and how to add it.
 */
export class SchemaMismatchError extends PgStoreError {
	override name = 'SchemaMismatchError';
	/** The table, as `schema.table`. */
	readonly table: string;
	/** What is missing or wrong, one entry each (`column "subject"`, `unique index on "key"`, …). */
	readonly missing: readonly string[];

	constructor(message: string, table: string, missing: readonly string[], options?: ErrorOptions) {
		super(message, 'ERR_PGSTORE_SCHEMA', options);
		this.table = table;
		this.missing = missing;
	}
}

/** The store was used after `close()`. */
export class StoreClosedError extends PgStoreError {
	override name = 'StoreClosedError';

	constructor() {
		super('The session store is closed', 'ERR_PGSTORE_CLOSED');
	}
}

/** Whether `error` is one of koa-pgstore's errors. */
export function isPgStoreError(error: unknown): error is PgStoreError {
	return error instanceof PgStoreError;
}

function stringProperty(value: unknown, name: string): string | undefined {
	if (typeof value !== 'object' || value === null) {
		return undefined;
	}
	const property: unknown = Reflect.get(value, name);
	return typeof property === 'string' ? property : undefined;
}

const sqlStatePattern = /^[0-9A-Z]{5}$/;
// Prisma's codes (P1000…P6999) never collide with SQLSTATEs of class P0 (PL/pgSQL).
const prismaCodePattern = /^P[1-9]\d{3}$/;

// Prisma puts the driver's error under meta.driverAdapterError.cause (originalCode = SQLSTATE).
function driverAdapterCause(error: unknown): unknown {
	const meta: unknown = typeof error === 'object' && error !== null ? Reflect.get(error, 'meta') : undefined;
	const adapterError: unknown = typeof meta === 'object' && meta !== null ? Reflect.get(meta, 'driverAdapterError') : undefined;
	return typeof adapterError === 'object' && adapterError !== null ? Reflect.get(adapterError, 'cause') : undefined;
}

const databaseFailures: ReadonlySet<string> = new Set<DatabaseFailure>(['connect-timeout', 'pool-exhausted', 'query-timeout', 'connection-lost']);
// The adapter's kinds for a connection that closed or was never made.
const connectionKinds: ReadonlySet<string> = new Set(['ConnectionClosed', 'DatabaseNotReachable', 'SocketTimeout', 'TlsConnectionError']);

// The store's own pool raises errors with a `failure` (Prisma passes them through unchanged);
// otherwise a connection failure shows in SQLSTATE (class 08, server shutting down) or in the
// adapter's kind of error.
function failureOf(cause: unknown, sqlState: string | undefined, driverErrorKind: string | undefined): DatabaseFailure | undefined {
	for (let error = cause, depth = 0; typeof error === 'object' && error !== null && depth < 5; error = Reflect.get(error, 'cause'), depth++) {
		const failure = stringProperty(error, 'failure');
		if (failure !== undefined && databaseFailures.has(failure)) {
			return failure as DatabaseFailure;
		}
	}
	if (sqlState !== undefined && (sqlState.startsWith('08') || ['57P01', '57P02', '57P03'].includes(sqlState))) {
		return 'connection-lost';
	}
	return driverErrorKind !== undefined && connectionKinds.has(driverErrorKind) ? 'connection-lost' : undefined;
}

// PostgreSQL's own words (or the pool's), without Prisma's "Invalid `prisma.$queryRawUnsafe()`
// invocation" preamble.
function databaseMessage(cause: unknown, adapterCause: unknown): string | undefined {
	const fromServer = stringProperty(adapterCause, 'originalMessage') ?? stringProperty(adapterCause, 'message');
	if (fromServer !== undefined) {
		return fromServer;
	}
	const message = cause instanceof Error ? cause.message.trim() : undefined;
	if (message === undefined || message === '') {
		return undefined;
	}
	// Prisma's messages end with the database's reason after a blank line.
	return message.split(/\n\s*\n/).at(-1)?.trim();
}
