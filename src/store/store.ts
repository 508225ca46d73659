import { startSchedule, type CleanupOptions, type CleanupSchedule } from '../maintenance/schedule.js';
import { sweepExpired, type CleanupReport, type SweepOptions } from '../maintenance/sweep.js';
import { rowCodec, type RowCodec } from '../codec/row-codec.js';
import { DatabaseError, PgStoreError, SessionTooLargeError, StoreClosedError } from '../base/errors.js';
import { printedSizeAtLeast } from '../codec/printed-size.js';
import { Redacted, invalid } from '../base/validate.js';
import { digestKey } from '../codec/key-digest.js';
import { applyMigrations, schemaStatus, type SchemaStatus } from '../maintenance/migrations.js';
import { resolveOptions, type PgStoreOptions, type ResolvedOptions } from './options.js';
import type { Driver } from '../driver/driver.js';
import { ownedDriver } from '../driver/owned-driver.js';
import { prismaDriver } from '../driver/prisma-driver.js';
import { callingFunctions, type FunctionCalls } from '../driver/function-calls.js';
import { sessionFunctions } from '../sql/session-functions.js';
import { createOwnedClient, defaultQueryTimeout, type PgStorePrismaClient } from '../driver/prisma-client.js';
import { createSessionReader, type SessionReader } from '../batch/read-batch.js';
import { RequestSessions } from './request-sessions.js';
import { encodeSession, isWellFormed, subjectOf, type SessionData } from '../codec/session-codec.js';
import { readSessionTable, renamedTable, type SessionTable } from '../sql/session-table.js';
import { tableName, writeTurn, type InternalOptions } from './internal-options.js';
import { sessionStatements, type SessionStatements } from '../sql/statements.js';
import { sweepStatements, type SweepStatements } from '../sql/sweep-statements.js';
import { SubjectSessions, type SessionList } from './subjects.js';
import { createSessionWriter, type SessionWrite, type SessionWriter } from '../batch/write-batch.js';
import { expiryAfter, refuseUnstorable } from './save-limits.js';

/** What `status()` found. */
export interface StoreStatus extends SchemaStatus {
	/** Live sessions, when the table exists and is complete. */
	readonly live?: number;
	/** Expired sessions not swept yet. */
	readonly expired?: number;
	/** The table's size with its indexes and TOAST, in bytes. */
	readonly bytes?: number;
}

/** The third argument koa-session passes to `get`. */
export interface GetOptions {
	rolling?: boolean | undefined;
	/** The request's Koa context: lets `set` know which sessions this request loaded. */
	ctx?: object | undefined;
}

/** The fourth argument koa-session passes to `set`. */
export interface SetOptions extends GetOptions {
	/** `false` for forced saves too (`regenerate()`, `save()`, a `maxAge` change), not only rolling ones. */
	changed?: boolean | undefined;
}

/** The second argument koa-session passes to `destroy`. */
export interface DestroyOptions {
	ctx?: object | undefined;
}

/**
 * A koa-session external store that keeps sessions in PostgreSQL through Prisma 7.
 *
 * The `get`, `set` and `destroy` calls of one turn of the event loop share one statement per
 * kind (a batch that meets a stored key, a deadlock or a row PostgreSQL refuses may take a few
 * more; a save within `touchAfter` takes none). Keys are stored as SHA-256 digests, expired rows are never
 * returned, and a session that ended (logout, expiry) is never brought back by a request that
 * loaded it earlier.
 *
 * @example
 * ```ts
 * const store = new PgStore({ connectionString: process.env.DATABASE_URL });
 * await store.ensureSchema();
 * app.keys = createKeys(process.env.SESSION_KEYS);
 * app.use(session({ store, maxAge: 86_400_000 }, app));
 * ```
 */
