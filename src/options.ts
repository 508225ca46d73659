import { defaultCleanupInterval } from './cleanup.js';
import type { PgStorePrismaClient, PoolOptions } from './prisma-client.js';

/** Where a problem reported to `onError` happened. */
export interface ErrorContext {
	/**
	 * `'cleanup'`: a scheduled sweep failed (the next one tries again); `'pool'`: an idle
	 * connection of the store's own client failed.
	 */
	readonly source: 'cleanup' | 'pool';
}

/**
 * Options of {@link PgStore}. Give exactly one of `prisma` and `connectionString`.
 *
 * @example
 * ```ts
 * const store = new PgStore({ connectionString: process.env.DATABASE_URL, pool: { max: 10 } });
 * ```
 */
export interface PgStoreOptions {
	/**
	 * Your Prisma 7 client, generated from a schema that contains the `PGSession` model. The store
	 * never disconnects it.
	 */
	prisma?: PgStorePrismaClient;
	/**
	 * PostgreSQL connection string: the store builds its own Prisma client on
	 * `@prisma/adapter-pg`, and `close()` disconnects it.
	 */
	connectionString?: string;
	/**
	 * With `connectionString`: node-postgres pool options (`max`, `ssl`,
	 * `connectionTimeoutMillis`, `idleTimeoutMillis`, …).
	 * @default { allowExitOnIdle: true } and node-postgres' defaults (`max: 10`)
	 */
	pool?: PoolOptions;
	/**
	 * With `connectionString`: prepare the store's statements once per connection (named
	 * statements), so PostgreSQL does not parse and plan them on every call. Off by default: since
	 * reads and writes are coalesced it saves nothing measurable (README, "Deploying"), and named
	 * statements break behind poolers in transaction mode (PgBouncer before 1.21 or with
	 * `max_prepared_statements = 0`, Supavisor-style poolers: `42P05 prepared statement … already
	 * exists` after an app restart, `26000` with several processes). Turn on only for direct
	 * connections.
	 * @default false
	 */
	preparedStatements?: boolean;
	/**
	 * The PostgreSQL schema of the session table when the `PGSession` model has no `@@schema`
	 * (with `prisma`: the `schema` you gave `PrismaPg`, if any). With `connectionString` it is
	 * also the connection's `search_path`, and `ensureSchema()` creates it if needed.
	 * @default the connection string's `?schema=` parameter, as Prisma reads it; else the
	 * connection's `search_path` (normally `public`)
	 */
	schema?: string;
	/**
	 * Largest session accepted, in bytes of its JSON (UTF-8, `_expire` and `_maxAge` included).
	 * A larger one rejects with `SessionTooLargeError` and nothing is written. `0` means no limit.
	 * @default 4096
	 */
	maxLength?: number;
	/**
	 * How long the server keeps a session whose cookie has `maxAge: 'session'` (it lasts until
	 * the browser closes, which the server cannot see), in milliseconds. Every save renews it.
	 * @default 86_400_000 (one day)
	 */
	sessionTtl?: number;
	/**
	 * Names whose session it is, for `destroyAll()`, `list()` and `destroySession()`: called on
	 * every write with the session's data; its result is stored in the `subject` column (from
	 * the `…_session_subject` migration). Return `null` or `undefined` for a session of nobody
	 * yet (before login).
	 * @default none: sessions have no subject
	 * @example `subject: (session) => session.userId`
	 */
	subject?: (session: Record<string, unknown>) => string | number | null | undefined;
	/**
	 * Milliseconds between sweeps that delete expired sessions, started with the store and
	 * stopped by `close()`; `0` leaves cleanup to you (`startCleanup()`, `cleanup()`). Reads
	 * never return expired rows either way: cleanup only keeps the table small.
	 * @default 300_000 (five minutes)
	 */
	cleanupInterval?: number;
	/**
	 * Milliseconds within which an unchanged session is not written again: with koa-session's
	 * `rolling` (or `save()` on an unchanged session), a save whose data equal what the request
	 * loaded, `_maxAge` included, and whose new expiry is less than `touchAfter` past the stored
	 * one costs no statement. The stored expiry, and so the session, may then end up to
	 * `touchAfter` earlier than the cookie says. `0` writes every save.
	 * @default 0
	 */
	touchAfter?: number;
	/**
	 * Receives the errors no request is waiting for: failed cleanup sweeps, idle connections of
	 * the store's own pool. It is never given session data or keys.
	 * @default logs `koa-pgstore: <source>: <message>` with `console.error`
	 */
	onError?: (error: Error, context: ErrorContext) => void;
}

