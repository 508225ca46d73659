import { isDeepStrictEqual } from 'node:util';
import DataLoader from 'dataloader';
import {
	defaultBatchSize, defaultCleanupInterval, pauseFor, scheduleCleanup,
	type Cleanup, type CleanupOptions, type CleanupReport, type SweepOptions,
} from './cleanup.js';
import { DatabaseError, InvalidSessionError, SessionTooLargeError, StoreClosedError, type StoreOperation } from './errors.js';
import { digestKey } from './key-digest.js';
import { applyMigrations } from './migrations.js';
import { integerAtLeast, invalid, resolveOptions, type PgStoreOptions, type ResolvedOptions } from './options.js';
import { createOwnedClient, type PgStorePrismaClient } from './prisma-client.js';
import { sessionStatements, type SessionStatements, type SubjectStatements } from './session-table.js';
import { createWriteBatcher, type SessionWrite } from './write-batch.js';

/** A session as koa-session hands it to a store: its JSON, with `_expire` and `_maxAge`. */
export type SessionData = Record<string, unknown>;

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

/** What `get` found for a key in one request. */
interface LoadedSession {
	readonly expiresOn: Date;
	/** A copy of the stored data (the app may change the object it was given), kept for `touchAfter`. */
	readonly data?: SessionData;
}

/** One of a subject's sessions, as `list()` shows it. */
export interface SessionListing {
	/** The row's id: what `destroySession()` takes. Not secret, and useless to sign in with. */
	readonly id: string;
	readonly createdOn: Date;
	/** When the session was last written. */
	readonly modifiedOn: Date;
	readonly expiresOn: Date;
	/** Whether this is the session of the `ctx` given to `list()`. */
	readonly current: boolean;
}

/** A live row as the read statement returns it. */
interface StoredRow {
	readonly key: string;
	readonly data: SessionData;
	readonly expiresOn: Date;
}

// Transaction-scoped advisory lock that lets one instance at a time sweep a database
// (the bytes of "koapgst1").
const cleanupLockId = 0x6b6f_6170_6773_7431n;

