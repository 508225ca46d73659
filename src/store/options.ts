import { defaultCleanupInterval, defaultMaxLength, defaultSessionTtl, defaultTouchAfter } from '../base/defaults.js';
import type { ErrorContext, ErrorHandler } from '../base/errors.js';
import { Redacted, integerAtLeast, invalid, isRecord } from '../base/validate.js';
import { checkSecrets, minimumSecretBytes, secretList } from '../keys/keys.js';
import type { SessionFields } from './koa-types.js';
import type { PgStorePrismaClient, PoolOptions } from '../driver/prisma-client.js';
import type { EncryptionSettings } from '../codec/row-codec.js';

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
	connectionString?: string | undefined;
	/**
	 * With `connectionString`: node-postgres pool options (`max`, `ssl`,
	 * `connectionTimeoutMillis`, `idleTimeoutMillis`, …).
	 * @default { allowExitOnIdle: true, connectionTimeoutMillis: 5_000, query_timeout: 3_000 } and node-postgres' defaults (`max: 10`)
	 */
	pool?: PoolOptions;
	/**
	 * With `connectionString`: prepare the statements of requests once per connection (named
	 * statements), so PostgreSQL does not parse and plan them on every call (the field-level
	 * update's PostgreSQL CPU halves; docs/performance.md). Behind a pooler that does not keep named
	 * statements with their client (PgBouncer in transaction mode before 1.21 or with
	 * `max_prepared_statements = 0`), the first statement it refuses (`26000`, `42P05`) runs again
	 * unnamed and the store prepares nothing more: no request fails. `false`: never prepare; the
	 * statements then run as calls of the session functions where the database has them
	 * (docs/own-prisma-client.md, "Session functions").
	 * @default true
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
	 * Largest session stored, in bytes: the UTF-8 length of PostgreSQL's text form of the stored
	 * `jsonb` (`octet_length(data::text)`, koa-session's `_expire` and `_maxAge` included; about
	 * two bytes per field more than compact JSON), checked in SQL after a save's fields are merged.
	 * A save that would store a larger session rejects with `SessionTooLargeError` and leaves the
	 * stored one as it was, unless it makes the stored session no larger (so a session over a
	 * lowered limit can still shrink). `0` means no limit.
	 *
	 * With `encryptionKeys` it is the stored, encrypted form that is measured, against `maxLength`
	 * and a third more: each encrypted field takes about a third of its JSON (padded to a multiple
	 * of 16 bytes) plus 55 bytes more, and the third is the most padding can add to a session that
	 * fit unpadded (docs/encryption.md#overhead). Raise the limit by the encryption's overhead.
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
	subject?: (session: SessionFields & Record<string, unknown>) => string | number | null | undefined;
	/**
	 * Milliseconds between sweeps that delete expired sessions, started with the store and
	 * stopped by `close()`; `0` leaves cleanup to you (`startCleanup()`, `cleanup()`). Reads
	 * never return expired rows either way: cleanup only keeps the table small.
	 * @default 300_000 (five minutes)
	 */
	cleanupInterval?: number;
	/**
	 * Milliseconds by which the stored expiry may stay behind a save's new one. Within that window
	 * (never more than a quarter of the session's lifetime):
	 * - a save whose data equal what the request loaded, `_maxAge` included (koa-session's
	 *   `rolling`, or `save()` on an unchanged session), costs no statement;
	 * - a save that changes the data writes them and keeps the stored expiry, and the stored
	 *   `_expire` with it: unless the subject changes, no indexed column of the shipped schema
	 *   changes, so PostgreSQL can update the row in place (a HOT update, no new index entries).
	 *
	 * The session may then end up to `touchAfter` earlier than the cookie says. A `maxAge` change,
	 * or an expiry that moves earlier, is always written. `0` moves the expiry on every save, and
	 * every save then leaves a dead row version and index entries behind (docs/deploying.md, table health).
	 * @default 60_000 (a minute)
	 */
	touchAfter?: number;
	/**
	 * Saves of a session the request loaded write only the top-level fields it changed (and delete
	 * those it removed), so concurrent requests of one session keep each other's changes to other
	 * fields. `false`: every save writes the whole session (the last save wins).
	 * @default true
	 */
	fieldLevelWrites?: boolean;
	/**
	 * Encrypts the value of every top-level field of every session at rest (AES-256-GCM, a key per
	 * secret and per session derived with HKDF, each field bound to its row and its name), so that
	 * whoever reads the table cannot read the data and whoever writes it cannot forge any. Field
	 * names, koa-session's `_expire`, `_maxAge`, `_session` and the `subject` column stay plain.
	 * Secrets as for `createKeys` (at least 32 bytes each, no duplicates), distinct from `app.keys`,
	 * newest first: writes use the first, reads any. Each value's JSON is padded to a multiple of
	 * 16 bytes first, so short values encrypt to one length. A read that finds an older secret's
	 * ciphertext re-encrypts the whole session on its next save; a session only a dropped secret
	 * could read ends (`get` gives `undefined`). A row that does not authenticate (a changed key id
	 * or base64url too), or a plain one, is never returned: `get` gives `undefined` and `onError` a
	 * `SessionTamperedError`. With sessions already stored, give `encryptionMigration` too, or
	 * every user gets a fresh session. The store keeps in
	 * memory the keys it derived for recent sessions and the plaintexts of recently read fields
	 * (a few MB at most), so that a session read again unchanged costs no decryption.
	 * @default none: session data are stored as plain JSON
	 * @example `encryptionKeys: process.env.SESSION_DATA_KEYS // "newest,older"`
	 */
	encryptionKeys?: string | readonly string[] | undefined;
	/**
	 * Turning `encryptionKeys` on for a table of plain sessions: until `acceptPlainRowsUntil` (at
	 * most 90 days ahead) a row without any encrypted field is read as plain, and its next save
	 * encrypts it whole. After that date plain rows are refused as tampered; a past date is
	 * allowed and does nothing, so a leftover setting never stops an app from starting. Meanwhile
	 * a table writer can still insert a plain row: keep the window short.
	 * @default none: plain rows are refused as tampered
	 */
	encryptionMigration?: { acceptPlainRowsUntil: Date } | undefined;
	/**
	 * Turning encryption off without signing anyone out: the secrets that were `encryptionKeys`,
	 * now only to read with. Encrypted fields are decrypted (and refused as tampered when they do
	 * not authenticate), plain ones read as they are, and every save writes plain JSON: a session
	 * with an encrypted field is rewritten whole on its next save, even within `touchAfter`. Keep
	 * them for one session lifetime (the longest `maxAge`), then remove the option: a session
	 * never saved meanwhile is still encrypted, and a store without secrets passes it over
	 * (`SessionUnreadableError`). Not with `encryptionKeys` (older secrets to read with belong
	 * there, after the newest).
	 * @default none
	 * @example `decryptionKeys: process.env.SESSION_DATA_KEYS // was encryptionKeys`
	 */
	decryptionKeys?: string | readonly string[] | undefined;
	/**
	 * Receives the errors no request is waiting for: failed cleanup sweeps and sweeps that left
	 * expired rows others held again and again (`CleanupBlockedError`), idle connections of the
	 * store's own pool, a stored session passed over for a fresh one (`SessionTamperedError` with
	 * encryption; `SessionUnreadableError`: encrypted without a secret to read it, or an expiry out
	 * of range). It is never given session data or keys.
	 * @default logs `koa-pgstore: <source>: <message>` with `console.error`
	 */
	onError?: ErrorHandler;
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
	readonly fieldLevelWrites: boolean;
	readonly subject: ((session: Record<string, unknown>) => unknown) | undefined;
	readonly onError: ErrorHandler;
	/** With `encryptionKeys` or `decryptionKeys`: the secrets, newest first, and what they do. */
	readonly encryption: EncryptionSettings | undefined;
}

