// How a save (koa-session's `set`) is written: a pure decision over what the request knows of
// the session and what the save holds. No database, no clock of its own: every input is given,
// so each row of the table below has a unit test (test/unit/save-decision.test.ts).
//
// The rows, first match wins:
//
// | rule             | when                                                                   | writes                                            |
// | ---------------- | ---------------------------------------------------------------------- | ------------------------------------------------- |
// | refuse-new-key   | key not known to the request, whose session ended elsewhere            | nothing: `SessionEndedError`                      |
// | move             | key not known, the request is regenerating a live session it knows     | the whole session, moving that row to this key    |
// |                  | (koa-session's `destroy` of it came just before)                       | while it is live, else `SessionEndedError`        |
// | insert           | key not known, the call has a request (koa-session made the key)       | the whole session, as a new row                   |
// | upsert           | key not known, no request (a call without `ctx`)                       | the whole session, replacing any row of the key   |
// | ended            | key known as ended (deleted, expired, signed out)                      | nothing: an ended session is never recreated      |
// | touch            | not flagged changed, only `_expire` moved, within the touch window     | nothing: the stored expiry is recent enough       |
// | whole            | `fieldLevelWrites: false`                                              | the whole session over the live row               |
// | reencrypt        | the row is under an older secret, or plain                             | as `fields`, and every other field re-sealed      |
// |                  |                                                                        | where it is still stored as loaded                |
// | keep-expiry-noop | only `_expire` of koa-session's fields moved, within the window, and   | nothing: koa-session saw a change no field shows  |
// |                  | no field, removal or subject differs                                   |                                                   |
// | keep-expiry      | only `_expire` of koa-session's fields moved, within the window        | the changed fields; stored expiry and `_expire`   |
// | fields           | otherwise                                                              | the changed and removed fields (all of koa's when |
// |                  |                                                                        | one of them changed), the expiry                  |
//
// "Within the touch window": the new expiry is later than the stored one by less than
// `touchAfter`, capped at a quarter of the session's lifetime as the app configured it
// (koa-session's `_maxAge`, not the 10 s longer `maxAge` it passes the store), so that a session
// shorter than `touchAfter` still lives as long as it is used. An expiry that moves earlier is
// never kept: it shortens the session.
import { koaSessionFields } from '../codec/koa-fields.js';

/** What a request knows of a live session it loaded or wrote. */
export interface KnownSession {
	/** Each top-level field's JSON (plain, never ciphertext) as loaded or last written. */
	readonly fields: ReadonlyMap<string, string>;
	/** The stored expiry, in ms since the epoch. */
	readonly expiresOn: number;
	/** The stored subject (`undefined`: the store keeps none). */
	readonly subject: string | null | undefined;
	/** With `encryptionKeys`: the row is under an older secret, or plain. */
	readonly reencrypt: boolean;
}

/** Everything a save's decision depends on. */
export interface SaveInput {
	/** What the request knows of the key: `undefined` for a key it never loaded nor wrote. */
	readonly known: KnownSession | 'ended' | undefined;
	/** The save comes with a request (`ctx`): a key it does not know was made by koa-session in it. */
	readonly inRequest: boolean;
	/** A session this request had was ended by something else while it ran. */
	readonly endedElsewhere: boolean;
	/**
	 * The key of a live session the request is regenerating: koa-session's `destroy` of it was
	 * deferred, and a save of a key the request does not know moves that session's row.
	 */
	readonly regenerating: string | undefined;
	/** The save's fields, each as JSON. */
	readonly fields: ReadonlyMap<string, string>;
	/**
	 * The save's fields too large to be encoded (`encodeSession`): not in `fields`, and changed
	 * whatever the request knew of them.
	 */
	readonly tooLarge: ReadonlySet<string>;
	/** The save's expiry, in ms since the epoch. */
	readonly expiresOn: number;
	/** The session's lifetime as the app configured it, in ms. */
	readonly lifetime: number;
	readonly subject: string | null | undefined;
	/** koa-session's `changed`: `true` when the app changed the data; `false` for rolling and forced saves. */
	readonly changed: boolean | undefined;
	/** The time of the save, in ms since the epoch. */
	readonly now: number;
	readonly touchAfter: number;
	readonly fieldLevelWrites: boolean;
}

/** The name of the table row that decided. */
export type SaveRule = SaveDecision['rule'];

/** What to write for one save. */
export type SaveDecision =
	| { readonly rule: 'refuse-new-key' | 'ended' | 'touch' | 'keep-expiry-noop'; readonly write: undefined }
	| { readonly rule: 'insert' | 'upsert'; readonly write: WholeSave }
	| { readonly rule: 'move'; readonly write: MoveSave }
	| { readonly rule: 'whole' | 'reencrypt' | 'keep-expiry' | 'fields'; readonly write: LiveSave };

