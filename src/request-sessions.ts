import { debug } from './debug.js';
import { SessionEndedError } from './errors.js';
import { fieldsOf, type EncodedSession, type SessionData, type StoredRow } from './session-codec.js';

/** How `set` writes a session. */
export type WriteDecision =
	/** Nothing to write (see `reason`). */
	| { readonly kind: 'skip'; readonly reason: 'fresh' | 'ended' }
	/**
	 * A session this request loaded or created: applied to its row only while that is live. With
	 * `replace: false` only the top-level fields this request changed are written, and removed ones
	 * deleted; concurrent requests' changes to other fields stay.
	 */
	| {
		readonly kind: 'updateLive';
		readonly replace: boolean;
		/** The fields to write, as a JSON object (of plain JSON: `set` encrypts them with `encryptionKeys`). */
		readonly patch: string;
		/** The names of the fields in `patch`. */
		readonly written: readonly string[];
		/** The fields to delete, as a JSON array of names. */
		readonly removed: string;
		readonly writeSubject: boolean;
		/**
		 * The stored expiry stays (with the stored `_expire`): it is within `touchAfter` of the new
		 * one. The row then changes no indexed column, and PostgreSQL can update it in place (HOT).
		 */
		readonly keepExpiry: boolean;
	}
	/**
	 * A key this request knows nothing of: insert it, or replace its row. `fresh`: koa-session made
	 * the key in this request (a new session, or `regenerate()`), so it is expected to be new.
	 */
	| { readonly kind: 'upsert'; readonly fresh: boolean };

/** What a request knows of one session key. */
interface Known {
	/** `ended`: deleted (by this request or, as it found out, by something else) or expired. */
	state: 'live' | 'ended';
	/** The expiry of the stored row, as loaded or last written. */
	expiresOn: Date;
	/**
	 * Each top-level field's JSON as loaded or last written by this request: what the next save is
	 * compared with. Taken from `loadedJson` only when a save needs it, so a request that only
	 * reads pays nothing for it.
	 */
	fields: ReadonlyMap<string, string> | undefined;
	/** The stored JSON text as loaded, until `fields` is taken from it. */
	loadedJson?: string;
	/** The subject column as loaded or last written (`undefined`: the store keeps none). */
	subject: string | null | undefined;
	/**
	 * With `encryptionKeys`: the row holds ciphertext of an older secret, or is plain. Its next
	 * save writes every field, encrypted with the newest secret, even within `touchAfter`.
	 */
	reencrypt: boolean;
}

/** What a request knows of its sessions. */
interface RequestKnowledge {
	readonly sessions: Map<string, Known>;
	/** A session this request had was ended by something else: it must not sign anyone in again. */
	endedElsewhere: boolean;
}

// koa-session's own fields: written together with the expiry column, as one unit.
const koaSessionFields = new Set(['_expire', '_maxAge', '_session']);

/**
 * What each request knows about its sessions: which keys it loaded or created, what it last read
 * or wrote of each, and which ended. From that it decides how a save is written:
 *
 * - a session this request loaded or created is updated only while its row is live, and only in
 *   the fields this request changed (unless `fieldLevelWrites` is off);
 * - once the request has seen one of its sessions ended by something else (a logout in another
 *   tab, `destroyAll` elsewhere, expiry, cleanup), no later save of it writes anything, and no new
 *   key of it is created (`regenerate()` rejects with `SessionEndedError`);
 * - a request that ended its own session (koa-session's `destroy`, or `destroyAll`/`destroySession`
 *   given its `ctx`) may start a new one.
 *
 * Requests are told apart by their Koa `ctx`, which koa-session passes to the store; a call
 * without `ctx` has no knowledge and writes what it is given.
 */
export class RequestSessions {
	readonly #touchAfter: number;
	readonly #fieldLevelWrites: boolean;
	readonly #byRequest = new WeakMap<object, RequestKnowledge>();

	constructor({ touchAfter, fieldLevelWrites }: { touchAfter: number; fieldLevelWrites: boolean }) {
		this.#touchAfter = touchAfter;
		this.#fieldLevelWrites = fieldLevelWrites;
	}

