import { InvalidSessionError } from '../base/errors.js';
import { invalid, isRecord } from '../base/validate.js';
import { koaSessionFields } from './koa-fields.js';
import { jsonSizeAtLeast, printedSizeAtLeast, type NumberMeasure } from './printed-size.js';

/** A session as koa-session hands it to a store: its JSON, with `_expire` and `_maxAge`. */
export type SessionData = Record<string, unknown>;

/** A live row as the read statement returns it. */
export interface StoredRow {
	readonly key: string;
	/** The row's id: it stays with the session when `regenerate()` moves it to a new key. */
	readonly id: string;
	/** The stored session as PostgreSQL's text of the jsonb. */
	readonly json: string;
	/** The session parsed from `json`: an object of this reader's own. */
	readonly data: SessionData;
	readonly expiresOn: Date;
	/** With the `subject` option: the subject column. */
	readonly subject?: string | null;
}

/** A session ready to be stored: its JSON, whole and field by field. */
export interface EncodedSession {
	/** The session's JSON text. */
	readonly json: string;
	/** Each top-level field's JSON, by name, in the session's order; fields JSON leaves out (undefined, functions) are absent. */
	readonly fields: ReadonlyMap<string, string>;
}

/**
 * A session with fields too large for any write of them to be accepted, left unencoded: it is
 * never stored, and what a save of it decides needs no more than which fields those are.
 */
export interface TooLargeSession {
	/** Each other field's JSON, as in `EncodedSession`. */
	readonly fields: ReadonlyMap<string, string>;
	/** Each field left unencoded, by name: the size its name and value are at least, as stored. */
	readonly tooLarge: ReadonlyMap<string, number>;
}

/**
 * Which fields `encodeSession` leaves unencoded: those whose name and value alone, measured as
 * stored, pass `above` and differ from what the request knew of them. Such a field is written by
 * any write of the save (it changed), and alone makes the save larger than `assertFits` lets
 * through; refusing it so costs about what `above` bytes of JSON cost, not what the field does
 * (a megabyte of numbers costs JSON.stringify far more than a megabyte of string; figures in
 * bench/NOTES.md).
 */
export interface FieldLimit {
	/** The stored length limit, or the size of the stored session the save replaces or merges into, whichever is larger. */
	readonly above: number;
	/** How the stored form counts numbers. */
	readonly numbers: NumberMeasure;
	/** Each field's JSON as the request knows it, when it has it: a field that may still equal it is encoded and compared. */
	readonly known: ReadonlyMap<string, string> | undefined;
}

/**
 * Turns a session into the JSON that is stored, checking first what PostgreSQL would reject, so
 * a rejected save leaves the stored session as it was and fails no other request's save.
 *
 * With `limit`, a field too large to be written (see `FieldLimit`) is measured, not encoded: what
 * it holds past the limit is not looked at, so a session that is too large is refused as such
 * even when it also holds something JSON or PostgreSQL would refuse. koa-session's own fields are
 * always encoded.
 *
 * @throws {InvalidSessionError} Not a plain object, not serializable, or holding `\u0000` or a
 * lone UTF-16 surrogate (jsonb takes neither).
 */