/** The options after validation, with defaults applied. */
export interface ResolvedOptions {
	readonly prisma: PgStorePrismaClient | undefined;
	readonly connectionString: string | undefined;
	readonly pool: PoolOptions;
	readonly schema: string | undefined;
	readonly preparedStatements: boolean;
	readonly maxLength: number;
	readonly sessionTtl: number;
	readonly cleanupInterval: number;
	readonly touchAfter: number;
	readonly subject: ((session: Record<string, unknown>) => unknown) | undefined;
	readonly onError: (error: Error, context: ErrorContext) => void;
}

export const defaultMaxLength = 4096;
export const defaultSessionTtl = 86_400_000;

function logError(error: Error, context: ErrorContext): void {
	console.error(`koa-pgstore: ${context.source}: ${error.name}: ${error.message}`);
}

/** A received value described in words, for `invalid()` (used where the value is a secret). */
export class Described {
	constructor(readonly text: string) {}
}

function describe(value: unknown): string {
	if (value instanceof Described) {
		return value.text;
	}
	if (typeof value === 'string') {
		return JSON.stringify(value);
	}
	if (typeof value === 'function') {
		return 'a function';
	}
	if (Array.isArray(value)) {
		return 'an array';
	}
	return value === null ? 'null' : typeof value === 'object' ? 'an object' : String(value);
}

/** Throws the `TypeError` this package uses for a bad option or argument. */
export function invalid(name: string, expected: string, received: unknown): never {
	throw new TypeError(`Expected \`${name}\` to be ${expected}, got ${describe(received)}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates an optional whole number of at least `minimum`, giving `fallback` when absent. */
export function integerAtLeast(name: string, value: unknown, minimum: number, fallback: number): number {
	if (value === undefined) {
		return fallback;
	}
	if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < minimum) {
		invalid(name, `an integer >= ${minimum}`, value);
	}
	return value;
}

/** Validates the options given to `new PgStore()` and applies the defaults, on a copy. */
export function resolveOptions(options: unknown): ResolvedOptions {
	if (!isRecord(options)) {
		invalid('options', 'an object with `prisma` or `connectionString`', options);
	}
	const { prisma, connectionString, pool, schema, preparedStatements, maxLength, sessionTtl, cleanupInterval, touchAfter, subject, onError } = options;
	if ((prisma === undefined) === (connectionString === undefined)) {
		invalid('options', 'an object with exactly one of `prisma` and `connectionString`', prisma === undefined ? 'neither' : 'both');
	}
	if (prisma !== undefined && !isPrismaClient(prisma)) {
		invalid('prisma', 'a Prisma 7 client whose schema has the `PGSession` model', prisma);
	}
	if (connectionString !== undefined && (typeof connectionString !== 'string' || connectionString === '')) {
		invalid('connectionString', 'a non-empty string', connectionString);
	}
	if (pool !== undefined && (!isRecord(pool) || prisma !== undefined)) {
		invalid('pool', 'an object of pool options, with `connectionString`', pool);
	}
	if (schema !== undefined && (typeof schema !== 'string' || schema === '')) {
		invalid('schema', 'a non-empty string', schema);
	}
	if (onError !== undefined && typeof onError !== 'function') {
		invalid('onError', 'a function', onError);
	}
	if (preparedStatements !== undefined && (typeof preparedStatements !== 'boolean' || prisma !== undefined)) {
		invalid('preparedStatements', 'a boolean, with `connectionString`', preparedStatements);
	}
	if (subject !== undefined && typeof subject !== 'function') {
		invalid('subject', 'a function of the session', subject);
	}
	return {
		prisma,
		connectionString,
		pool: { ...pool },
		schema: schema ?? schemaParameter(connectionString),
		preparedStatements: preparedStatements ?? false,
		maxLength: integerAtLeast('maxLength', maxLength, 0, defaultMaxLength),
		sessionTtl: integerAtLeast('sessionTtl', sessionTtl, 1, defaultSessionTtl),
		cleanupInterval: integerAtLeast('cleanupInterval', cleanupInterval, 0, defaultCleanupInterval),
		touchAfter: integerAtLeast('touchAfter', touchAfter, 0, 0),
		subject: subject === undefined ? undefined : (session) => Reflect.apply(subject, undefined, [session]),
		onError: onError === undefined ? logError : (error, context) => {
			Reflect.apply(onError, undefined, [error, context]);
		},
	};
}

function isPrismaClient(value: unknown): value is PgStorePrismaClient {
	if (typeof value !== 'object' || value === null) {
		return false;
	}
	const delegate: unknown = Reflect.get(value, 'pGSession');
	return typeof delegate === 'object' && delegate !== null
		&& typeof Reflect.get(delegate, 'deleteMany') === 'function'
		&& typeof Reflect.get(value, '$transaction') === 'function';
}

// Prisma users name the schema in the URL (`?schema=auth`); honour it as `prisma migrate` does.
function schemaParameter(connectionString: string | undefined): string | undefined {
	if (connectionString === undefined || !URL.canParse(connectionString)) {
		return undefined;
	}
	return new URL(connectionString).searchParams.get('schema') || undefined;
}
