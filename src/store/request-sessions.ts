import type { OpenedRow } from '../codec/row-codec.js';
import { debug } from '../base/debug.js';
import { SessionEndedError, SessionTooLargeError } from '../base/errors.js';
import type { NumberMeasure } from '../codec/printed-size.js';
import { fieldsOf, type EncodedSession, type FieldLimit, type SessionData, type StoredRow, type TooLargeSession } from '../codec/session-codec.js';
import type { WriteOutcome } from '../batch/write-batch.js';
import { decideSave, type LiveSave, type MoveSave, type SaveRule, type WholeSave } from './save-decision.js';

/** What a request knows of one session key. */
interface Known {
	/** `ended`: deleted (by this request or, as it found out, by something else) or expired. */
	state: 'live' | 'ended';
	/** The row's id (`undefined`: not known, for a row written by an upsert of another version). */
	id: string | undefined;
	/** The expiry of the stored row, as loaded or last written, in ms since the epoch. */
	expiresOn: number;
	/**
	 * Each top-level field's JSON as loaded or last written by this request: what the next save is
	 * compared with. Taken from `storedJson` only when a save needs it, so a request that only
	 * reads pays nothing for it.
	 */
	fields: ReadonlyMap<string, string> | undefined;
	/**
	 * PostgreSQL's text of the stored session as loaded: where `fields` of a plain row come from, and
	 * a save no larger than it is always written.
	 */
	storedJson?: string;
	/** The subject column as loaded or last written (`undefined`: the store keeps none). */
	subject: string | null | undefined;
	/** With `encryptionKeys`: the row's fields must be sealed anew on its next save. */
	reencrypt: boolean;
	/** With `reencrypt`: each field's stored JSON as loaded (ciphertext, or plain JSON). */
	stored?: ReadonlyMap<string, string> | undefined;
}

/** What a request knows of its sessions. */
interface RequestKnowledge {
	readonly sessions: Map<string, Known>;
	/** A session this request had was ended by something else: it must not sign anyone in again. */
	endedElsewhere: boolean;
	/** The key of a live session whose `destroy` was deferred: `regenerate()` moves its row. */
	regenerating: string | undefined;
}

// What NODE_DEBUG=koa-pgstore says of the decisions worth a line.
const traces: Partial<Record<SaveRule, string>> = {
	'refuse-new-key': 'new key refused: this request\'s session was ended elsewhere',
	'ended': 'save not written: the session ended, and is not recreated',
	'touch': 'save skipped: unchanged, and the stored expiry is within touchAfter',
	'keep-expiry-noop': 'save skipped: no field differs, and the stored expiry is within touchAfter',
	'reencrypt': 'save re-seals every field still stored as loaded: the session was under an older encryption secret, or plain',
	'move': 'regenerate: the session\'s row moves to the new key, if it is still live',
};

/** One save, as `set` was called. */
export interface Save {
	readonly key: string;
	/** Encoded, or with fields too large to encode: such a save writes nothing, or is refused. */
	readonly session: EncodedSession | TooLargeSession;
	readonly now: Date;
	readonly expiresOn: Date;
	readonly subject: string | null | undefined;
	/** koa-session's `changed` flag. */
	readonly changed: boolean | undefined;
	/** The session's lifetime as the app configured it, in ms (for the touch window). */
	readonly lifetime: number;
}

/** How a save is written, and what the request learns from its outcome. */
export interface SavePlan {
	/** The row of the decision table that decided (see save-decision.ts). */
	readonly rule: SaveRule;
	/** What to send; `undefined`: nothing, the save is done. */
	readonly write: WholeSave | LiveSave | MoveSave | undefined;
	/** With `write.resealed`: a JSON object of each of those fields' stored form, as the request loaded it. */
	readonly resealExpected: string | undefined;
	/** PostgreSQL's text of the session the write replaces or merges into, as loaded; `undefined` for a new key. */
	readonly storedJson: string | undefined;
	/**
	 * Records what became of `write`: the request then knows the row as written, or as ended.
	 * @throws {SessionTooLargeError} The write was refused for its size; nothing was written.
	 * @throws {SessionEndedError} A move (`regenerate()`) found the session ended: signed out,
	 * logged out in another tab, or expired while the request ran.
	 */
	settle(outcome: WriteOutcome): void;
}