export class PgStore {
	readonly #options: ResolvedOptions;
	readonly #client: PgStorePrismaClient;
	readonly #driver: Driver;
	/** With an app's client: the session functions its statements call. */
	readonly #functionCalls: FunctionCalls | undefined;
	/** The table the client's `PGSession` model maps to. */
	readonly #table: SessionTable;
	/** Closes the store's own client and its pool; `undefined` for an app's client. */
	readonly #closeOwned: (() => Promise<void>) | undefined;
	readonly #reader: SessionReader;
	readonly #writer: SessionWriter;
	readonly #requests: RequestSessions;
	readonly #subjects: SubjectSessions;
	readonly #statements: SessionStatements;
	readonly #sweepStatements: SweepStatements;
	/** Plain, with `encryptionKeys` encrypted, with `decryptionKeys` decrypting only. */
	readonly #codec: RowCodec;
	/** What the stored form of a session is measured against: `maxLength`, with room for encryption's padding. */
	readonly #storedLengthLimit: number;
	readonly #schedules = new Set<CleanupSchedule>();
	#closing: Promise<void> | undefined;

	constructor(options: PgStoreOptions) {
		this.#options = resolveOptions(options);
		const { [tableName]: renamed, [writeTurn]: waitTurn } = options as InternalOptions;
		const { prisma, connectionString, pool, schema, onError, preparedStatements, subject, touchAfter, fieldLevelWrites, maxLength, encryption } = this.#options;
		this.#codec = rowCodec(encryption);
		// The statements depend on the client's data model.
		const owned = prisma === undefined
			? createOwnedClient(connectionString ?? '', pool, schema, (error) => onError(error, { source: 'pool' }))
			: undefined;
		this.#client = prisma ?? owned!.client;
		this.#closeOwned = owned?.close;
		const table = readSessionTable(this.#client, schema);
		this.#table = renamed === undefined ? table : renamedTable(table, renamed);
		const statements = sessionStatements(this.#table, subject !== undefined);
		this.#statements = statements;
		this.#sweepStatements = sweepStatements(this.#table);
		// Straight to the owned client's pool, or through the app's client.
		this.#driver = owned === undefined ? prismaDriver(this.#client) : ownedDriver(owned.pool, preparedStatements);
		// Through an app's client (or the own one with `preparedStatements: false`) statements go
		// unnamed: PostgreSQL would plan each anew, so they run as calls of the session functions where
		// the database has them. Prepared, a statement costs less than its function's call.
		this.#functionCalls = owned === undefined || !preparedStatements
			? callingFunctions(this.#driver.query, statements.texts, sessionFunctions(this.#table, subject !== undefined), this.#table)
			: undefined;
		const run = this.#functionCalls?.run ?? this.#driver.query;
		this.#reader = createSessionReader(run, statements);
		// A write waits for a row another transaction holds as long as a statement may run: with
		// `query_timeout: 0` (no bound) as long as it takes, as a statement would wait for the lock.
		// With encryption, sizes are checked against maxLength and the room padding may take
		// (RowCodec.storedLengthLimit).
		this.#storedLengthLimit = this.#codec.storedLengthLimit(maxLength);
		const statementBound = owned?.pool.limits.statementTimeoutMillis ?? defaultQueryTimeout;
		this.#writer = createSessionWriter(run, statements, this.#storedLengthLimit, statementBound > 0 ? statementBound : Number.POSITIVE_INFINITY, waitTurn);
		this.#requests = new RequestSessions({ touchAfter, fieldLevelWrites });
		this.#subjects = new SubjectSessions(run, statements.bySubject, this.#requests);
		if (this.#options.cleanupInterval > 0) {
			this.startCleanup({ interval: this.#options.cleanupInterval });
		}
	}

	/**
	 * Makes sure the session table has what the store needs, before any request. It reads the
	 * catalog first (which needs no grants): when the table the client's `PGSession` model maps to
	 * has every column the store uses (`subject` too, with that option), `data` as `jsonb` and a
	 * unique index on `key`, it touches nothing, so an app role without `CREATE` or access to
	 * `_prisma_migrations` may call it at every start. Otherwise this package's own table
	 * (`http_sessions`) gets the shipped migrations that are missing, recorded as
	 * `prisma migrate deploy` does (either may run first, or both; safe from many instances at once).
	 * A table your app's migrations own is never migrated: it rejects with `SchemaMismatchError`.
	 *
	 * @returns The names of the migrations it applied (empty when none were needed).
	 * @throws {SchemaMismatchError} The table is missing or incomplete and cannot be migrated here;
	 * the message names what is missing and the migration or command that adds it.
	 */
	async ensureSchema(): Promise<string[]> {
		this.#assertOpen();
		try {
			const applied = await applyMigrations(this.#table, this.#driver, this.#options.schema, { subject: this.#options.subject !== undefined });
			if (applied.length > 0) {
				this.#functionCalls?.forget();
			}
			return applied;
		} catch (error) {
			if (error instanceof PgStoreError) {
				throw error;
			}
			throw new DatabaseError('ensureSchema', error);
		}
	}

	/**
	 * What `koa-pgstore status` prints: the table this store uses, what it lacks for this store
	 * (`missing`; the `subject` column only with the `subject` option), the migrations recorded
	 * and pending, and, when the table exists, its live and expired rows and size. Changes nothing.
	 * Counting a large table takes a while: its statement has the bound of a sweep.
	 */
	async status(): Promise<StoreStatus> {
		this.#assertOpen();
		const status = await schemaStatus(this.#table, this.#driver, this.#options.schema, { subject: this.#options.subject !== undefined });
		if (!status.exists || status.missing.length > 0) {
			return status;
		}
		const [row] = await this.#driver.transaction('status', 'sweep', (transaction) => transaction.query(this.#statements.tableStatus())) as [{ live: string; expired: string; bytes: string }?];
		return { ...status, live: Number(row?.live ?? 0), expired: Number(row?.expired ?? 0), bytes: Number(row?.bytes ?? 0) };
	}

	/**
	 * koa-session's `get`: the session stored under `key`, or `undefined` when there is none or it
	 * expired. A database failure rejects with `DatabaseError`: an unreadable session is an error,
	 * never a new empty session.
	 *
	 * With `encryptionKeys`, also `undefined` for a row that fails authentication or is plain (and
	 * `onError` gets a `SessionTamperedError`), and for one under a secret no longer listed. Without
	 * a secret, `undefined` for an encrypted row; and for a row whose `_expire`, `_maxAge` or expiry
	 * is out of range (`onError` gets a `SessionUnreadableError`): the row is left as it is.
	 */
	async get(key: string, _maxAge?: number | 'session', options?: GetOptions): Promise<SessionData | undefined> {
		this.#assertOpen();
		assertKey(key);
		const digest = digestKey(key);
		const row = await this.#reader.read(digest);
		if (row === undefined) {
			return undefined;
		}
		const opened = this.#codec.open(digest, row);
		if (opened.kind === 'refused') {
			if (opened.error !== undefined) {
				this.#options.onError(opened.error, { source: 'get' });
			}
			return undefined;
		}
		this.#requests.loaded(options?.ctx, key, row, opened);
		return opened.data;
	}

	/**
	 * koa-session's `set`. A session this request loaded is updated only while its row still
	 * exists and is live, so a logout elsewhere stays a logout; any other key (a new session,
	 * `regenerate()`, a call without `ctx`) is created or replaced by one upsert (a plain insert
	 * for the keys koa-session made in this request, an upsert if one is stored after all).
	 *
	 * @param maxAge Milliseconds until the row expires, or `'session'` for `sessionTtl`.
	 * @throws {SessionTooLargeError} The JSON is longer than `maxLength`; nothing was written. A field
	 * far over the limit is measured only until it passes it, whatever it holds beyond.
	 * @throws {InvalidSessionError} PostgreSQL cannot store it; nothing was written.
	 */
	async set(key: string, session: SessionData, maxAge?: number | 'session', options?: SetOptions): Promise<void> {
		this.#assertOpen();
		assertKey(key);
		const encoded = encodeSession(session, this.#requests.fieldLimit(options?.ctx, key, this.#storedLengthLimit, this.#codec.numbers));
		const lifetime = maxAge === undefined || maxAge === 'session' ? this.#options.sessionTtl : maxAge;
		if (typeof lifetime !== 'number' || !Number.isFinite(lifetime) || lifetime < 0) {
			invalid('maxAge', 'a number of milliseconds >= 0 or \'session\'', maxAge);
		}
		const now = new Date();
		const expiresOn = expiryAfter(now, lifetime);
		const subject = subjectOf(this.#options.subject, session);
		// The touch window follows the lifetime the app configured: koa-session passes 10 s more.
		const configured = typeof session['_maxAge'] === 'number' && Number.isFinite(session['_maxAge']) && session['_maxAge'] >= 0 ? session['_maxAge'] : lifetime;
		const plan = this.#requests.planSave(options?.ctx, { key, session: encoded, now, expiresOn, lifetime: configured, subject, changed: options?.changed });
		if (plan.write === undefined) {
			return;
		}
		if ('tooLarge' in encoded) {
			// Every write of this save holds those fields, and each alone passes what assertFits lets through.
			throw new SessionTooLargeError(2 + [...encoded.tooLarge.values()].reduce((sum, size) => sum + size, 0), this.#storedLengthLimit);
		}
		const digest = digestKey(key);
		const codec = this.#codec;
		let write: SessionWrite;
		switch (plan.write.kind) {
			case 'updateLive': {
				// Only what is written is sealed: the comparison with what was loaded stayed on plain JSON.
				const { replace, written, removed, resealed, keepExpiry, writeSubject } = plan.write;
				write = {
					kind: 'updateLive', digest, replace, patch: codec.seal(digest, encoded, replace ? undefined : written), removed: JSON.stringify(removed),
					reseal: plan.resealExpected === undefined ? undefined : { fields: codec.seal(digest, encoded, resealed), expected: plan.resealExpected },
					now, expiresOn, keepExpiry, subject: writeSubject ? subject : undefined,
				};
				break;
			}
			case 'move':
				// The row of the regenerated key takes the whole session under this key, sealed for it.
				write = {
					kind: 'updateLive', digest: digestKey(plan.write.from), newDigest: digest, replace: true, patch: codec.seal(digest, encoded), removed: '[]',
					now, expiresOn, keepExpiry: false, subject,
				};
				break;
			default:
				write = { kind: plan.write.kind, digest, json: codec.seal(digest, encoded), now, expiresOn, subject };
		}
		assertFits(write.kind === 'updateLive' ? write.patch : write.json, this.#storedLengthLimit, plan.storedJson);
		// Synchronous unless the database's encoding must be read first: no turn of the event loop
		// is lost, so the write joins the batch of its turn.
		const refusing = refuseUnstorable(this.#driver, write);
		if (refusing !== undefined) {
			await refusing;
		}
		plan.settle(await this.#writer.write(write));
	}

	/**
	 * koa-session's `destroy`: deletes the session stored under `key`, if any, and with `ctx` the
	 * row the request loaded under it wherever another tab's `regenerate()` moved it since (a
	 * logout ends the session, not only a key).
	 *
	 * Within koa-session's `regenerate()` (`ctx.session` not `null`) the delete of a live session
	 * the request loaded waits for the `set` of the new key that koa-session sends next: that save
	 * moves the row to the new key in one statement, only while it is live, so a sign-out can never
	 * land between the two. Should no save follow, the row is deleted just after (errors to
	 * `onError` with `source: 'destroy'`).
	 */
	async destroy(key: string, options?: DestroyOptions): Promise<void> {
		this.#assertOpen();
		assertKey(key);
		const ctx = options?.ctx;
		const plan = this.#requests.planDestroy(ctx, key);
		if (plan.kind === 'defer') {
			// koa-session calls `set` within the same turn of the event loop; setImmediate runs after it.
			setImmediate(() => {
				const deferred = this.#requests.takeDeferred(ctx, key);
				if (deferred?.kind === 'delete') {
					this.#delete(ctx, key, deferred.id).catch((error: unknown) => {
						this.#options.onError(error instanceof Error ? error : new DatabaseError('destroy', error), { source: 'destroy' });
					});
				}
			});
			return;
		}
		await this.#delete(ctx, key, plan.id);
	}

	async #delete(ctx: object | undefined, key: string, id: string | undefined): Promise<void> {
		const { existed } = await this.#writer.delete({ digest: digestKey(key), id });
		this.#requests.destroyed(ctx, key, existed);
	}

	/**
	 * Signs a subject out everywhere: deletes all its sessions, in statements of at most 10,000 rows
	 * each (one for a subject with fewer), so that a subject of any size can be signed out within
	 * the request bound. A request in flight on one of them cannot bring it back (see `set`); a
	 * sign-in that lands while it runs is ended too if it landed before its last statement, and
	 * stays if after (as if it came after the sign-out). Needs the `subject` option.
	 *
	 * @param options.except A request's `ctx`: its own session stays (sign out other devices).
	 * @param options.ctx The request doing it, when its own session ends too: it may then start a
	 * new one (`regenerate()`), as after a password reset. Without it, that request's later saves
	 * treat its session as ended elsewhere.
	 * @returns How many sessions ended.
	 * @throws {DatabaseError} A statement failed; the sessions of the statements before it did
	 * end: call it again to end the rest.
	 * @example
	 * ```ts
	 * await store.destroyAll(ctx.session.userId, { except: ctx }); // "sign out other devices"
	 * await store.destroyAll(userId, { ctx }); await ctx.session.regenerate(); // password reset
	 * ```
	 */
	destroyAll(subject: string | number, options: { except?: object; ctx?: object } = {}): Promise<number> {
		this.#assertOpen();
		return this.#subjects.destroyAll(subject, options);
	}

	/**
	 * A subject's live sessions, most recently active first, for a "your devices" page. Gives
	 * each session's row `id` (for `destroySession`), never its key or the key's digest. One
	 * statement that reads at most 10,000 of the subject's sessions: a subject with more (only one
	 * built on purpose has that many) is listed from 10,000 of them, with `hasMore`.
	 *
	 * @param options.ctx The request's `ctx`: its own session is marked `current`.
	 * @param options.limit Most sessions listed, at most 1,000 (a larger one throws a `TypeError`);
	 * `hasMore` on the result tells whether there are more. @default 50
	 * @example
	 * ```ts
	 * const devices = await store.list(userId, { ctx }); // devices.hasMore: more than 50
	 * ```
	 */
	list(subject: string | number, options: { ctx?: object; limit?: number } = {}): Promise<SessionList> {
		this.#assertOpen();
		return this.#subjects.list(subject, options);
	}

	/**
	 * Ends one of a subject's sessions, by the `id` that `list` gave ("sign out this device").
	 * An id no row can have (past PostgreSQL's `bigint`) is an unknown one: `false`.
	 * @param options.ctx The request doing it, in case the session is its own (see `destroyAll`).
	 * @returns Whether a session ended (`false`: no such session of that subject).
	 * @throws {TypeError} `id` is not a string of digits (or a bigint). The message quotes nothing
	 * of it, and the error has `status: 400`, so Koa answers a client's malformed id with a 400.
	 */
	destroySession(subject: string | number, id: string | bigint, options: { ctx?: object } = {}): Promise<boolean> {
		this.#assertOpen();
		return this.#subjects.destroySession(subject, id, options);
	}

	/**
	 * Deletes expired sessions now (by PostgreSQL's clock), in batches of `batchSize` rows, until
	 * none are left or `signal` aborts, keeping the process alive until it is done. Sweeps of many
	 * instances may run at once, each skipping the rows another holds: rows held for all of
	 * `lockWait` are left, and the report says `skipped: true`.
	 */
	async cleanup(options: SweepOptions = {}): Promise<CleanupReport> {
		this.#assertOpen();
		return sweepExpired(this.#driver, this.#sweepStatements, options, { scheduled: false });
	}

	/**
	 * Sweeps expired sessions every `interval` ms until stopped (`stop()`, the `signal`, or
	 * `close()`). Errors go to `onError` and the schedule goes on.
	 *
	 * @example
	 * ```ts
	 * const controller = new AbortController();
	 * store.startCleanup({ interval: 60_000, signal: controller.signal });
	 * controller.abort(); // on shutdown
	 * ```
	 */
	startCleanup(options: CleanupOptions = {}): CleanupSchedule {
		this.#assertOpen();
		const schedule = startSchedule(options, this.#options.onError, (sweep) => sweepExpired(this.#driver, this.#sweepStatements, sweep, { scheduled: true }));
		this.#schedules.add(schedule);
		return {
			stop: () => schedule.stop().finally(() => this.#schedules.delete(schedule)),
		};
	}

	/**
	 * Closes the store: stops its cleanup schedules (waiting for a sweep in flight), sends the
	 * reads and writes already asked for (a sign-out deferred within `regenerate()` too) and
	 * waits for them, then disconnects the Prisma client and closes its pool if the store built
	 * them (from `connectionString`), never one it was given. Calling it again returns the same
	 * promise.
	 */
	close(): Promise<void> {
		this.#closing ??= (async () => {
			await Promise.all([...this.#schedules].map((schedule) => schedule.stop()));
			await Promise.all([this.#reader.drain(), this.#writer.drain()]);
			await this.#closeOwned?.();
		})();
		return this.#closing;
	}

	/** `await using store = new PgStore(…)` closes it at the end of the scope. */
	[Symbol.asyncDispose](): Promise<void> {
		return this.close();
	}

	#assertOpen(): void {
		if (this.#closing !== undefined) {
			throw new StoreClosedError();
		}
	}
}

/**
 * Refuses, before its write joins a batch, a save that SQL would refuse for its size: the JSON it
 * sends, as PostgreSQL prints it, is over `maxLength` and larger than the session it replaces or
 * merges into (a save that does not grow a session is written). The merged session holds every
 * field sent, so it is at least that large. What PostgreSQL parses and measures is then never
 * more than `maxLength`, or than what the row held, whatever numbers a client put in it.
 */
function assertFits(sent: string, maxLength: number, storedJson: string | undefined): void {
	if (maxLength === 0) {
		return;
	}
	const storedSize = storedJson === undefined ? 0 : Buffer.byteLength(storedJson);
	let size = Buffer.byteLength(sent);
	// PostgreSQL's text is never shorter than the JSON's bytes: the numbers are read only when the
	// bytes alone do not decide, so the scan covers at most maxLength or the stored session's size.
	if (size <= maxLength || size <= storedSize) {
		size = printedSizeAtLeast(sent);
	}
	if (size > maxLength && size > storedSize) {
		throw new SessionTooLargeError(size, maxLength);
	}
}

function assertKey(key: unknown): asserts key is string {
	if (typeof key !== 'string' || key === '') {
		invalid('key', 'a non-empty string', key);
	}
	// Ill-formed strings (lone surrogates) hash alike: '\ud800' and '\ud801' would share a row.
	if (!isWellFormed(key)) {
		invalid('key', 'a well-formed string (no lone UTF-16 surrogates)', new Redacted('an ill-formed string'));
	}
}
