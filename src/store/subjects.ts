import type { StatementRunner } from '../driver/driver.js';
import { digestKey } from '../codec/key-digest.js';
import { defaultListLimit } from '../base/defaults.js';
import { integerAtLeast, invalid, isRecord } from '../base/validate.js';
import type { RequestSessions } from './request-sessions.js';
import { subjectArgument } from '../codec/session-codec.js';
import type { SubjectStatements } from '../sql/statements.js';

/** One of a subject's sessions, as `list()` shows it. */
export interface ListedSession {
	/** The row's id: what `destroySession()` takes. Not secret, and useless to sign in with. */
	readonly id: string;
	readonly createdOn: Date;
	/** When the session was last written. */
	readonly modifiedOn: Date;
	readonly expiresOn: Date;
	/** Whether this is the session of the `ctx` given to `list()`. */
	readonly current: boolean;
}

/** @deprecated Renamed {@link ListedSession}: one session of a {@link SessionList}. */
export type SessionListing = ListedSession;

/**
 * What `list()` gives: the sessions, most recently written first, and whether the subject has
 * more than were listed.
 */
export type SessionList = ListedSession[] & {
	/** `true` when the subject has more live sessions than `limit`: list with a larger one to see them. */
	readonly hasMore: boolean;
};

/**
 * The methods on a subject's sessions (`destroyAll`, `list`, `destroySession`), for stores with
 * a `subject` option. Each is one statement on the indexed `subject` column.
 */
export class SubjectSessions {
	readonly #run: StatementRunner;
	readonly #statements: SubjectStatements | undefined;
	readonly #requests: RequestSessions;

	/** @param statements `undefined` when the store has no `subject` option: every method then throws. */
	constructor(run: StatementRunner, statements: SubjectStatements | undefined, requests: RequestSessions) {
		this.#run = run;
		this.#statements = statements;
		this.#requests = requests;
	}

	/** See `PgStore.destroyAll`. */
	async destroyAll(subject: string | number, options: { except?: object; ctx?: object } = {}): Promise<number> {
		const statements = this.#available();
		const keep = this.#requests.liveKeysOf(options.except).map(digestKey);
		const rows = await this.#run(statements.deleteAll({ subject: subjectArgument(subject), keep }), 'destroyAll');
		this.#endedBy(options.ctx, rows);
		return rows.length;
	}

	/** See `PgStore.list`. */
	async list(subject: string | number, options: { ctx?: object; limit?: number } = {}): Promise<SessionList> {
		const statements = this.#available();
		const limit = integerAtLeast('limit', options.limit, 1, defaultListLimit);
		// One row more than asked tells whether there are more.
		const rows = await this.#run(statements.list({ subject: subjectArgument(subject), now: new Date(), limit: limit + 1 }), 'list');
		const current = new Set(this.#requests.liveKeysOf(options.ctx).map(digestKey));
		const sessions = rows.slice(0, limit).filter(isRecord).map((row) => ({
			id: String(row['id']),
			createdOn: new Date(Number(row['createdOn'])),
			modifiedOn: new Date(Number(row['modifiedOn'])),
			expiresOn: new Date(Number(row['expiresOn'])),
			current: current.has(String(row['key'])),
		}));
		// Not enumerable: JSON (a devices API's `ctx.body = list`) and deep equality see the array only.
		return Object.defineProperty(sessions, 'hasMore', { value: rows.length > limit, enumerable: false }) as SessionList;
	}

	/** See `PgStore.destroySession`. */
	async destroySession(subject: string | number, id: string | bigint, options: { ctx?: object } = {}): Promise<boolean> {
		const statements = this.#available();
		if ((typeof id !== 'string' || !/^\d{1,19}$/.test(id)) && typeof id !== 'bigint') {
			invalid('id', 'a session id from list() (a string of digits)', id);
		}
		const rows = await this.#run(statements.deleteOne({ subject: subjectArgument(subject), id: String(id) }), 'destroySession');
		this.#endedBy(options.ctx, rows);
		return rows.length > 0;
	}

	// The request `ctx` ended these rows itself: it may start a new session afterwards.
	#endedBy(ctx: object | undefined, rows: readonly unknown[]): void {
		if (ctx === undefined || rows.length === 0) {
			return;
		}
		const deleted = new Set(rows.filter(isRecord).map((row) => row['key']));
		this.#requests.endedByRequest(ctx, this.#requests.liveKeysOf(ctx).filter((key) => deleted.has(digestKey(key))));
	}

	#available(): SubjectStatements {
		if (this.#statements === undefined) {
			throw new TypeError('Expected the store to have a `subject` option: sessions are stored without a subject');
		}
		return this.#statements;
	}
}