/**
 * `regenerate()` of a live session: the whole session (the request's view, as for a new key)
 * replaces the row of `from` and moves it to the saved key, only while that row is live.
 */
export interface MoveSave {
	readonly kind: 'move';
	readonly from: string;
}

/** A whole session under a key the request does not know: a new row, or one that replaces the key's. */
export interface WholeSave {
	readonly kind: 'insert' | 'upsert';
}

/** A save applied to the session's row only while that row is live. */
export interface LiveSave {
	readonly kind: 'updateLive';
	/** `true`: the whole session replaces the stored one; `false`: only `written` and `removed` change. */
	readonly replace: boolean;
	/** The fields to write (all of them with `replace`). */
	readonly written: readonly string[];
	/** The fields to delete. */
	readonly removed: readonly string[];
	/** Fields the save did not change, re-sealed and written only where still stored as loaded (`reencrypt`). */
	readonly resealed: readonly string[];
	/** Whether the subject column is written. */
	readonly writeSubject: boolean;
	/**
	 * The stored expiry stays (with the stored `_expire`): no indexed column changes, and
	 * PostgreSQL can update the row in place (HOT).
	 */
	readonly keepExpiry: boolean;
}

/** Decides how a save is written; see the table at the top of this file. */
export function decideSave(input: SaveInput): SaveDecision {
	const { known } = input;
	if (known === undefined) {
		if (input.endedElsewhere) {
			return { rule: 'refuse-new-key', write: undefined };
		}
		if (input.regenerating !== undefined) {
			return { rule: 'move', write: { kind: 'move', from: input.regenerating } };
		}
		return input.inRequest ? { rule: 'insert', write: { kind: 'insert' } } : { rule: 'upsert', write: { kind: 'upsert' } };
	}
	if (known === 'ended') {
		return { rule: 'ended', write: undefined };
	}
	const before = known.fields;
	const after = input.fields;
	const { tooLarge } = input;
	const writeSubject = input.subject !== known.subject;
	const changedNames = [...after].filter(([name, json]) => before.get(name) !== json).map(([name]) => name).concat(...tooLarge);
	const removed = [...before.keys()].filter((name) => !after.has(name) && !tooLarge.has(name));
	const withinWindow = isWithinTouchWindow(known.expiresOn, input.expiresOn, input.lifetime, input.touchAfter);
	const onlyExpiryMoved = !writeSubject && removed.length === 0 && changedNames.every((name) => name === '_expire');
	if (input.changed !== true && onlyExpiryMoved && !known.reencrypt && withinWindow) {
		return { rule: 'touch', write: undefined };
	}
	if (!input.fieldLevelWrites) {
		return { rule: 'whole', write: { kind: 'updateLive', replace: true, written: [...after.keys(), ...tooLarge], removed: [], resealed: [], writeSubject: true, keepExpiry: false } };
	}
	const koaChanged = [...changedNames, ...removed].filter((name) => koaSessionFields.has(name));
	const onlyExpireOfKoa = koaChanged.every((name) => name === '_expire' && before.has(name) && after.has(name));
	if (onlyExpireOfKoa && withinWindow && !known.reencrypt) {
		const written = changedNames.filter((name) => name !== '_expire');
		if (written.length === 0 && removed.length === 0 && !writeSubject) {
			// koa-session saw a change (a field's keys reordered, say) that leaves every field's JSON as stored.
			return { rule: 'keep-expiry-noop', write: undefined };
		}
		return { rule: 'keep-expiry', write: { kind: 'updateLive', replace: false, written, removed, resealed: [], writeSubject, keepExpiry: true } };
	}
	// koa-session's fields travel together: when one of them changes, all are written.
	const written = new Set(changedNames);
	if (koaChanged.length > 0) {
		for (const name of koaSessionFields) {
			if (after.has(name)) {
				written.add(name);
			}
		}
	}
	if (known.reencrypt) {
		// The fields this save did not change are re-sealed too, but only where the stored value is
		// still the one loaded: rewriting the request's old view of them would undo another
		// request's change made meanwhile. koa-session's fields are never encrypted.
		const resealed = [...after.keys()].filter((name) => !written.has(name) && !koaSessionFields.has(name));
		return { rule: 'reencrypt', write: { kind: 'updateLive', replace: false, written: [...written], removed, resealed, writeSubject, keepExpiry: false } };
	}
	return { rule: 'fields', write: { kind: 'updateLive', replace: false, written: [...written], removed, resealed: [], writeSubject, keepExpiry: false } };
}

/**
 * Whether a save's expiry is close enough to the stored one to keep the stored one: later, by
 * less than `touchAfter`, and by less than a quarter of the session's `lifetime`.
 */
export function isWithinTouchWindow(storedExpiresOn: number, expiresOn: number, lifetime: number, touchAfter: number): boolean {
	const window = Math.min(touchAfter, lifetime / 4);
	const extension = expiresOn - storedExpiresOn;
	return extension >= 0 && extension < window;
}
