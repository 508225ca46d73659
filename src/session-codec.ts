import { InvalidSessionError, SessionTooLargeError } from './errors.js';
import { invalid, isRecord } from './invalid.js';

/** A session as koa-session hands it to a store: its JSON, with `_expire` and `_maxAge`. */
export type SessionData = Record<string, unknown>;

/** A live row as the read statement returns it. */
export interface StoredRow {
	readonly key: string;
	readonly data: SessionData;
	readonly expiresOn: Date;
}

/**
 * Turns a session into the JSON that is stored, checking first what PostgreSQL would reject, so
 * a rejected save leaves the stored session as it was.
 *
 * @param maxLength Largest JSON accepted, in UTF-8 bytes; `0` for no limit.
 * @throws {InvalidSessionError} Not a plain object, not serializable, or holding `\u0000`.
 * @throws {SessionTooLargeError} Longer than `maxLength`.
 */
export function serializeSession(session: unknown, maxLength: number): string {
	if (!isRecord(session)) {
		throw new InvalidSessionError(`Expected the session to be a plain object, got ${session === null ? 'null' : Array.isArray(session) ? 'an array' : typeof session}`);
	}
	let json: string;
	try {
		json = JSON.stringify(session);
	} catch (error) {
		throw new InvalidSessionError('The session cannot be serialized as JSON', { cause: error });
	}
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

/** The row as the read statement gave it, or `undefined` when it has another shape. */
export function storedRow(row: unknown): StoredRow | undefined {
	return isRecord(row) && typeof row['key'] === 'string' && isRecord(row['data']) && row['expiresOn'] instanceof Date
		? { key: row['key'], data: row['data'], expiresOn: row['expiresOn'] }
		: undefined;
}

/**
 * The subject stored with a session: what the `subject` option returns for it, as text.
 * @returns `undefined` when the store keeps no subject, `null` when the session has none.
 */
export function subjectOf(subject: ((session: SessionData) => unknown) | undefined, session: SessionData): string | null | undefined {
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

/** A subject as the subject methods take it (`destroyAll(subject)`…), as text. */
export function subjectArgument(subject: unknown): string {
	if ((typeof subject !== 'string' || subject === '') && (typeof subject !== 'number' || !Number.isFinite(subject))) {
		invalid('subject', 'a non-empty string or a number', subject);
	}
	return String(subject);
}

// JSON.stringify writes U+0000 as the escape \u0000; an escaped backslash before "u0000" is not one.
const nulEscape = /(?<!\\)(?:\\\\)*\\u0000/;

function hasNulCharacter(json: string): boolean {
	return json.includes('\\u0000') && nulEscape.test(json);
}
