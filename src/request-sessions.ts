import { isDeepStrictEqual } from 'node:util';
import { debug } from './debug.js';
import type { SessionData, StoredRow } from './session-codec.js';

/** How `set` writes a session. */
export type WriteDecision =
	/** Nothing to write: the data are what was loaded and the expiry is fresh enough (`touchAfter`). */
	| 'skip'
	/** A session this request loaded or created: update its row only while it is live. */
	| 'updateLive'
	/** A key this request knows nothing of: insert it, or replace its row. */
	| 'upsert';

/** What a request remembers of one of its sessions. */
interface Known {
	readonly expiresOn: Date;
	/** A copy of the stored data (the app may change the object it was given), kept for `touchAfter`. */
	readonly data?: SessionData;
}

/**
 * What each request knows about its sessions: which keys it loaded or created, and their stored
 * expiry (and data, for `touchAfter`). From that it decides how a save is written, so that a
 * session that ended while the request ran (a logout in another tab, expiry, cleanup) is never
 * recreated by it. Requests are told apart by their Koa `ctx`, which koa-session passes to the
 * store; a call without `ctx` has no knowledge and writes what it is given.
 */
export class RequestSessions {
	readonly #touchAfter: number;
	readonly #byRequest = new WeakMap<object, Map<string, Known>>();

	/** @param touchAfter The store's `touchAfter`: a copy of the data is kept only when it is on. */
	constructor(touchAfter: number) {
		this.#touchAfter = touchAfter;
	}

	/** The request read `row` under `key`. */
	loaded(ctx: object | undefined, key: string, row: StoredRow): void {
		if (ctx !== undefined) {
			this.#sessionsOf(ctx).set(key, this.#known(row.expiresOn, () => structuredClone(row.data)));
		}
	}

	/**
	 * How to write a save of `key`. `changed` is koa-session's flag: `true` when the app changed
	 * the data, `false` for rolling and forced saves (which may still differ from what was loaded).
	 */
	decide(ctx: object | undefined, key: string, json: string, expiresOn: Date, changed: boolean | undefined): WriteDecision {
		const known = ctx === undefined ? undefined : this.#byRequest.get(ctx)?.get(key);
		if (known === undefined) {
			return 'upsert';
		}
		if (changed !== true && this.#isFreshTouch(known, json, expiresOn)) {
			debug('save skipped: unchanged, and the stored expiry is within touchAfter');
			return 'skip';
		}
		return 'updateLive';
	}

	/**
	 * The write `decision` ran; `touched` tells whether it found its row. An `updateLive` that
	 * found none means the session ended while the request ran.
	 */
	wrote(ctx: object | undefined, key: string, decision: 'updateLive' | 'upsert', touched: boolean, json: string, expiresOn: Date): void {
		if (ctx === undefined) {
			return;
		}
		const sessions = this.#sessionsOf(ctx);
		if (decision === 'updateLive' && !touched) {
			debug('save not written: the session ended while the request ran, and is not recreated');
			sessions.delete(key);
			return;
		}
		// From here on this request updates the row it wrote, and never recreates it.
		sessions.set(key, this.#known(expiresOn, () => JSON.parse(json) as SessionData));
	}

	/** The request destroyed the session of `key` itself. */
	destroyed(ctx: object | undefined, key: string): void {
		if (ctx !== undefined) {
			this.#byRequest.get(ctx)?.delete(key);
		}
	}

	/** The keys of the sessions the request loaded or created. */
	keysOf(ctx: object | undefined): string[] {
		const sessions = ctx === undefined ? undefined : this.#byRequest.get(ctx);
		return sessions === undefined ? [] : [...sessions.keys()];
	}

	#sessionsOf(ctx: object): Map<string, Known> {
		let sessions = this.#byRequest.get(ctx);
		if (sessions === undefined) {
			sessions = new Map();
			this.#byRequest.set(ctx, sessions);
		}
		return sessions;
	}

	// A private copy of the data only when touchAfter needs it to compare.
	#known(expiresOn: Date, copyOfData: () => SessionData): Known {
		return this.#touchAfter > 0 ? { expiresOn, data: copyOfData() } : { expiresOn };
	}

	// A save that changes nothing but the expiry, while the stored expiry is recent enough, is
	// skipped (touchAfter). `_expire` is the only field allowed to differ: `_maxAge` differs
	// when the app changed maxAge ("remember me"), and that must be written.
	#isFreshTouch(known: Known, json: string, expiresOn: Date): boolean {
		if (this.#touchAfter === 0 || known.data === undefined) {
			return false;
		}
		// Only a later expiry may be skipped: one that moves earlier shortens the session.
		const extension = expiresOn.getTime() - known.expiresOn.getTime();
		if (extension < 0 || extension >= this.#touchAfter) {
			return false;
		}
		const { _expire: _new, ...next } = JSON.parse(json) as SessionData;
		const { _expire: _old, ...stored } = known.data;
		return isDeepStrictEqual(next, stored);
	}
}
