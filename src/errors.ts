/** Stable codes of the errors koa-pgstore throws; compare these, not messages. */
export type PgStoreErrorCode =
	| 'ERR_PGSTORE_SESSION_TOO_LARGE'
	| 'ERR_PGSTORE_INVALID_SESSION'
	| 'ERR_PGSTORE_DATABASE'
	| 'ERR_PGSTORE_CLOSED'
	| 'ERR_PGSTORE_SESSION_ENDED';

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
	| 'ensureSchema';

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

	constructor(operation: StoreOperation, cause: unknown) {
		const code = stringProperty(cause, 'code');
		const prismaCode = code !== undefined && prismaCodePattern.test(code) ? code : undefined;
		const adapterCause = driverAdapterCause(cause);
		const sqlState = [stringProperty(adapterCause, 'originalCode'), stringProperty(adapterCause, 'code'), prismaCode ? undefined : code]
			.find((candidate) => candidate !== undefined && sqlStatePattern.test(candidate));
		const driverErrorKind = stringProperty(adapterCause, 'kind');
		const codes = [prismaCode, sqlState && `SQLSTATE ${sqlState}`, driverErrorKind !== 'postgres' && driverErrorKind].filter(Boolean).join(', ');
		super(
			`The session store's ${operation} failed in the database${codes ? ` (${codes})` : ''}`,
			'ERR_PGSTORE_DATABASE',
			{ cause },
		);
		this.operation = operation;
		this.sqlState = sqlState;
		this.prismaCode = prismaCode;
		this.driverErrorKind = driverErrorKind;
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

/** Where a problem reported to `onError` happened. */
export interface ErrorContext {
	/**
	 * `'cleanup'`: a scheduled sweep failed (the next one tries again); `'pool'`: an idle
	 * connection of the store's own client failed.
	 */
	readonly source: 'cleanup' | 'pool';
}

/** Receives the errors no request waits for (the store's `onError` option). */
export type ErrorHandler = (error: Error, context: ErrorContext) => void;