	/**
	 * The request read `row` under `key`.
	 * @param decrypted With `encryptionKeys`: the plain JSON of each field, and whether the row
	 * needs re-encrypting; saves are compared with these, never with the ciphertext.
	 */
	loaded(ctx: object | undefined, key: string, row: StoredRow, decrypted?: { fields: ReadonlyMap<string, string>; reencrypt: boolean }): void {
		if (ctx === undefined) {
			return;
		}
		this.#of(ctx).sessions.set(key, decrypted === undefined
			? { state: 'live', expiresOn: row.expiresOn, fields: undefined, loadedJson: row.json, subject: row.subject, reencrypt: false }
			: { state: 'live', expiresOn: row.expiresOn, fields: decrypted.fields, subject: row.subject, reencrypt: decrypted.reencrypt });
	}

	/**
	 * How to write a save of `key`. `changed` is koa-session's flag: `true` when the app changed the
	 * data, `false` for rolling and forced saves (which may still differ from what was loaded).
	 *
	 * @throws {SessionEndedError} A new key in a request whose session was ended elsewhere.
	 */
	decide(ctx: object | undefined, key: string, session: EncodedSession, expiresOn: Date, subject: string | null | undefined, changed: boolean | undefined): WriteDecision {
		const knowledge = ctx === undefined ? undefined : this.#byRequest.get(ctx);
		const known = knowledge?.sessions.get(key);
		if (known === undefined) {
			if (knowledge?.endedElsewhere === true) {
				debug('new key refused: this request\'s session was ended elsewhere');
				throw new SessionEndedError();
			}
			// With `ctx`, koa-session asks for a key it did not load only when it made that key.
			return { kind: 'upsert', fresh: ctx !== undefined };
		}
		if (known.state === 'ended') {
			debug('save not written: the session ended, and is not recreated');
			return { kind: 'skip', reason: 'ended' };
		}
		const writeSubject = subject !== known.subject;
		known.fields ??= fieldsOf(JSON.parse(known.loadedJson ?? '{}') as SessionData);
		const before = known.fields;
		const changedNames = [...session.fields].filter(([name, json]) => before.get(name) !== json).map(([name]) => name);
		const removed = [...before.keys()].filter((name) => !session.fields.has(name));
		const onlyExpiry = !writeSubject && removed.length === 0 && changedNames.every((name) => name === '_expire');
		if (changed !== true && onlyExpiry && !known.reencrypt && this.#isFreshTouch(known, expiresOn)) {
			debug('save skipped: unchanged, and the stored expiry is within touchAfter');
			return { kind: 'skip', reason: 'fresh' };
		}
		if (!this.#fieldLevelWrites) {
			return { kind: 'updateLive', replace: true, patch: session.json, written: [...session.fields.keys()], removed: '[]', writeSubject: true, keepExpiry: false };
		}
		// Re-encrypting writes every field, still as a patch: fields another request added
		// meanwhile stay (they are under the newest secret, or the next read flags them again).
		if (known.reencrypt) {
			debug('save writes every field: the session was under an older encryption secret, or plain');
		}
		// koa-session's fields travel together: when one of them changes, all are written, and the
		// expiry column with them. A save that moves only the expiry (`_expire`), by less than the
		// window, keeps the stored one (see `#isFreshTouch`): the indexed expiry column stays as it
		// is, and so can the row's page (a HOT update).
		const koaChanged = [...changedNames, ...removed].filter((name) => koaSessionFields.has(name));
		const keepExpiry = !known.reencrypt && koaChanged.every((name) => name === '_expire' && before.has(name) && session.fields.has(name))
			&& this.#isFreshTouch(known, expiresOn);
		const written = new Set(known.reencrypt ? session.fields.keys() : changedNames.filter((name) => !keepExpiry || name !== '_expire'));
		if (!keepExpiry && koaChanged.length > 0) {
			for (const name of koaSessionFields) {
				if (session.fields.has(name)) {
					written.add(name);
				}
			}
		}
		if (keepExpiry && written.size === 0 && removed.length === 0 && !writeSubject) {
			// koa-session saw a change (a field's keys reordered, say) that leaves every field's JSON as stored.
			debug('save skipped: no field differs, and the stored expiry is within touchAfter');
			return { kind: 'skip', reason: 'fresh' };
		}
		const patch = [...written].map((name) => `${JSON.stringify(name)}:${session.fields.get(name) ?? 'null'}`);
		return { kind: 'updateLive', replace: false, patch: `{${patch.join(',')}}`, written: [...written], removed: JSON.stringify(removed), writeSubject, keepExpiry };
	}

	/**
	 * A write of `key` ran. `written: false` after an `updateLive` means the row was no longer live:
	 * the session ended while the request ran.
	 */
	wrote(ctx: object | undefined, key: string, decision: Exclude<WriteDecision, { kind: 'skip' }>, written: boolean, session: EncodedSession, expiresOn: Date, subject: string | null | undefined): void {
		if (ctx === undefined) {
			return;
		}
		const knowledge = this.#of(ctx);
		const known = knowledge.sessions.get(key);
		if (decision.kind === 'updateLive' && !written) {
			debug('save not written: the session ended while the request ran, and is not recreated');
			knowledge.endedElsewhere = true;
			if (known !== undefined) {
				known.state = 'ended';
			}
			return;
		}
		// From here on this request updates the row it wrote, and never recreates it. A kept expiry
		// is still the stored one, with the stored `_expire`.
		let fields = session.fields;
		if (decision.kind === 'updateLive' && decision.keepExpiry && known !== undefined) {
			const storedExpire = known.fields?.get('_expire');
			if (storedExpire !== undefined && fields.has('_expire')) {
				fields = new Map(fields).set('_expire', storedExpire);
			}
			expiresOn = known.expiresOn;
		}
		knowledge.sessions.set(key, { state: 'live', expiresOn, fields, subject, reencrypt: false });
	}

	/**
	 * The request deleted the row of `key` (koa-session's `destroy`); `existed` tells whether the
	 * row was there. A session it knew as live that was already gone was ended by something else.
	 */
	destroyed(ctx: object | undefined, key: string, existed: boolean): void {
		const known = ctx === undefined ? undefined : this.#byRequest.get(ctx)?.sessions.get(key);
		if (ctx === undefined || known === undefined) {
			return;
		}
		if (known.state === 'live' && !existed) {
			this.#of(ctx).endedElsewhere = true;
		}
		known.state = 'ended';
	}

	/** The request itself ended the sessions of these keys (`destroyAll`/`destroySession` given its `ctx`). */
	endedByRequest(ctx: object | undefined, keys: Iterable<string>): void {
		const sessions = ctx === undefined ? undefined : this.#byRequest.get(ctx)?.sessions;
		for (const key of keys) {
			const known = sessions?.get(key);
			if (known !== undefined) {
				known.state = 'ended';
			}
		}
	}

	/** The keys of the sessions the request loaded or created and that are still live as far as it knows. */
	liveKeysOf(ctx: object | undefined): string[] {
		const sessions = ctx === undefined ? undefined : this.#byRequest.get(ctx)?.sessions;
		return sessions === undefined ? [] : [...sessions].filter(([, known]) => known.state === 'live').map(([key]) => key);
	}

	#of(ctx: object): RequestKnowledge {
		let knowledge = this.#byRequest.get(ctx);
		if (knowledge === undefined) {
			knowledge = { sessions: new Map(), endedElsewhere: false };
			this.#byRequest.set(ctx, knowledge);
		}
		return knowledge;
	}

	// Whether the stored expiry is recent enough to stay (touchAfter): a save that changes nothing
	// else is then skipped, and one that changes fields keeps the stored expiry. Only a later
	// expiry may stay behind: one that moves earlier shortens the session. The window is never
	// more than a quarter of the session's lifetime, so that a session shorter than touchAfter
	// still lives as long as it is used.
	#isFreshTouch(known: Known, expiresOn: Date): boolean {
		const window = Math.min(this.#touchAfter, (expiresOn.getTime() - Date.now()) / 4);
		const extension = expiresOn.getTime() - known.expiresOn.getTime();
		return extension >= 0 && extension < window;
	}
}