/**
 * A koa-session external store that keeps sessions in PostgreSQL through Prisma 7.
 *
 * `get`, `set` and `destroy` each take at most one SQL statement, and those of one turn of the
 * event loop share one per kind. Keys are stored as SHA-256 digests, expired rows are never
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
	readonly #ownsClient: boolean;
	readonly #sql: SessionStatements;
	// Reads of one tick go to PostgreSQL as one statement (`key = ANY($1)`); each caller still
	// gets its own row or error. No caching: every get reads the database.
	readonly #reads: DataLoader<string, StoredRow | undefined>;
	// Writes likewise: one statement per kind of write and turn of the event loop.
	readonly #writes: DataLoader<SessionWrite, boolean>;
	// Which sessions each request loaded: `set` may update those but never recreate them.
	readonly #loaded = new WeakMap<object, Map<string, LoadedSession>>();
	readonly #schedules = new Set<Cleanup>();
	#closing: Promise<void> | undefined;

	constructor(options: PgStoreOptions) {
		this.#options = resolveOptions(options);
		const { prisma, connectionString, pool, schema, onError } = this.#options;
		this.#ownsClient = prisma === undefined;
		// The owned client prepares the store's statements (see `preparedStatements`).
		const prepared = new Map<string, string>();
		this.#client = prisma ?? createOwnedClient(
			connectionString ?? '',
			pool,
			schema,
			(error) => onError(error, { source: 'pool' }),
			(sql) => prepared.get(sql),
		);
		this.#sql = sessionStatements(this.#client, schema, this.#options.subject !== undefined);
		for (const [name, sql] of Object.entries({ ...this.#sql, ...this.#sql.bySubject })) {
			if (typeof sql === 'string' && this.#options.preparedStatements) {
				prepared.set(sql, `koa_pgstore_${name}`);
			}
		}
		this.#reads = new DataLoader((digests) => this.#readBatch(digests), {
			cache: false,
			maxBatchSize: 500,
			// Requests arrive in separate I/O callbacks; waiting for the end of this turn of the
			// event loop (setImmediate) lets the reads of all of them share one statement.
			batchScheduleFn: (callback) => setImmediate(callback),
		});
		this.#writes = createWriteBatcher(this.#client, this.#sql);
		if (this.#options.cleanupInterval > 0) {
			this.startCleanup({ interval: this.#options.cleanupInterval });
		}
	}

	/**
	 * Creates the session table from the migrations in this package's `prisma/migrations` if the
	 * database lacks any of them, recording them as `prisma migrate deploy` does; either may run
	 * first, or both. Safe to call from many instances at once. Only for the table this package
	 * owns (`http_sessions`); a model copied into your schema is migrated by your own migrations.
	 *
	 * @returns The names of the migrations it applied (empty when all were there).
	 */
	async ensureSchema(): Promise<string[]> {
		this.#assertOpen();
		try {
			return await applyMigrations(this.#client, this.#options.schema);
		} catch (error) {
			throw new DatabaseError('ensureSchema', error);
		}
	}

	/**
	 * koa-session's `get`: the session stored under `key`, or `undefined` when there is none or it
	 * expired. A database failure rejects with `DatabaseError`: an unreadable session is an error,
	 * never a new empty session.
	 */
	async get(key: string, _maxAge?: number | 'session', options?: GetOptions): Promise<SessionData | undefined> {
		this.#assertOpen();
		assertKey(key);
		const row = await this.#reads.load(digestKey(key));
		if (row === undefined) {
			return undefined;
		}
		if (options?.ctx !== undefined) {
			this.#loadedBy(options.ctx).set(key, this.#remembered(row.expiresOn, () => structuredClone(row.data)));
		}
		return row.data;
	}

	/**
	 * koa-session's `set`. A session this request loaded is updated only while its row still
	 * exists and is live, so a logout elsewhere stays a logout; any other key (a new session,
	 * `regenerate()`, a call without `ctx`) is created or replaced by one upsert.
	 *
	 * @param maxAge Milliseconds until the row expires, or `'session'` for `sessionTtl`.
	 * @throws {SessionTooLargeError} The JSON is longer than `maxLength`; nothing was written.
	 * @throws {InvalidSessionError} PostgreSQL cannot store it; nothing was written.
	 */
	async set(key: string, session: SessionData, maxAge?: number | 'session', options?: SetOptions): Promise<void> {
		this.#assertOpen();
		assertKey(key);
		const json = this.#serialize(session);
		const lifetime = maxAge === undefined || maxAge === 'session' ? this.#options.sessionTtl : maxAge;
		if (typeof lifetime !== 'number' || !Number.isFinite(lifetime) || lifetime < 0) {
			invalid('maxAge', 'a number of milliseconds >= 0 or \'session\'', maxAge);
		}
		const now = new Date();
		const expiresOn = new Date(now.getTime() + lifetime);
		const digest = digestKey(key);
		const subject = this.#subjectOf(session);
		const loaded = options?.ctx === undefined ? undefined : this.#loadedBy(options.ctx);
		const previous = loaded?.get(key);
		if (previous !== undefined && options?.changed !== true && this.#isFreshTouch(previous, json, expiresOn)) {
			return;
		}
		if (loaded !== undefined && previous !== undefined) {
			const updated = await this.#writes.load({ kind: 'updateLive', digest, json, now, expiresOn, subject });
			if (!updated) {
				// The session ended while this request ran; recreating it would undo that.
				loaded.delete(key);
			} else {
				loaded.set(key, this.#remembered(expiresOn, () => JSON.parse(json) as SessionData));
			}
			return;
		}
		await this.#writes.load({ kind: 'upsert', digest, json, now, expiresOn, subject });
		// From here on this request updates the row it made, and never recreates it.
		loaded?.set(key, this.#remembered(expiresOn, () => JSON.parse(json) as SessionData));
	}

	/** koa-session's `destroy`: deletes the session stored under `key`, if any. */
	async destroy(key: string, options?: DestroyOptions): Promise<void> {
		this.#assertOpen();
		assertKey(key);
		if (options?.ctx !== undefined) {
			this.#loadedBy(options.ctx).delete(key);
		}
		await this.#writes.load({ kind: 'delete', digest: digestKey(key) });
	}

	/**
	 * Signs a subject out everywhere: deletes all its sessions in one statement. A request in
	 * flight on one of them cannot bring it back (see `set`).
	 *
	 * @param options.except A request's `ctx`: its own session stays (sign out other devices).
	 * @returns How many sessions ended.
	 * @example
	 * ```ts
	 * await store.destroyAll(ctx.session.userId, { except: ctx }); // "sign out other devices"
	 * ```
	 */
	async destroyAll(subject: string | number, options: { except?: object } = {}): Promise<number> {
		const sql = this.#subjectStatements();
		const keep = this.#digestsOf(options.except);
		return this.#run('destroy', this.#client.$executeRawUnsafe(sql.deleteAll, subjectParameter(subject), keep));
	}

	/**
	 * A subject's live sessions, most recently active first, for a "your devices" page. Gives
	 * each session's row `id` (for `destroySession`), never its key or the key's digest.
	 *
	 * @param options.ctx The request's `ctx`: its own session is marked `current`.
	 */
	async list(subject: string | number, options: { ctx?: object } = {}): Promise<SessionListing[]> {
		const sql = this.#subjectStatements();
		const rows = await this.#run('get', this.#client.$queryRawUnsafe(sql.list, subjectParameter(subject), new Date())) as {
			id: string; key: string; createdOn: Date; modifiedOn: Date; expiresOn: Date;
		}[];
		const current = new Set(this.#digestsOf(options.ctx));
		return rows.map(({ id, key, createdOn, modifiedOn, expiresOn }) => ({ id, createdOn, modifiedOn, expiresOn, current: current.has(key) }));
	}

	/**
	 * Ends one of a subject's sessions, by the `id` that `list` gave ("sign out this device").
	 * @returns Whether a session ended (`false`: no such session of that subject).
	 */
	async destroySession(subject: string | number, id: string | bigint): Promise<boolean> {
		const sql = this.#subjectStatements();
		if ((typeof id !== 'string' || !/^\d{1,19}$/.test(id)) && typeof id !== 'bigint') {
			invalid('id', 'a session id from list() (a string of digits)', id);
		}
		const deleted = await this.#run('destroy', this.#client.$executeRawUnsafe(sql.deleteOne, subjectParameter(subject), String(id)));
		return deleted > 0;
	}

	/**
	 * Deletes expired sessions now, in batches of `batchSize` rows, until none are left or
	 * `signal` aborts. Each batch is one short transaction holding an advisory lock, so of many
	 * instances sharing a database only one deletes at a time; an instance that finds the lock
	 * taken returns at once with `skipped: true`. Needs no session state on the connection, so it
	 * works behind PgBouncer's transaction pooling.
	 */
	async cleanup(options: SweepOptions = {}): Promise<CleanupReport> {
		this.#assertOpen();
		const batchSize = integerAtLeast('batchSize', options.batchSize, 1, defaultBatchSize);
		const fixedPause = options.pause === undefined ? undefined : integerAtLeast('pause', options.pause, 0, 0);
		const started = performance.now();
		let deleted = 0;
		let batches = 0;
		let skipped = false;
		while (options.signal?.aborted !== true) {
			const batchStarted = performance.now();
			const expiredBefore = new Date();
			const count = await this.#run('cleanup', this.#client.$transaction(async (transaction) => {
				const [lock] = await transaction.$queryRawUnsafe(
					`SELECT pg_try_advisory_xact_lock(${cleanupLockId}) AS "locked"`,
				) as [{ locked: boolean }?];
				if (lock?.locked !== true) {
					return undefined;
				}
				const result = await transaction.pGSession.deleteMany({
					where: { expiresOn: { lt: expiredBefore } },
					limit: batchSize,
				});
				return result.count;
			}, { maxWait: 10_000, timeout: 60_000 }));
			if (count === undefined) {
				skipped = true;
				break;
			}
			batches += 1;
			deleted += count;
			if (count < batchSize) {
				break;
			}
			// By default a sweep rests twice as long as each batch took: it keeps at most a third of
			// one connection busy (measured in `npm run bench`: read p99 +1 ms during a sweep).
			await pauseFor(fixedPause ?? 2 * (performance.now() - batchStarted), options.signal);
		}
		return { deleted, batches, ms: performance.now() - started, skipped };
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
	startCleanup(options: CleanupOptions = {}): Cleanup {
		this.#assertOpen();
		const interval = integerAtLeast('interval', options.interval, 0, defaultCleanupInterval);
		const batchSize = integerAtLeast('batchSize', options.batchSize, 1, defaultBatchSize);
		const pause = options.pause === undefined ? undefined : integerAtLeast('pause', options.pause, 0, 0);
		const { signal, onError = this.#options.onError } = options;
		if (signal !== undefined && !(signal instanceof AbortSignal)) {
			invalid('signal', 'an AbortSignal', signal);
		}
		if (typeof onError !== 'function') {
			invalid('onError', 'a function', onError);
		}
		if (interval === 0) {
			return { stop: () => Promise.resolve() };
		}
		const schedule = scheduleCleanup({
			interval,
			signal,
			onError,
			sweep: (stopSignal) => this.cleanup({ batchSize, signal: stopSignal, ...pause === undefined ? {} : { pause } }),
		});
		this.#schedules.add(schedule);
		return {
			stop: () => schedule.stop().finally(() => this.#schedules.delete(schedule)),
		};
	}

	/**
	 * Closes the store: stops its cleanup schedules (waiting for a sweep in flight), then
	 * disconnects the Prisma client if the store built it (from `connectionString`), never one it
	 * was given. Calling it again returns the same promise.
	 */
	close(): Promise<void> {
		this.#closing ??= (async () => {
			await Promise.all([...this.#schedules].map((schedule) => schedule.stop()));
			if (this.#ownsClient) {
				await this.#client.$disconnect();
			}
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

	// What a request remembers of a session it loaded or wrote: a private copy of the data only
	// when touchAfter needs it to compare.
	#remembered(expiresOn: Date, copyOfData: () => SessionData): LoadedSession {
		return this.#options.touchAfter > 0 ? { expiresOn, data: copyOfData() } : { expiresOn };
	}

	// A save that changes nothing but the expiry, while the stored expiry is recent enough, is
	// skipped (touchAfter). `_expire` is the only field allowed to differ: `_maxAge` differs
	// when the app changed maxAge ("remember me"), and that must be written.
	#isFreshTouch(previous: LoadedSession, json: string, expiresOn: Date): boolean {
		const { touchAfter } = this.#options;
		if (touchAfter === 0 || previous.data === undefined) {
			return false;
		}
		// Only a later expiry may be skipped: one that moves earlier shortens the session.
		const extension = expiresOn.getTime() - previous.expiresOn.getTime();
		if (extension < 0 || extension >= touchAfter) {
			return false;
		}
		const { _expire: _new, ...next } = JSON.parse(json) as SessionData;
		const { _expire: _old, ...stored } = previous.data;
		return isDeepStrictEqual(next, stored);
	}

	async #readBatch(digests: readonly string[]): Promise<(StoredRow | undefined | Error)[]> {
		let rows: unknown;
		try {
			rows = await this.#client.$queryRawUnsafe(this.#sql.selectLive, [...new Set(digests)], new Date());
		} catch (error) {
			const failure = new DatabaseError('get', error);
			return digests.map(() => failure);
		}
		const found = new Map<string, StoredRow>();
		for (const row of Array.isArray(rows) ? rows : []) {
			if (isStoredRow(row)) {
				found.set(row.key, row);
			}
		}
		// Concurrent requests of one session must not share one mutable object.
		const handedOut = new Set<string>();
		return digests.map((digest) => {
			const row = found.get(digest);
			if (row === undefined || !handedOut.has(digest)) {
				handedOut.add(digest);
				return row;
			}
			return { ...row, data: structuredClone(row.data) };
		});
	}

	#subjectOf(session: SessionData): string | null | undefined {
		const { subject } = this.#options;
		if (subject === undefined) {
			return undefined;
		}
		const value = subject(session);
		if (value === undefined || value === null) {
			return null;
		}
		if ((typeof value !== 'string' || value === '') && (typeof value !== 'number' || !Number.isFinite(value))) {
			invalid('subject(session)', 'to return a non-empty string, a number, null or undefined', value);
		}
		return String(value);
	}

	#subjectStatements(): SubjectStatements {
		this.#assertOpen();
		if (this.#sql.bySubject === undefined) {
			throw new TypeError('Expected the store to have a `subject` option: sessions are stored without a subject');
		}
		return this.#sql.bySubject;
	}

	/** Digests of the sessions a request loaded or created. */
	#digestsOf(ctx: object | undefined): string[] {
		const loaded = ctx === undefined ? undefined : this.#loaded.get(ctx);
		return loaded === undefined ? [] : [...loaded.keys()].map(digestKey);
	}

	#loadedBy(ctx: object): Map<string, LoadedSession> {
		let loaded = this.#loaded.get(ctx);
		if (loaded === undefined) {
			loaded = new Map();
			this.#loaded.set(ctx, loaded);
		}
		return loaded;
	}

	async #run<T>(operation: StoreOperation, query: PromiseLike<T>): Promise<T> {
		try {
			return await query;
		} catch (error) {
			throw new DatabaseError(operation, error);
		}
	}

	// Checks what PostgreSQL would reject before anything is sent, so a rejected save leaves the
	// stored session as it was. Returns the JSON that is stored.
	#serialize(session: unknown): string {
		if (!isSessionData(session)) {
			throw new InvalidSessionError(`Expected the session to be a plain object, got ${session === null ? 'null' : typeof session}`);
		}
		let json: string;
		try {
			json = JSON.stringify(session);
		} catch (error) {
			throw new InvalidSessionError('The session cannot be serialized as JSON', { cause: error });
		}
		const { maxLength } = this.#options;
		// A UTF-16 unit is at most 3 bytes of UTF-8, so a short string skips the byte count.
		if (maxLength > 0 && json.length * 3 > maxLength) {
			const size = Buffer.byteLength(json);
			if (size > maxLength) {
				throw new SessionTooLargeError(size, maxLength);
			}
		}
		if (hasNulCharacter(json)) {
			throw new InvalidSessionError('The session holds a \\u0000 character, which PostgreSQL cannot store in jsonb');
		}
		return json;
	}
}

function subjectParameter(subject: unknown): string {
	if ((typeof subject !== 'string' || subject === '') && (typeof subject !== 'number' || !Number.isFinite(subject))) {
		invalid('subject', 'a non-empty string or a number', subject);
	}
	return String(subject);
}

function assertKey(key: unknown): asserts key is string {
	if (typeof key !== 'string' || key === '') {
		invalid('key', 'a non-empty string', key);
	}
}

function isSessionData(value: unknown): value is SessionData {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStoredRow(row: unknown): row is StoredRow {
	return typeof row === 'object' && row !== null
		&& typeof Reflect.get(row, 'key') === 'string'
		&& isSessionData(Reflect.get(row, 'data'))
		&& Reflect.get(row, 'expiresOn') instanceof Date;
}

// JSON.stringify writes U+0000 as the escape \u0000; an escaped backslash before "u0000" is not one.
const nulEscape = /(?<!\\)(?:\\\\)*\\u0000/;

function hasNulCharacter(json: string): boolean {
	return json.includes('\\u0000') && nulEscape.test(json);
}
