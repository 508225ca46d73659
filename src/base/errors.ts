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
	| 'ERR_PGSTORE_TAMPERED'
	| 'ERR_PGSTORE_SESSION_UNREADABLE'
	| 'ERR_PGSTORE_CLEANUP_BLOCKED';

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
	 * of changed fields), or of its JSON when it was rejected before it was sent (never more); for
	 * a field far over the limit, what it was measured to be at least before it was refused.
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
		// A plain row is what every session stored before `encryptionKeys` was set looks like: the
		// log line of the first deploy with it must say how to keep those users signed in.
		const remedy = reason === 'plain'
			? '. Sessions stored before `encryptionKeys` was set? Give `encryptionMigration: { acceptPlainRowsUntil }` to read plain rows for a while (docs/encryption.md#turning-it-on)'
			: '';
		super(
			`A stored session was refused: field ${fields.map((field) => JSON.stringify(field)).join(', ')} ${what}; a fresh session was started instead${remedy}`,
			'ERR_PGSTORE_TAMPERED',
		);
		this.reason = reason;
		this.fields = fields;
	}
}

/**
 * What made {@link SessionUnreadableError} pass a row over:
 *
 * - `'encrypted'`: a field holds the stored encrypted form (`"pgse:v1:…"`) and this store has no
 *   secret to read it with (no `encryptionKeys` or `decryptionKeys`: a rolled-back deploy, say);
 * - `'out-of-range'`: koa-session's `_expire` or `_maxAge`, or the expiry column, holds a value no
 *   store or koa-session writes (`_maxAge` of 1e300, a date past what JavaScript's `Date` holds,
 *   `'infinity'`): someone else wrote it, and koa-session would fail on it.
 */
export type UnreadableReason = 'encrypted' | 'out-of-range';

/**
 * A stored session this store cannot hand to the app as it is. `get` gave `undefined` instead
 * (koa-session starts a fresh session under a new key, as for an unknown cookie) and the store's
 * `onError` got this error (`source: 'get'`). The row is left as it is, for a store that can
 * read it (`'encrypted'`) or until it expires. It names the fields, never their values, the key
 * or its digest.
 */
export class SessionUnreadableError extends PgStoreError {
	override name = 'SessionUnreadableError';
	readonly reason: UnreadableReason;
	/** The names of the fields found so (`expiresOn` for the expiry column). */
	readonly fields: readonly string[];

	constructor(reason: UnreadableReason, fields: readonly string[]) {
		const names = fields.map((field) => JSON.stringify(field)).join(', ');
		super(
			reason === 'encrypted'
				? `A stored session was not returned: field ${names} is encrypted and this store has no secret to read it; a fresh session was started instead and the row left as it is. `
					+ 'Give the secrets as `encryptionKeys`, or as `decryptionKeys` to turn encryption off (docs/encryption.md#turning-it-off)'
				: `A stored session was not returned: ${names} holds a value out of range that neither koa-session nor this store writes; a fresh session was started instead`,
			'ERR_PGSTORE_SESSION_UNREADABLE',
		);
		this.reason = reason;
		this.fields = fields;
	}
}

/**
 * Scheduled sweeps ended again and again with expired sessions left in the table: other
 * transactions held those rows (row locks, `FOR UPDATE`) through each sweep's `lockWait`. The
 * table keeps them, and grows, until whatever holds them lets go: look in `pg_stat_activity` for
 * long transactions on the session table (`idle in transaction`). Given to `onError` with
 * `source: 'cleanup'`; the schedule goes on.
 */
export class CleanupBlockedError extends PgStoreError {
	override name = 'CleanupBlockedError';
	/** Scheduled sweeps in a row that ended so. */
	readonly sweeps: number;

	constructor(sweeps: number) {
		super(
			`${sweeps} sweeps in a row left expired sessions in the table: other transactions held their rows past the sweep's lockWait. `
			+ 'Look in pg_stat_activity for long transactions on the session table (state \'idle in transaction\')',
			'ERR_PGSTORE_CLEANUP_BLOCKED',
		);
		this.sweeps = sweeps;
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
	 * `'cleanup'`: a scheduled sweep failed (the next one tries again), or sweeps left expired rows
	 * others held again and again (`CleanupBlockedError`); `'pool'`: an idle connection of the
	 * store's own client failed; `'get'`: a read passed a stored session over and gave a fresh one
	 * (`SessionTamperedError` with encryption, `SessionUnreadableError`); `'destroy'`: the delete
	 * of a key that `regenerate()` gave up failed (a `DatabaseError`) when no save of a new key
	 * followed it (see `PgStore.destroy`).
	 */
	readonly source: 'cleanup' | 'pool' | 'get' | 'destroy';
}

/** Receives the errors no request waits for (the store's `onError` option). */
export type ErrorHandler = (error: Error, context: ErrorContext) => void;
