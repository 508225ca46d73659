// What the store reads of a driver's or Prisma's error: PostgreSQL's SQLSTATE, Prisma's code, the
// driver adapter's kind, which bound was hit, and a copy without row data. The one place that
// knows the shapes of node-postgres', @prisma/adapter-pg's and Prisma's errors.

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

/** What {@link DatabaseError.failure} says. */
export type DatabaseFailure = 'connect-timeout' | 'pool-exhausted' | 'query-timeout' | 'connection-lost';

/** The SQLSTATEs the store acts on, by name (PostgreSQL's Appendix A). */
export const sqlStates = {
	uniqueViolation: '23505',
	undefinedColumn: '42703',
	/** A function the statement calls does not exist (a session function dropped, say). */
	undefinedFunction: '42883',
	insufficientPrivilege: '42501',
	/** A named statement the server connection does not have (a pooler gave another one). */
	invalidStatementName: '26000',
	/** A named statement the server connection has already (prepared by another client of a pooler). */
	duplicatePreparedStatement: '42P05',
	serializationFailure: '40001',
	deadlockDetected: '40P01',
} as const;

/**
 * The classes of failures one row's data can cause in a statement that certainly rolled back:
 * data exceptions (22), integrity constraints (23), program limits such as jsonb's size (54).
 */
export const rowCausedClasses: ReadonlySet<string> = new Set(['22', '23', '54']);

/** What {@link readDriverError} finds. */
export interface DriverErrorFacts {
	readonly sqlState: string | undefined;
	readonly prismaCode: string | undefined;
	readonly driverErrorKind: string | undefined;
	readonly failure: DatabaseFailure | undefined;
	/** PostgreSQL's (or the pool's) own words, without Prisma's preamble. */
	readonly reason: string | undefined;
	/** The error with the row data taken out. */
	readonly cause: DatabaseErrorCause;
}

/** Reads a driver's or Prisma's error (or a `DatabaseError`'s cause chain). */
export function readDriverError(error: unknown): DriverErrorFacts {
	const code = stringProperty(error, 'code');
	const prismaCode = code !== undefined && prismaCodePattern.test(code) ? code : undefined;
	const adapterCause = driverAdapterCause(error);
	// node-postgres' own `code` is a SQLSTATE only when the server answered (its error has a
	// `severity`); a socket's `EPIPE` has five letters too.
	const serverCode = prismaCode === undefined && stringProperty(error, 'severity') !== undefined ? code : undefined;
	const sqlState = [stringProperty(adapterCause, 'originalCode'), stringProperty(adapterCause, 'code'), serverCode]
		.find((candidate) => candidate !== undefined && sqlStatePattern.test(candidate));
	const driverErrorKind = stringProperty(adapterCause, 'kind');
	return {
		sqlState,
		prismaCode,
		driverErrorKind,
		failure: failureOf(error, sqlState, driverErrorKind),
		reason: databaseMessage(error, adapterCause),
		cause: sanitizedCause(error, adapterCause, sqlState),
	};
}

/**
 * PostgreSQL's SQLSTATE of a failure: a `DatabaseError`'s, or read from a driver's or Prisma's
 * error; `undefined` when the server did not answer with one.
 */
export function sqlStateOf(error: unknown): string | undefined {
	const own = stringProperty(error, 'sqlState');
	return own !== undefined && sqlStatePattern.test(own) ? own : readDriverError(error).sqlState;
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
