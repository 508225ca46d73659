/** Stable codes of the errors koa-pgstore throws; compare these, not messages. */
export type PgStoreErrorCode =
	| 'ERR_PGSTORE_SESSION_TOO_LARGE'
	| 'ERR_PGSTORE_INVALID_SESSION'
	| 'ERR_PGSTORE_DATABASE'
	| 'ERR_PGSTORE_CLOSED'
	| 'ERR_PGSTORE_SESSION_ENDED'
	| 'ERR_PGSTORE_SCHEMA'
	| 'ERR_PGSTORE_TAMPERED';

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

/** A session larger than the store's `maxLength`; nothing was written, the stored session is as it was. */
export class SessionTooLargeError extends PgStoreError {
	override name = 'SessionTooLargeError';
	/**
	 * The session's size in bytes of UTF-8: of its text in PostgreSQL (after merging, for a save
	 * of changed fields), or of its JSON when it was rejected before it was sent (never more).
	 */
	readonly size: number;
	/** The `maxLength` option in force. */
	readonly maxLength: number;

	constructor(size: number, maxLength: number) {
		super(
			`The session is ${size} bytes, more than the store's \`maxLength\` of ${maxLength}; it was not saved`,
			'ERR_PGSTORE_SESSION_TOO_LARGE',
		);
		this.size = size;
		this.maxLength = maxLength;
	}
}

/** A session PostgreSQL cannot store (not a JSON object, or a string holding `\u0000` or a lone surrogate); nothing was written. */
export class InvalidSessionError extends PgStoreError {
	override name = 'InvalidSessionError';

	constructor(message: string, options?: ErrorOptions) {
		super(message, 'ERR_PGSTORE_INVALID_SESSION', options);
	}
}

/** The store's operations, as named in {@link DatabaseError.operation}: the method that failed. */
export type StoreOperation =
	| 'get'
	| 'set'
	| 'destroy'
	| 'list'
	| 'destroyAll'
	| 'destroySession'
	| 'cleanup'
	| 'ensureSchema'
	| 'status';

/**
 * What {@link DatabaseError.cause} keeps of the driver's error: the codes and names that say what
 * failed, never the row data. PostgreSQL's `detail` (`Failing row contains (…)`), `where`
 * (`JSON data, line 1: …`, bind parameters), `hint` and the nested errors of Prisma and the
 * driver adapter are left out, as they quote session data and key digests into every log that
 * prints errors in full.
 */
export interface DatabaseErrorCause extends Error {
	/** The original error's class name (`'PrismaClientKnownRequestError'`, `'DatabaseError'` of node-postgres, …). */
	readonly name: string;
	/**
	 * PostgreSQL's primary message when the server answered (`new row for relation "…" violates
	 * check constraint "…"`), else the original error's message (`Can't reach database server at …`).
	 */
	readonly message: string;
	/** The original error's `code`: Prisma's (`'P2010'`) or, from node-postgres, the SQLSTATE. */
	readonly code: string | undefined;
	/** PostgreSQL's SQLSTATE, when the server answered with one. */
	readonly sqlState: string | undefined;
	/** The violated constraint or index, when the driver named it. */
	readonly constraint: string | undefined;
	/** The table, when the driver named it. */
	readonly table: string | undefined;
	/** The column (or the fields of a constraint, comma-separated), when the driver named it. */
	readonly column: string | undefined;
}

/**
 * The database failed or could not be reached. Its `cause` is a {@link DatabaseErrorCause}: the
 * driver's error with the row data taken out. The codes are also copied here, so that handlers
 * need not know Prisma's error shapes.
 */
export class DatabaseError extends PgStoreError {
	override name = 'DatabaseError';
	declare readonly cause: DatabaseErrorCause;
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