/** How far ahead `encryptionMigration.acceptPlainRowsUntil` may be: "temporary" must not quietly become forever. */
export const maximumPlainRowsWindow = 90 * 86_400_000;

function logError(error: Error, context: ErrorContext): void {
	console.error(`koa-pgstore: ${context.source}: ${error.name}: ${error.message}`);
}

/** Validates the options given to `new PgStore()` and applies the defaults, on a copy. */
export function resolveOptions(options: unknown): ResolvedOptions {
	if (!isRecord(options)) {
		invalid('options', 'an object with `prisma` or `connectionString`', options);
	}
	for (const name of Object.keys(options)) {
		if (!knownOptions.has(name)) {
			const instead = insteadOf[name];
			throw new TypeError(`Unknown option \`${name}\` of PgStore${instead === undefined ? '' : `: ${instead}`}`);
		}
	}
	const { prisma, connectionString, pool, schema, preparedStatements, maxLength, sessionTtl, cleanupInterval, touchAfter, fieldLevelWrites, subject, onError, encryptionKeys, encryptionMigration, decryptionKeys } = options;
	if (prisma === undefined && connectionString === undefined) {
		throw new TypeError('Expected exactly one of `prisma` and `connectionString`, got neither: pass `connectionString: process.env.DATABASE_URL` (is DATABASE_URL set?) or your Prisma 7 client as `prisma`');
	}
	if (prisma !== undefined && connectionString !== undefined) {
		invalid('options', 'an object with exactly one of `prisma` and `connectionString`', new Redacted('both'));
	}
	if (isRecord(pool) && typeof pool['connect'] === 'function' && typeof pool['query'] === 'function') {
		throw new TypeError('Expected `pool` to be node-postgres pool options such as `{ max: 10 }`, got a pool: the store builds its own from `connectionString`; to share one, pass your Prisma client (on `new PrismaPg(pool)`) as `prisma`');
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
	if (fieldLevelWrites !== undefined && typeof fieldLevelWrites !== 'boolean') {
		invalid('fieldLevelWrites', 'a boolean', fieldLevelWrites);
	}
	if (subject !== undefined && typeof subject !== 'function') {
		invalid('subject', 'a function of the session', subject);
	}
	const encryption = resolveEncryption(encryptionKeys, encryptionMigration, decryptionKeys);
	return {
		prisma,
		connectionString,
		pool: { ...pool },
		schema: schema ?? schemaParameter(connectionString),
		preparedStatements: preparedStatements ?? true,
		maxLength: integerAtLeast('maxLength', maxLength, 0, defaultMaxLength),
		sessionTtl: integerAtLeast('sessionTtl', sessionTtl, 1, defaultSessionTtl),
		cleanupInterval: integerAtLeast('cleanupInterval', cleanupInterval, 0, defaultCleanupInterval),
		touchAfter: integerAtLeast('touchAfter', touchAfter, 0, defaultTouchAfter),
		fieldLevelWrites: fieldLevelWrites ?? true,
		subject: subject === undefined ? undefined : (session) => Reflect.apply(subject, undefined, [session]),
		onError: onError === undefined ? logError : (error, context) => {
			Reflect.apply(onError, undefined, [error, context]);
		},
		encryption,
	};
}

function resolveEncryption(keys: unknown, migration: unknown, decryptionKeys: unknown): ResolvedOptions['encryption'] {
	if (decryptionKeys !== undefined && keys !== undefined) {
		invalid('decryptionKeys', 'given without `encryptionKeys` (it turns encryption off; older secrets to read with belong in `encryptionKeys`, after the newest)', new Redacted('both'));
	}
	if (keys === undefined) {
		if (migration !== undefined) {
			invalid('encryptionMigration', 'given only with `encryptionKeys`', migration);
		}
		if (decryptionKeys === undefined) {
			return undefined;
		}
		const secrets = secretList('decryptionKeys', decryptionKeys);
		checkSecrets('decryptionKeys', secrets, minimumSecretBytes);
		return { secrets, mode: 'decrypt', acceptPlainRowsUntil: undefined };
	}
	const secrets = secretList('encryptionKeys', keys);
	checkSecrets('encryptionKeys', secrets, minimumSecretBytes);
	if (migration === undefined) {
		return { secrets, mode: 'encrypt', acceptPlainRowsUntil: undefined };
	}
	const until = isRecord(migration) ? migration['acceptPlainRowsUntil'] : undefined;
	if (!(until instanceof Date) || Number.isNaN(until.getTime())) {
		invalid('encryptionMigration', 'an object `{ acceptPlainRowsUntil: Date }` with a valid date', isRecord(migration) ? until : migration);
	}
	if (until.getTime() > Date.now() + maximumPlainRowsWindow) {
		invalid('encryptionMigration.acceptPlainRowsUntil', 'a date at most 90 days ahead', until.toISOString());
	}
	return { secrets, mode: 'encrypt', acceptPlainRowsUntil: new Date(until.getTime()) };
}

const knownOptions = new Set([
	'prisma', 'connectionString', 'pool', 'schema', 'preparedStatements', 'maxLength', 'sessionTtl',
	'cleanupInterval', 'touchAfter', 'fieldLevelWrites', 'subject', 'onError', 'encryptionKeys', 'encryptionMigration', 'decryptionKeys',
]);

// Options of the stores people come from (connect-pg-simple, koa-redis, prisma-session-store),
// and what to use here.
const insteadOf: Record<string, string> = {
	tableName: 'the table is the one the `PGSession` model maps to (`http_sessions`, or your model\'s `@@map` with `prisma`)',
	schemaName: 'use `schema`',
	conString: 'use `connectionString`',
	conObject: 'use `connectionString` and `pool`',
	client: 'pass your Prisma client as `prisma`',
	ttl: 'the expiry comes from koa-session\'s `maxAge`; `sessionTtl` is for `maxAge: \'session\'`',
	prefix: 'keys are stored as SHA-256 digests in their own table; no prefix is needed',
	pruneSessionInterval: 'use `cleanupInterval` (milliseconds; 0 turns it off)',
	checkPeriod: 'use `cleanupInterval` (milliseconds; 0 turns it off)',
	createTableIfMissing: 'call `await store.ensureSchema()`, or apply the shipped migrations with `prisma migrate deploy`',
	disableTouch: 'use `touchAfter`',
	errorLog: 'use `onError`',
	crypto: 'use `encryptionKeys` (each field is encrypted on its own, so field-level writes keep working)',
	acceptPlainUntil: 'use `encryptionMigration: { acceptPlainRowsUntil }`',
};

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
