import { readDriverError, type DatabaseErrorCause, type DatabaseFailure } from './driver-error.js';

export type { DatabaseErrorCause, DatabaseFailure } from './driver-error.js';

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

/**
 * A session PostgreSQL cannot store (not a JSON object, a string holding `\u0000` or a lone
 * surrogate, a subject longer than 1,024 bytes, a character the database's encoding lacks),
 * refused before its write joined a batch; nothing was written.
 */
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
		const facts = readDriverError(error);
		const codes = [facts.failure, facts.prismaCode, facts.sqlState && `SQLSTATE ${facts.sqlState}`, facts.driverErrorKind !== 'postgres' && facts.driverErrorKind].filter(Boolean).join(', ');
		super(
			`The session store's ${operation} failed in the database${codes ? ` (${codes})` : ''}${facts.reason ? `: ${facts.reason}` : ''}`,
			'ERR_PGSTORE_DATABASE',
			{ cause: facts.cause },
		);
		this.operation = operation;
		this.sqlState = facts.sqlState;
		this.prismaCode = facts.prismaCode;
		this.driverErrorKind = facts.driverErrorKind;
		this.failure = facts.failure;
	}
}

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