/** What to do for koa-session's `destroy` of a key. */
export type DestroyPlan =
	/** Delete the key's row, and the row the request loaded under it (`id`) wherever it moved since. */
	| { readonly kind: 'delete'; readonly id: string | undefined }
	/**
	 * Nothing yet: the request is regenerating a live session it knows, and the save of the new key
	 * that koa-session sends next moves the row (atomically, so that no sign-out can land between
	 * a delete and an insert). If no save comes (`takeDeferred`), the row is deleted then.
	 */
	| { readonly kind: 'defer' };

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
		this.#of(ctx).sessions.set(key, {
			state: 'live', id: row.id, expiresOn: row.expiresOn.getTime(), fields: opened.fields, storedJson: row.json, subject: row.subject,
			reencrypt: opened.reencrypt, stored: opened.reencrypt ? opened.stored : undefined,
		});
	}

	/**
	 * Which fields of a save of `key` `encodeSession` may refuse unencoded (`undefined` for a
	 * `storedLengthLimit` of 0, no limit): those larger than the limit and than the stored session
	 * the save replaces or merges into, as `planSave` will measure it (its own row as loaded, or for
	 * a key the request does not know the one a `regenerate()` moves; none for a session this
	 * request wrote), since a save that does not grow a session is written.
	 */
	fieldLimit(ctx: object | undefined, key: string, storedLengthLimit: number, numbers: NumberMeasure): FieldLimit | undefined {
		if (storedLengthLimit === 0) {
			return undefined;
		}
		const knowledge = ctx === undefined ? undefined : this.#byRequest.get(ctx);
		const known = knowledge?.sessions.get(key);
		const replaced = known === undefined
			? knowledge?.regenerating === undefined ? undefined : knowledge.sessions.get(knowledge.regenerating)
			: known.state === 'live' ? known : undefined;
		const storedJson = replaced?.storedJson;
		return {
			above: storedJson === undefined ? storedLengthLimit : Math.max(storedLengthLimit, Buffer.byteLength(storedJson)),
			numbers,
			// Fields taken from the row's text are no larger than it; those this request wrote, or decrypted, may be.
			known: known?.state === 'live' ? known.fields : undefined,
		};
	}

	/**
	 * How to carry out koa-session's `destroy` of `key`. koa-session's `regenerate()` is `destroy`
	 * of the old key then `set` of a new one, and a sign-out that landed between the two would find
	 * neither row. So while the request's session continues (`ctx.session` is not `null`: a
	 * regenerate, not a logout), the destroy of a live session it knows is deferred, and the `set`
	 * that follows moves the row in one statement. A logout deletes at once.
	 */
	planDestroy(ctx: object | undefined, key: string): DestroyPlan {
		const knowledge = ctx === undefined ? undefined : this.#byRequest.get(ctx);
		const known = knowledge?.sessions.get(key);
		if (knowledge === undefined || known?.state !== 'live') {
			return { kind: 'delete', id: undefined };
		}
		if (knowledge.regenerating === undefined && sessionContinues(ctx)) {
			knowledge.regenerating = key;
			return { kind: 'defer' };
		}
		return { kind: 'delete', id: known.id };
	}

	/**
	 * A deferred destroy of `key` that no save followed: the plan to delete it now, or
	 * `undefined` when a save moved the row meanwhile.
	 */
	takeDeferred(ctx: object | undefined, key: string): DestroyPlan | undefined {
		const knowledge = ctx === undefined ? undefined : this.#byRequest.get(ctx);
		if (knowledge?.regenerating !== key) {
			return undefined;
		}
		knowledge.regenerating = undefined;
		return { kind: 'delete', id: knowledge.sessions.get(key)?.id };
	}

	/**
	 * How to write a save of `key` in the request `ctx`, and how to record its outcome.
	 * @throws {SessionEndedError} A new key in a request whose session was ended elsewhere.
	 */
	planSave(ctx: object | undefined, save: Save): SavePlan {
		const knowledge = ctx === undefined ? undefined : this.#byRequest.get(ctx);
		const known = knowledge?.sessions.get(save.key);
		if (known?.state === 'live') {
			known.fields ??= fieldsOf(JSON.parse(known.storedJson ?? '{}') as SessionData);
		}
		const decision = decideSave({
			known: known === undefined ? undefined : known.state === 'ended' ? 'ended' : { ...known, fields: known.fields ?? new Map() },
			inRequest: ctx !== undefined,
			endedElsewhere: knowledge?.endedElsewhere === true,
			regenerating: knowledge?.regenerating,
			fields: save.session.fields,
			tooLarge: 'tooLarge' in save.session ? new Set(save.session.tooLarge.keys()) : noNames,
			expiresOn: save.expiresOn.getTime(),
			lifetime: save.lifetime,
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
		if (write?.kind === 'move' && knowledge !== undefined) {
			// The deferred destroy is carried out by this move, whatever its outcome.
			knowledge.regenerating = undefined;
		}
		const live = known?.state === 'live' ? known : write?.kind === 'move' ? knowledge?.sessions.get(write.from) : undefined;
		const stored = known?.state === 'live' ? known.stored : undefined;
		const resealExpected = write?.kind === 'updateLive' && write.resealed.length > 0 && stored !== undefined
			? `{${write.resealed.map((name) => `${JSON.stringify(name)}:${stored.get(name) ?? 'null'}`).join(',')}}`
			: undefined;
		return {
			rule: decision.rule,
			write,
			resealExpected,
			storedJson: live?.storedJson,
			settle: (outcome) => {
				if (outcome.kind === 'tooLarge') {
					throw new SessionTooLargeError(outcome.size, outcome.maxLength);
				}
				if (ctx !== undefined && write !== undefined) {
					this.#settled(ctx, save, write, outcome);
				}
			},
		};
	}

	// A write of `save` ran. An `updateLive` or a move that found no live row means the session
	// ended while the request ran.
	#settled(ctx: object, save: Save, write: WholeSave | LiveSave | MoveSave, outcome: Exclude<WriteOutcome, { kind: 'tooLarge' }>): void {
		const knowledge = this.#of(ctx);
		const moved = write.kind === 'move' ? knowledge.sessions.get(write.from) : undefined;
		if (moved !== undefined) {
			// The old key is gone either way: moved, or ended by whatever ended the session.
			moved.state = 'ended';
		}
		const known = knowledge.sessions.get(save.key);
		if (outcome.kind === 'noLiveRow') {
			knowledge.endedElsewhere = true;
			if (known !== undefined) {
				known.state = 'ended';
			}
			if (write.kind === 'move') {
				debug('regenerate refused: the session ended while the request ran');
				throw new SessionEndedError();
			}
			debug('save not written: the session ended while the request ran, and is not recreated');
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
		const id = write.kind === 'move' ? moved?.id : write.kind === 'updateLive' ? known?.id : outcome.id;
		knowledge.sessions.set(save.key, { state: 'live', id, expiresOn, fields, subject: save.subject, reencrypt: false });
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
			knowledge = { sessions: new Map(), endedElsewhere: false, regenerating: undefined };
			this.#byRequest.set(ctx, knowledge);
		}
		return knowledge;
	}
}

const noNames: ReadonlySet<string> = new Set();

// Whether koa-session's session goes on after a `destroy` it sends: `regenerate()` keeps
// `ctx.session`, a logout (`ctx.session = null`) makes it `null`. A call whose `ctx` has no
// session at all is taken as ending it.
function sessionContinues(ctx: object | undefined): boolean {
	if (ctx === undefined || !('session' in ctx)) {
		return false;
	}
	const session: unknown = Reflect.get(ctx, 'session');
	return typeof session === 'object' && session !== null;
}
