import type { OpenedRow } from '../codec/row-codec.js';
import { debug } from '../base/debug.js';
import { SessionEndedError, SessionTooLargeError } from '../base/errors.js';
import { fieldsOf, type EncodedSession, type SessionData, type StoredRow } from '../codec/session-codec.js';
import type { WriteOutcome } from '../batch/write-batch.js';
import { decideSave, type LiveSave, type SaveRule, type WholeSave } from './save-decision.js';

/** What a request knows of one session key. */
interface Known {
	/** `ended`: deleted (by this request or, as it found out, by something else) or expired. */
	state: 'live' | 'ended';
	/** The expiry of the stored row, as loaded or last written, in ms since the epoch. */
	expiresOn: number;
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
	/** With `encryptionKeys`: the row must be rewritten whole on its next save. */
	reencrypt: boolean;
}

/** What a request knows of its sessions. */
interface RequestKnowledge {
	readonly sessions: Map<string, Known>;
	/** A session this request had was ended by something else: it must not sign anyone in again. */
	endedElsewhere: boolean;
}

// What NODE_DEBUG=koa-pgstore says of the decisions worth a line.
const traces: Partial<Record<SaveRule, string>> = {
	'refuse-new-key': 'new key refused: this request\'s session was ended elsewhere',
	'ended': 'save not written: the session ended, and is not recreated',
	'touch': 'save skipped: unchanged, and the stored expiry is within touchAfter',
	'keep-expiry-noop': 'save skipped: no field differs, and the stored expiry is within touchAfter',
	'reencrypt': 'save writes every field: the session was under an older encryption secret, or plain',
};

/** One save, as `set` was called. */
export interface Save {
	readonly key: string;
	readonly session: EncodedSession;
	readonly now: Date;
	readonly expiresOn: Date;
	readonly subject: string | null | undefined;
	/** koa-session's `changed` flag. */
	readonly changed: boolean | undefined;
}

/** How a save is written, and what the request learns from its outcome. */
export interface SavePlan {
	/** The row of the decision table that decided (see save-decision.ts). */
	readonly rule: SaveRule;
	/** What to send; `undefined`: nothing, the save is done. */
	readonly write: WholeSave | LiveSave | undefined;
	/**
	 * Records what became of `write`: the request then knows the row as written, or as ended.
	 * @throws {SessionTooLargeError} The write was refused for its size; nothing was written.
	 */
	settle(outcome: WriteOutcome): void;
}

/**
 * What each request knows about its sessions: which keys it loaded or created, what it last read
 * or wrote of each, and which ended. From that it plans each save (`planSave`, by the table in
 * save-decision.ts):
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

	/** The request read `row` under `key`, and handed the app `opened`. */
	loaded(ctx: object | undefined, key: string, row: StoredRow, opened: Extract<OpenedRow, { kind: 'open' }>): void {
		if (ctx === undefined) {
			return;
		}
		this.#of(ctx).sessions.set(key, opened.fields === undefined
			? { state: 'live', expiresOn: row.expiresOn.getTime(), fields: undefined, loadedJson: row.json, subject: row.subject, reencrypt: opened.reencrypt }
			: { state: 'live', expiresOn: row.expiresOn.getTime(), fields: opened.fields, subject: row.subject, reencrypt: opened.reencrypt });
	}

	/**
	 * How to write a save of `key` in the request `ctx`, and how to record its outcome.
	 * @throws {SessionEndedError} A new key in a request whose session was ended elsewhere.
	 */
	planSave(ctx: object | undefined, save: Save): SavePlan {
		const knowledge = ctx === undefined ? undefined : this.#byRequest.get(ctx);
		const known = knowledge?.sessions.get(save.key);
		if (known?.state === 'live') {
			known.fields ??= fieldsOf(JSON.parse(known.loadedJson ?? '{}') as SessionData);
			delete known.loadedJson;
		}
		const decision = decideSave({
			known: known === undefined ? undefined : known.state === 'ended' ? 'ended' : { ...known, fields: known.fields ?? new Map() },
			inRequest: ctx !== undefined,
			endedElsewhere: knowledge?.endedElsewhere === true,
			fields: save.session.fields,
			expiresOn: save.expiresOn.getTime(),
			subject: save.subject,
			changed: save.changed,
			now: save.now.getTime(),
			touchAfter: this.#touchAfter,
			fieldLevelWrites: this.#fieldLevelWrites,
		});
		const trace = traces[decision.rule];
		if (trace !== undefined) {
			debug(trace);
		}
		if (decision.rule === 'refuse-new-key') {
			throw new SessionEndedError();
		}
		const { write } = decision;
		return {
			rule: decision.rule,
			write,
			settle: (outcome) => {
				if (outcome.kind === 'tooLarge') {
					throw new SessionTooLargeError(outcome.size, outcome.maxLength);
				}
				if (ctx !== undefined && write !== undefined) {
					this.#settled(ctx, save, write, outcome.kind === 'applied');
				}
			},
		};
	}

	// A write of `save` ran. An `updateLive` that found no live row means the session ended while
	// the request ran.
	#settled(ctx: object, save: Save, write: WholeSave | LiveSave, applied: boolean): void {
		const knowledge = this.#of(ctx);
		const known = knowledge.sessions.get(save.key);
		if (!applied) {
			debug('save not written: the session ended while the request ran, and is not recreated');
			knowledge.endedElsewhere = true;
			if (known !== undefined) {
				known.state = 'ended';
			}
			return;
		}
		// From here on this request updates the row it wrote, and never recreates it. A kept expiry
		// is still the stored one, with the stored `_expire`.
		let fields = save.session.fields;
		let expiresOn = save.expiresOn.getTime();
		if (write.kind === 'updateLive' && write.keepExpiry && known !== undefined) {
			const storedExpire = known.fields?.get('_expire');
			if (storedExpire !== undefined && fields.has('_expire')) {
				fields = new Map(fields).set('_expire', storedExpire);
			}
			expiresOn = known.expiresOn;
		}
		knowledge.sessions.set(save.key, { state: 'live', expiresOn, fields, subject: save.subject, reencrypt: false });
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
}
