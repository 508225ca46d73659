import { debug } from '../base/debug.js';
import { InvalidSessionError } from '../base/errors.js';
import { latestExpiry, maxSubjectBytes } from '../base/limits.js';
import type { Driver } from '../driver/driver.js';

// What PostgreSQL would refuse for one row, refused before the write joins a batch: a refusal in
// the database fails the whole coalesced statement and costs every other user's write in it a
// retry (docs/behaviour.md, "One request's data never fails another's").

/** What of a write reaches PostgreSQL as text. */
export interface SentText {
	/** A whole session's JSON (`insert`, `upsert`). */
	readonly json?: string;
	/** A merge's fields, as a JSON object (`updateLive`). */
	readonly patch?: string;
	/** The names of the fields a merge removes, as a JSON array (`updateLive`). */
	readonly removed?: string;
	/** The subject written with it; `undefined` or `null` when none is written. */
	readonly subject?: string | null | undefined;
}

/** The expiry of a session saved at `now` for `lifetime` ms: at the latest the last moment a `Date` holds. */
export function expiryAfter(now: Date, lifetime: number): Date {
	return new Date(Math.min(now.getTime() + lifetime, latestExpiry));
}

/**
 * Refuses a write PostgreSQL would refuse for its own data: a subject longer than its index takes,
 * or a character the database's encoding cannot hold.
 *
 * Synchronous (returns `undefined`) once the database's encoding is known, and for ASCII text. The
 * first write with another character reads `server_encoding` first; writes made while that read
 * runs wait for it in turn, so writes still join their batches in the order of their calls.
 *
 * @throws {InvalidSessionError} Nothing was sent.
 */
export function refuseUnstorable(driver: Driver, write: SentText): Promise<void> | undefined {
	const { subject } = write;
	// A UTF-16 unit is at most 3 bytes of UTF-8, so a short subject skips the byte count.
	if (typeof subject === 'string' && subject.length * 3 > maxSubjectBytes) {
		const bytes = Buffer.byteLength(subject);
		if (bytes > maxSubjectBytes) {
			throw new InvalidSessionError(`The session's subject is ${bytes} bytes of UTF-8, more than the ${maxSubjectBytes} the store keeps; it was not saved`);
		}
	}
	const database = databaseOf(driver);
	if (database.waiting === undefined && database.encoding !== undefined && !lacking.has(database.encoding)) {
		return undefined;
	}
	const texts = [write.json, write.patch, write.removed, subject].filter((text) => typeof text === 'string');
	// Every server encoding PostgreSQL has holds ASCII.
	const needsEncoding = texts.some((text) => nonAscii.test(text));
	if (database.waiting === undefined) {
		if (!needsEncoding) {
			return undefined;
		}
		if (database.encoding !== undefined) {
			refuseIn(database.encoding, texts);
			return undefined;
		}
	}
	// After the writes already waiting, whatever became of them.
	const read = needsEncoding ? (database.read ??= readEncoding(driver, database)) : undefined;
	const turn = (database.waiting ?? Promise.resolve()).then(async () => {
		if (read !== undefined) {
			refuseIn(await read, texts);
		}
	});
	const waiting = turn.then(() => {}, () => {});
	database.waiting = waiting;
	void waiting.then(() => {
		if (database.waiting === waiting) {
			database.waiting = undefined;
		}
	});
	return turn;
}

/** What the store knows of one database's encoding. */
interface DatabaseEncoding {
	/** `server_encoding`, once read. */
	encoding: string | undefined;
	/** The read in flight. */
	read: Promise<string> | undefined;
	/** Settles when the last write that waits (for the read, or behind one that does) may go on. */
	waiting: Promise<void> | undefined;
}

// Per driver, so per database; read once in the driver's lifetime.
const databases = new WeakMap<Driver, DatabaseEncoding>();

function databaseOf(driver: Driver): DatabaseEncoding {
	let database = databases.get(driver);
	if (database === undefined) {
		database = { encoding: undefined, read: undefined, waiting: undefined };
		databases.set(driver, database);
	}
	return database;
}

async function readEncoding(driver: Driver, database: DatabaseEncoding): Promise<string> {
	try {
		const [row] = await driver.query({ name: 'serverEncoding', text: 'SELECT pg_catalog.current_setting(\'server_encoding\'::pg_catalog.text) AS "encoding"', values: [] }, 'set');
		const encoding = typeof row === 'object' && row !== null ? Reflect.get(row, 'encoding') : undefined;
		database.encoding = typeof encoding === 'string' ? encoding.toUpperCase() : 'UTF8';
		debug('server_encoding %s: %s', database.encoding, lacking.has(database.encoding) ? 'characters it lacks are refused before batching' : 'no characters checked');
		return database.encoding;
	} finally {
		// A failed read is tried again by the next write that needs it.
		database.read = undefined;
	}
}

const nonAscii = /[^\u0000-\u007f]/;

// The characters each encoding lacks, where the store can tell. UTF8 holds every character, and
// SQL_ASCII stores bytes as they come. LATIN1 holds U+0000–U+00FF, one byte each. Any other
// encoding (LATIN2, WIN1252, EUC_JP, …) is left to PostgreSQL: its refusal (SQLSTATE 22P05)
// fails the batch, which is retried so that only the culprit fails.
const lacking: ReadonlyMap<string, RegExp> = new Map([['LATIN1', /[^\u0000-\u00ff]/]]);

function refuseIn(encoding: string, texts: readonly string[]): void {
	const lacks = lacking.get(encoding);
	if (lacks !== undefined && texts.some((text) => lacks.test(text))) {
		throw new InvalidSessionError(`The session holds a character that the database's encoding (${encoding}) cannot store; it was not saved`);
	}
}