	/** @param error The driver's or Prisma's error; only its codes, names and primary message are kept. */
	constructor(operation: StoreOperation, error: unknown) {
		const code = stringProperty(error, 'code');
		const prismaCode = code !== undefined && prismaCodePattern.test(code) ? code : undefined;
		const adapterCause = driverAdapterCause(error);
		// node-postgres' own `code` is a SQLSTATE only when the server answered (its error has a
		// `severity`); a socket's `EPIPE` has five letters too.
		const serverCode = prismaCode === undefined && stringProperty(error, 'severity') !== undefined ? code : undefined;
		const sqlState = [stringProperty(adapterCause, 'originalCode'), stringProperty(adapterCause, 'code'), serverCode]
			.find((candidate) => candidate !== undefined && sqlStatePattern.test(candidate));
		const driverErrorKind = stringProperty(adapterCause, 'kind');
		const failure = failureOf(error, sqlState, driverErrorKind);
		const codes = [failure, prismaCode, sqlState && `SQLSTATE ${sqlState}`, driverErrorKind !== 'postgres' && driverErrorKind].filter(Boolean).join(', ');
		const reason = databaseMessage(error, adapterCause);
		super(
			`The session store's ${operation} failed in the database${codes ? ` (${codes})` : ''}${reason ? `: ${reason}` : ''}`,
			'ERR_PGSTORE_DATABASE',
			{ cause: sanitizedCause(error, adapterCause, sqlState) },
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


/**
 * A request whose session was ended by something else while it ran (a logout in another tab,
 * `destroyAll` elsewhere, expiry) tried to start a new session from it, as `regenerate()` does:
 * that would sign the user in again. Answer 401 and let the user sign in anew. Nothing was
 * written.
 */
export class SessionEndedError extends PgStoreError {
	override name = 'SessionEndedError';

	constructor() {
		super(
			'The session ended while this request ran (signed out elsewhere, or expired); it was not recreated under a new key',
			'ERR_PGSTORE_SESSION_ENDED',
		);
	}
}

/**
 * What made {@link SessionTamperedError} refuse a row:
 *
 * - `'authentication'`: a field's ciphertext did not verify (changed, or moved from another row or
 *   field, or the row's key was changed);
 * - `'malformed'`: a field starts like a ciphertext but is not one;
 * - `'plain'`: a field is not encrypted (outside `encryptionMigration`'s window);
 * - `'mixed'`: plain fields in a row that also holds encrypted ones (always refused).
 */
export type TamperReason = 'authentication' | 'malformed' | 'plain' | 'mixed';

/**
 * With `encryptionKeys`: a stored session that this store did not write as it is. `get` gave
 * `undefined` instead (koa-session starts a fresh session, as for a cookie with a bad signature)
 * and the store's `onError` got this error (`source: 'get'`). It names the fields, never their
 * values, the key or its digest. The row is left as it is, until it expires.
 */
export class SessionTamperedError extends PgStoreError {
	override name = 'SessionTamperedError';
	readonly reason: TamperReason;
	/** The names of the fields found wrong (the first one, for `authentication` and `malformed`). */
	readonly fields: readonly string[];

	constructor(reason: TamperReason, fields: readonly string[]) {
		const what = {
			authentication: 'did not authenticate',
			malformed: 'is not a valid ciphertext',
			plain: 'is not encrypted',
			mixed: 'is not encrypted, in a row with encrypted fields',
		}[reason];
		super(
			`A stored session was refused: field ${fields.map((field) => JSON.stringify(field)).join(', ')} ${what}; a fresh session was started instead`,
			'ERR_PGSTORE_TAMPERED',
		);
		this.reason = reason;
		this.fields = fields;
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
	const found = property(value, name);
	return typeof found === 'string' ? found : undefined;
}

const sqlStatePattern = /^[0-9A-Z]{5}$/;
// Prisma's codes (P1000…P6999) never collide with SQLSTATEs of class P0 (PL/pgSQL).
const prismaCodePattern = /^P[1-9]\d{3}$/;

class SanitizedCause extends Error implements DatabaseErrorCause {
	override readonly name: string;
	readonly code: string | undefined;
	readonly sqlState: string | undefined;
	readonly constraint: string | undefined;
	readonly table: string | undefined;
	readonly column: string | undefined;

	constructor(fields: Omit<DatabaseErrorCause, 'stack' | 'cause'>) {
		super(fields.message);
		this.name = fields.name;
		this.code = fields.code;
		this.sqlState = fields.sqlState;
		this.constraint = fields.constraint;
		this.table = fields.table;
		this.column = fields.column;
		// The frames would point here, not at the failed query (the DatabaseError's own stack does).
		this.stack = `${fields.name}: ${fields.message}`;
	}
}

// Built from named fields, never by copying the original and deleting what is known to leak:
// a field a later Prisma or node-postgres adds stays out too.
function sanitizedCause(error: unknown, adapterCause: unknown, sqlState: string | undefined): DatabaseErrorCause {
	// node-postgres' error itself (`constraint`, `table`, `column`), or the adapter's mapping of it
	// (`constraint: { index } | { fields }`, `table`, `column`).
	const driverError = adapterCause ?? error;
	const constraint: unknown = property(driverError, 'constraint');
	const fields: unknown = property(constraint, 'fields');
	// node-postgres sets `name` to the protocol message's type (`'error'`); its class says more.
	const ownName = stringProperty(error, 'name');
	const name = ownName === 'error' && error instanceof Error ? error.constructor.name : ownName;
	return new SanitizedCause({
		name: name === undefined || name === '' ? 'Error' : name,
		// Prisma's message quotes `originalMessage` (PostgreSQL's primary message) and no more; when
		// the server did not answer it is Prisma's own text (host and port, database or user name).
		message: stringProperty(adapterCause, 'originalMessage') ?? stringProperty(error, 'message') ?? String(error),
		code: stringProperty(error, 'code'),
		sqlState,
		constraint: typeof constraint === 'string' ? constraint : stringProperty(constraint, 'index'),
		table: stringProperty(driverError, 'table'),
		column: stringProperty(driverError, 'column')
			?? (Array.isArray(fields) && fields.every((field) => typeof field === 'string') ? fields.join(', ') : undefined),
	});
}

function property(value: unknown, name: string): unknown {
	return typeof value === 'object' && value !== null ? Reflect.get(value, name) : undefined;
}

// Prisma puts the driver's error under meta.driverAdapterError.cause (originalCode = SQLSTATE).
function driverAdapterCause(error: unknown): unknown {
	return property(property(property(error, 'meta'), 'driverAdapterError'), 'cause');
}

/** Where a problem reported to `onError` happened. */
export interface ErrorContext {
	/**
	 * `'cleanup'`: a scheduled sweep failed (the next one tries again); `'pool'`: an idle
	 * connection of the store's own client failed; `'get'`: a read refused a tampered session
	 * (`SessionTamperedError`, with `encryptionKeys`) and gave a fresh one.
	 */
	readonly source: 'cleanup' | 'pool' | 'get';
}

/** Receives the errors no request waits for (the store's `onError` option). */
export type ErrorHandler = (error: Error, context: ErrorContext) => void;

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
