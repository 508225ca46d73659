import type { StatementRunner } from '../driver/driver.js';
import { digestKey } from '../codec/key-digest.js';
import { defaultListLimit } from '../base/defaults.js';
import { sqlStateOf, sqlStates } from '../base/driver-error.js';
import { listCandidates, maxListLimit, subjectDeleteBatch } from '../base/limits.js';
import { invalid, invalidInput, isRecord, Redacted } from '../base/validate.js';
import type { RequestSessions } from './request-sessions.js';
import { subjectArgument } from '../codec/session-codec.js';
import type { SubjectStatements } from '../sql/statements.js';
import type { Statement } from '../sql/text.js';

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
 * a `subject` option. Each runs statements on the indexed `subject` column, each a short one under
 * the request bound, whatever the number of the subject's sessions.
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

	/**
	 * See `PgStore.destroyAll`. Deletes in batches, each statement under the request bound, until one
	 * deletes fewer than a batch: one DELETE of a million rows would outlast any request bound, and
	 * fail again on every retry.
	 *
	 * Not one transaction, and it need not be. A session of the subject never escapes the later
	 * batches: a session stays in its row (a regenerated one moves to its new key in the same row,
	 * keeping its subject), and each batch is a new statement that sees every row committed before
	 * it. A sign-in committed before the last batch began is ended with the others (it came before
	 * the sign-out), one committed later stays (it came after): the outcome of the two in one order
	 * or the other.
	 */
	async destroyAll(subject: string | number, options: { except?: object; ctx?: object } = {}): Promise<number> {
		const statements = this.#available();
		const batch = statements.deleteBatch({
			subject: subjectArgument(subject),
			keep: this.#requests.liveKeysOf(options.except).map(digestKey),
			limit: subjectDeleteBatch,
			watch: this.#requests.liveKeysOf(options.ctx).map(digestKey),
		});
		const ended: string[] = [];
		let total = 0;
		try {
			for (;;) {
				const { deleted, watched } = await this.#deleteBatch(batch);
				total += deleted;
				ended.push(...watched);
				if (deleted < subjectDeleteBatch) {
					return total;
				}
			}
		} finally {
			// Also when a later batch failed: the sessions of earlier ones did end.
			this.#endedBy(options.ctx, ended);
		}
	}

	// One batch of `destroyAll`. A deadlock with a save that locks the same rows in another order
	// rolled back this batch only: it runs once more, as writes do.
	async #deleteBatch(batch: Statement): Promise<{ deleted: number; watched: string[] }> {
		let row: unknown;
		try {
			[row] = await this.#run(batch, 'destroyAll');
		} catch (error) {
			const sqlState = sqlStateOf(error);
			if (sqlState !== sqlStates.deadlockDetected && sqlState !== sqlStates.serializationFailure) {
				throw error;
			}
			[row] = await this.#run(batch, 'destroyAll');
		}
		const deleted = isRecord(row) ? Number(row['deleted']) : Number.NaN;
		const watched = isRecord(row) ? row['watched'] : undefined;
		if (!Number.isSafeInteger(deleted) || typeof watched !== 'string') {
			throw new TypeError('Expected a batch of destroyAll to return `deleted` and `watched`');
		}
		return { deleted, watched: watched === '' ? [] : watched.split(',') };
	}

	/** See `PgStore.list`. */
	async list(subject: string | number, options: { ctx?: object; limit?: number } = {}): Promise<SessionList> {
		const statements = this.#available();
		const limit = listLimit(options.limit);
		// One row more than asked tells whether there are more.
		const rows = await this.#run(statements.list({ subject: subjectArgument(subject), now: new Date(), limit: limit + 1, candidates: listCandidates }), 'list');
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
		const row = rowId(id);
		const who = subjectArgument(subject);
		if (row === undefined) {
			return false;
		}
		const rows = await this.#run(statements.deleteOne({ subject: who, id: row }), 'destroySession');
		this.#endedBy(options.ctx, rows.filter(isRecord).map((deleted) => deleted['key']));
		return rows.length > 0;
	}

	// The request `ctx` ended the rows of these digests itself: it may start a new session afterwards.
	#endedBy(ctx: object | undefined, digests: Iterable<unknown>): void {
		const deleted = new Set(digests);
		if (ctx === undefined || deleted.size === 0) {
			return;
		}
		this.#requests.endedByRequest(ctx, this.#requests.liveKeysOf(ctx).filter((key) => deleted.has(digestKey(key))));
	}

	#available(): SubjectStatements {
		if (this.#statements === undefined) {
			throw new TypeError('Expected the store to have a `subject` option: sessions are stored without a subject');
		}
		return this.#statements;
	}
}

// `list()`'s `limit`: a larger one is refused rather than cut, so a caller never takes a cut list
// for the whole (and `hasMore` says when there are more).
function listLimit(limit: unknown): number {
	if (limit === undefined) {
		return defaultListLimit;
	}
	if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > maxListLimit) {
		invalid('limit', `an integer from 1 to ${maxListLimit}`, limit);
	}
	return limit;
}

/** The largest row id PostgreSQL's `bigint` holds. */
const maxRowId = 2n ** 63n - 1n;

/**
 * The row id of `destroySession`'s `id`, as decimal digits; `undefined` for one no row can have
 * (past `bigint`, or negative), which is an unknown id, not a malformed one.
 *
 * @throws {TypeError} Not a string of digits or a bigint; the message quotes nothing of it, as the
 * id usually comes from a client (a URL), and Koa answers it with 400 (`status`).
 */
function rowId(id: unknown): string | undefined {
	let value: bigint;
	if (typeof id === 'bigint') {
		value = id;
	} else if (typeof id === 'string' && /^[0-9]+$/.test(id)) {
		const digits = id.replace(/^0+(?=[0-9])/, '');
		// Longer than bigint's 19 digits: past it, whatever the digits.
		if (digits.length > 19) {
			return undefined;
		}
		value = BigInt(digits);
	} else {
		return invalidInput('id', 'a session id from list() (a string of digits)', new Redacted(typeof id === 'string' ? 'a string that is not one' : kindOf(id)));
	}
	return value < 0n || value > maxRowId ? undefined : value.toString();
}

// What a value is, in words that quote none of it.
function kindOf(value: unknown): string {
	if (value === null || value === undefined) {
		return String(value);
	}
	return Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