export function encodeSession(session: unknown): EncodedSession;
export function encodeSession(session: unknown, limit: FieldLimit | undefined): EncodedSession | TooLargeSession;
export function encodeSession(session: unknown, limit?: FieldLimit): EncodedSession | TooLargeSession {
	if (!isRecord(session)) {
		throw new InvalidSessionError(`Expected the session to be a plain object, got ${session === null ? 'null' : Array.isArray(session) ? 'an array' : typeof session}`);
	}
	const fields = new Map<string, string>();
	const members: string[] = [];
	let tooLarge: Map<string, number> | undefined;
	try {
		for (const name of Object.keys(session)) {
			const value: unknown = session[name];
			if (limit !== undefined && !koaSessionFields.has(name)) {
				const size = tooLargeSize(name, value, limit);
				if (size !== undefined) {
					(tooLarge ??= new Map()).set(name, size);
					continue;
				}
			}
			// As JSON.stringify of the whole object: a toJSON() is honoured, and what has no JSON is left out.
			const json = JSON.stringify(value) as string | undefined;
			if (json !== undefined) {
				fields.set(name, json);
				members.push(`${JSON.stringify(name)}:${json}`);
			}
		}
	} catch (error) {
		throw new InvalidSessionError('The session cannot be serialized as JSON', { cause: error });
	}
	const json = `{${members.join(',')}}`;
	if (hasEscape(json, nulEscape)) {
		throw new InvalidSessionError('The session holds a \\u0000 character, which PostgreSQL cannot store in jsonb');
	}
	if (hasEscape(json, loneSurrogateEscape)) {
		throw new InvalidSessionError('The session holds a lone UTF-16 surrogate (an ill-formed string), which PostgreSQL cannot store in jsonb');
	}
	return tooLarge === undefined ? { json, fields } : { fields, tooLarge };
}

// The size the field `name` is at least, when it is too large to be written; else `undefined`.
function tooLargeSize(name: string, value: unknown, limit: FieldLimit): number | undefined {
	const valueSize = jsonSizeAtLeast(value, limit.above, limit.numbers);
	// Its name in quotes and a colon; 0 is a value JSON may leave out, or one the walk cannot tell.
	const size = name.length + 3 + valueSize;
	if (valueSize === 0 || size <= limit.above) {
		return undefined;
	}
	// The JSON the request knew may be this very value: then the field is unchanged, and not written.
	// It is not when the value measures more than that JSON does (measured past it, if need be).
	const known = limit.known?.get(name);
	if (known === undefined) {
		return size;
	}
	const knownSize = printedSizeAtLeast(known);
	if (valueSize > knownSize) {
		return size;
	}
	const measured = jsonSizeAtLeast(value, knownSize, limit.numbers);
	return measured > knownSize ? name.length + 3 + measured : undefined;
}

// A high surrogate not followed by a low one, or a low one not after a high one.
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether `text` is well-formed UTF-16 (`String.prototype.isWellFormed`, which Node 20's TypeScript lib lacks). */
export function isWellFormed(text: string): boolean {
	return !loneSurrogate.test(text);
}

/** The JSON of each top-level field of a stored session. */
export function fieldsOf(data: SessionData): Map<string, string> {
	const fields = new Map<string, string>();
	for (const name of Object.keys(data)) {
		fields.set(name, JSON.stringify(data[name]));
	}
	return fields;
}

/** The row as the read statement gave it, or `undefined` when it has another shape. */
export function storedRow(row: unknown): StoredRow | undefined {
	if (!isRecord(row) || typeof row['key'] !== 'string' || typeof row['id'] !== 'string' || typeof row['json'] !== 'string' || typeof row['expiresOn'] !== 'number') {
		return undefined;
	}
	const data: unknown = JSON.parse(row['json']);
	if (!isRecord(data)) {
		return undefined;
	}
	const subject = row['subject'];
	const stored = { key: row['key'], id: row['id'], json: row['json'], data, expiresOn: new Date(row['expiresOn']) };
	return typeof subject === 'string' || subject === null ? { ...stored, subject } : stored;
}

/** Another reader's copy of `row`: the same row with data of its own. */
export function copyOf(row: StoredRow): StoredRow {
	return { ...row, data: JSON.parse(row.json) as SessionData };
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

// JSON.stringify writes U+0000 as the escape \u0000, and a lone surrogate (never a pair) as
// \udXXX; an escaped backslash before the letters is not an escape.
const nulEscape = { prefix: '\\u0000', pattern: /(?<!\\)(?:\\\\)*\\u0000/ };
const loneSurrogateEscape = { prefix: '\\ud', pattern: /(?<!\\)(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/ };

function hasEscape(json: string, escape: { prefix: string; pattern: RegExp }): boolean {
	return json.includes(escape.prefix) && escape.pattern.test(json);
}
