// The invariants the fuzzer checks, over PostgreSQL's log of row versions (log.ts) and what each
// request saw and answered (run.ts). Every session carries `sess`, the id of the request that
// started it; a login or a sudo `regenerate()` keeps it (the same session, continued), a password
// reset mints a new one (a fresh sign-in). Field values are the ids of the requests that set them.
// "After X returned" means at a log position past the watermark read once X's response (or the
// direct call) was complete; "when X began", at the one read before it was sent. "Live at the
// end" means a row the app still serves once every request answered (run.ts).
//
// I1 Sign-out holds. Once `destroyAll(u)` has returned (outside a request, or in a password reset
//    of u), no row version of user u (subject or `userId`) is written whose `sess` was u's when
//    the destroyAll began (its newest version then was u's), and none such is live at the end. A
//    session that signs in as u concurrently may stay signed in; one that was u's may not,
//    whatever `regenerate()` it was in.
// I2 Logout holds. Once a logout that loaded session `sess` = S has answered, no row version
//    carrying S is written, and none is live at the end: not under the key it loaded, nor under a
//    key another tab regenerated it into.
// I3 No save undoes another (field-level writes on; with `fieldLevelWrites: false` the last whole
//    save wins by design, and I3 is not checked). Within one key, once a field's value x was
//    replaced or removed by an UPDATE, no later UPDATE of that key brings x back, unless the
//    request writing it set x itself. (An INSERT, and an UPDATE that moves a row to a new key, is
//    `regenerate()` writing the whole session under a new key, as the docs promise; the history
//    of a key starts there.)
// I4 Expiry never moves backwards. An UPDATE of a row (same `id`) never lowers `expires_on`, nor
//    the stored `_expire`, unless it changes `_maxAge`.
// I5 The rest, which held in the 40-minute run of issue #17: no 5xx and no broken connection; a
//    401 only when something that may end the request's session ran while it ran (another actor
//    deleted or moved the row it loaded; or a sign-out of its user, or a logout or regenerate of
//    its session in another tab); every row version is written by the actor that was moving (no
//    writes from nowhere) and carries a session that actor loaded or started; a delete only ends
//    the actor's own session (by token, or the row it loaded wherever another tab moved it), or
//    its subject's; no data crosses sessions (a session only holds
//    values its own browser's requests wrote); the subject column always matches `userId`; no key
//    is written again once its row was deleted; every row opens (nothing tampered or mixed); the
//    store reports nothing to `onError`.
//
// Not here: bugs 4 (regenerate of a session that expired while the request ran), 5 (`touchAfter`
// with a short `maxAge`) and 7 (`reissueOnRotation()` after `regenerate()`) need expiry, short
// lifetimes and cookie-key rotation; targeted tests cover them. Within an iteration nothing
// expires (`maxAge` is an hour) and `app.keys` does not change.
import type { SessionData } from '../../src/codec/session-codec.js';
import { removed } from './app.js';
import type { LogEntry, Version } from './log.js';
import type { RequestRecord, Trace } from './run.js';

export type Invariant = 'I1' | 'I2' | 'I3' | 'I4' | 'I5';

export interface Violation {
	readonly invariant: Invariant;
	readonly message: string;
}

/** The fields whose history I3 follows. */
const checkedFields = ['a', 'b', 'c', 'userId'] as const;

export function check(trace: Trace, { fieldLevelWrites }: { fieldLevelWrites: boolean }): Violation[] {
	const context = new CheckContext(trace);
	return [
		...signOutsHold(context),
		...logoutsHold(context),
		...(fieldLevelWrites ? noSaveUndoesAnother(context) : []),
		...expiryNeverMovesBackwards(context),
		...theRest(context),
	];
}

/** What the invariants look up: who wrote each version, each request by id. */
class CheckContext {
	readonly trace: Trace;
	readonly requests: ReadonlyMap<string, RequestRecord>;

	constructor(trace: Trace) {
		this.trace = trace;
		this.requests = new Map(trace.requests.map((request) => [request.id, request]));
	}

	/** The actor that was moving when the log took `seq`. */
	writerOf(seq: number): string | undefined {
		return this.trace.segments.find((segment) => segment.fromSeq < seq && seq <= segment.toSeq)?.actor;
	}

	/** The browser of a request id (a `sess` token or a field's value), if it is one. */
	browserOf(id: unknown): number | undefined {
		return typeof id === 'string' ? this.requests.get(id)?.browser : undefined;
	}
}

function tokenOf(version: Version | undefined): string | undefined {
	const token = version?.data?.['sess'];
	return typeof token === 'string' ? token : undefined;
}

function isUsers(version: Version, user: string): boolean {
	return version.subject === user || version.data?.['userId'] === user;
}

function written(entry: LogEntry): Version | undefined {
	return entry.op === 'DELETE' ? undefined : entry.new;
}

function signOutsHold(context: CheckContext): Violation[] {
	const { trace } = context;
	const signOuts = [
		...trace.destroyAlls.filter((call) => call.failure === undefined).map((call) => ({ who: `${call.id} destroyAll('${call.user}')`, user: call.user, begin: call.startSeq, end: call.endSeq })),
		...trace.requests.flatMap((request) => (request.route.path === 'reset' && request.actor.signedOut && request.endSeq !== undefined
			? [{ who: `${request.id} password reset of ${request.route.user}`, user: request.route.user, begin: request.startSeq, end: request.endSeq }]
			: [])),
	];
	const violations: Violation[] = [];
	for (const signOut of signOuts) {
		// The sessions that were the user's when it began: the newest version of each token then.
		const newest = new Map<string, Version>();
		for (const entry of trace.log) {
			const version = written(entry);
			const token = tokenOf(version);
			if (entry.seq > signOut.begin) {
				break;
			}
			if (version !== undefined && token !== undefined) {
				newest.set(token, version);
			}
		}
		const signedOut = new Set([...newest].filter(([, version]) => isUsers(version, signOut.user)).map(([token]) => token));
		const reported = new Set<string>();
		for (const entry of trace.log) {
			const version = written(entry);
			const token = tokenOf(version);
			if (entry.seq <= signOut.end || version === undefined || token === undefined || reported.has(token) || !signedOut.has(token) || !isUsers(version, signOut.user)) {
				continue;
			}
			reported.add(token);
			violations.push({
				invariant: 'I1',
				message: `${context.writerOf(entry.seq) ?? 'nobody'} wrote session ${token} of ${signOut.user} (${entry.op} at seq ${entry.seq}) after ${signOut.who} returned (seq ${signOut.end}); it was ${signOut.user}'s when that began (seq ${signOut.begin})`,
			});
		}
		for (const row of trace.rows) {
			const token = tokenOf(row);
			if (token !== undefined && signedOut.has(token) && !reported.has(token) && isUsers(row, signOut.user)) {
				reported.add(token);
				violations.push({ invariant: 'I1', message: `session ${token} of ${signOut.user} is still live at the end (row ${row.id}), after ${signOut.who}` });
			}
		}
	}
	return violations;
}

function logoutsHold(context: CheckContext): Violation[] {
	const { trace } = context;
	const violations: Violation[] = [];
	for (const logout of trace.requests) {
		const token = logout.actor.loaded?.sess;
		if (logout.route.path !== 'logout' || logout.status !== 200 || logout.endSeq === undefined || logout.actor.loaded?.isNew !== false || token === undefined) {
			continue;
		}
		const end = logout.endSeq;
		const after = trace.log.find((entry) => entry.seq > end && tokenOf(written(entry)) === token);
		if (after !== undefined) {
			violations.push({
				invariant: 'I2',
				message: `${context.writerOf(after.seq) ?? 'nobody'} wrote session ${token} (${after.op} at seq ${after.seq}) after the logout ${logout.id} that loaded it answered (seq ${end})`,
			});
			continue;
		}
		const live = trace.rows.find((row) => tokenOf(row) === token);
		if (live !== undefined) {
			violations.push({ invariant: 'I2', message: `session ${token} is still live at the end (row ${live.id}), after the logout ${logout.id} that loaded it` });
		}
	}
	return violations;
}

function noSaveUndoesAnother(context: CheckContext): Violation[] {
	const violations: Violation[] = [];
	// Per key, per field: the values a version of that key replaced or removed.
	const replacedByKey = new Map<string, Map<string, Set<unknown>>>();
	for (const entry of context.trace.log) {
		const { old: before, new: after } = entry;
		if (entry.op === 'INSERT' && after !== undefined) {
			replacedByKey.set(after.key, new Map());
			continue;
		}
		if (entry.op !== 'UPDATE' || before === undefined || after === undefined) {
			continue;
		}
		if (before.key !== after.key) {
			replacedByKey.set(after.key, new Map());
			continue;
		}
		if (before.data === undefined || after.data === undefined) {
			continue;
		}
		let replaced = replacedByKey.get(after.key);
		if (replaced === undefined) {
			replaced = new Map();
			replacedByKey.set(after.key, replaced);
		}
		const writer = context.writerOf(entry.seq);
		const own = writer === undefined ? undefined : context.requests.get(writer)?.actor.own;
		for (const field of checkedFields) {
			const value = after.data[field];
			const previous = before.data[field];
			if (value !== undefined && value !== previous && replaced.get(field)?.has(value) === true && own?.get(field) !== value) {
				violations.push({
					invariant: 'I3',
					message: `${writer ?? 'nobody'} brought back ${field}=${JSON.stringify(value)} in session ${tokenOf(after) ?? '?'} (UPDATE at seq ${entry.seq}), a value an earlier save had replaced; it ${describeOwn(own, field)}`,
				});
			}
			if (previous !== undefined && previous !== value) {
				let values = replaced.get(field);
				if (values === undefined) {
					values = new Set();
					replaced.set(field, values);
				}
				values.add(previous);
			}
		}
	}
	return violations;
}

function describeOwn(own: ReadonlyMap<string, unknown> | undefined, field: string): string {
	const value = own?.get(field);
	if (value === undefined) {
		return `did not touch ${field}`;
	}
	return value === removed ? `removed ${field}` : `set ${field}=${JSON.stringify(value)}`;
}

function expiryNeverMovesBackwards(context: CheckContext): Violation[] {
	const violations: Violation[] = [];
	for (const entry of context.trace.log) {
		const { old: before, new: after } = entry;
		if (entry.op !== 'UPDATE' || before === undefined || after === undefined || before.id !== after.id) {
			continue;
		}
		if (numberField(before.data, '_maxAge') !== numberField(after.data, '_maxAge')) {
			continue;
		}
		const writer = context.writerOf(entry.seq) ?? 'nobody';
		if (after.expiresOn < before.expiresOn) {
			violations.push({ invariant: 'I4', message: `${writer} moved expires_on of session ${tokenOf(after) ?? '?'} back by ${before.expiresOn - after.expiresOn} ms (UPDATE at seq ${entry.seq})` });
		}
		const expireBefore = numberField(before.data, '_expire');
		const expireAfter = numberField(after.data, '_expire');
		if (expireBefore !== undefined && expireAfter !== undefined && expireAfter < expireBefore) {
			violations.push({ invariant: 'I4', message: `${writer} moved _expire of session ${tokenOf(after) ?? '?'} back by ${expireBefore - expireAfter} ms (UPDATE at seq ${entry.seq})` });
		}
	}
	return violations;
}

function numberField(data: SessionData | undefined, field: string): number | undefined {
	const value = data?.[field];
	return typeof value === 'number' ? value : undefined;
}

function theRest(context: CheckContext): Violation[] {
	const { trace } = context;
	const violations: Violation[] = [];
	const add = (message: string) => violations.push({ invariant: 'I5', message });
	if (trace.stuck !== undefined) {
		add(trace.stuck);
	}
	for (const error of trace.storeErrors) {
		add(`the store reported to onError: ${error}`);
	}
	for (const call of trace.destroyAlls) {
		if (call.failure !== undefined) {
			add(`${call.id} destroyAll('${call.user}') failed: ${call.failure}`);
		}
	}
	for (const request of trace.requests) {
		if (request.transportError !== undefined) {
			add(`${request.id} got no response: ${request.transportError}`);
		} else if (request.status !== undefined && request.status >= 500) {
			add(`${request.id} answered ${request.status}${request.actor.failure === undefined ? '' : `: ${request.actor.failure}`}`);
		} else if (request.status === 401 && !endedWhileItRan(context, request)) {
			add(`${request.id} answered 401, but nothing ended or moved the session it loaded while it ran`);
		} else if (request.status !== undefined && request.status !== 200 && request.status !== 401) {
			add(`${request.id} answered ${request.status}`);
		}
	}
	const retired = new Set<string>();
	for (const entry of trace.log) {
		const writer = context.writerOf(entry.seq);
		const request = writer === undefined ? undefined : context.requests.get(writer);
		const call = trace.destroyAlls.find((candidate) => candidate.id === writer);
		if (writer === undefined) {
			add(`${entry.op} at seq ${entry.seq} was written while no actor moved`);
			continue;
		}
		for (const version of [entry.old, entry.new]) {
			if (version !== undefined && version.data === undefined) {
				add(`row ${version.id} (${entry.op} at seq ${entry.seq}) does not open: tampered, mixed or under an unknown secret`);
			}
		}
		const version = written(entry);
		if (version !== undefined) {
			const token = tokenOf(version);
			if (retired.has(version.key)) {
				add(`${writer} wrote key ${version.key.slice(0, 8)}… (${entry.op} at seq ${entry.seq}) after its row was deleted`);
			}
			if (request === undefined) {
				add(`${writer}, which only deletes, wrote a version (${entry.op} at seq ${entry.seq})`);
			} else if (token === undefined || (token !== request.actor.loaded?.sess && token !== request.actor.minted)) {
				add(`${writer} wrote a version of session ${token ?? '(none)'} (${entry.op} at seq ${entry.seq}), which it neither loaded nor started`);
			}
			const browser = context.browserOf(token);
			for (const field of ['a', 'b', 'c']) {
				const from = context.browserOf(version.data?.[field]);
				if (browser !== undefined && from !== undefined && from !== browser) {
					add(`session ${token ?? '?'} of browser ${browser + 1} holds ${field}=${JSON.stringify(version.data?.[field])}, written by browser ${from + 1} (${entry.op} at seq ${entry.seq})`);
				}
			}
			const userId = version.data?.['userId'];
			const expected = typeof userId === 'string' ? userId : null;
			if (version.data !== undefined && version.subject !== expected) {
				add(`session ${token ?? '?'} has subject ${JSON.stringify(version.subject)} but userId ${JSON.stringify(userId ?? null)} (${entry.op} at seq ${entry.seq} by ${writer})`);
			}
		}
		if (entry.op === 'DELETE' && entry.old !== undefined) {
			const token = tokenOf(entry.old);
			// A logout ends the row it loaded wherever another tab's regenerate() moved it since, a
			// password reset's fresh sign-in included: only its browser's requests move that row.
			const allowed = call !== undefined
				? entry.old.subject === call.user
				: request !== undefined && ((token !== undefined && (token === request.actor.loaded?.sess || token === request.actor.minted))
					|| entry.old.id === loadedRowId(context, request)
					|| (request.route.path === 'reset' && isUsers(entry.old, request.route.user)));
			if (!allowed) {
				add(`${writer} deleted session ${token ?? '?'} (seq ${entry.seq}), which was not its own to end`);
			}
		}
		if (entry.op === 'DELETE' && entry.old !== undefined) {
			retired.add(entry.old.key);
		}
		if (entry.op === 'UPDATE' && entry.old !== undefined && entry.new !== undefined && entry.old.key !== entry.new.key) {
			retired.add(entry.old.key);
		}
	}
	return violations;
}

// Whether something that may end the session `request` loaded ran while it ran: in the log,
// another actor deleted that row or moved it to another key; or, for a store that ends sessions
// without writing their rows, a sign-out of its user, or a logout or regenerate of its session
// in another tab, moved between its first and its last step.
function endedWhileItRan(context: CheckContext, request: RequestRecord): boolean {
	const loaded = request.actor.loaded;
	if (loaded?.key === undefined || request.endSeq === undefined) {
		return false;
	}
	const rowId = loadedRowId(context, request);
	const inTheLog = context.trace.log.some((entry) => entry.seq > request.startSeq && entry.seq <= (request.endSeq ?? 0)
		&& context.writerOf(entry.seq) !== request.id
		&& entry.old !== undefined
		&& (entry.old.key === loaded.key || entry.old.id === rowId)
		&& (entry.op === 'DELETE' || entry.new?.key !== entry.old.key));
	if (inTheLog) {
		return true;
	}
	const { segments } = context.trace;
	const first = segments.findIndex((segment) => segment.actor === request.id);
	const last = segments.findLastIndex((segment) => segment.actor === request.id);
	return segments.slice(first + 1, last).some(({ actor }) => {
		const call = context.trace.destroyAlls.find((candidate) => candidate.id === actor);
		if (call !== undefined) {
			return call.user === loaded.userId;
		}
		const other = context.requests.get(actor);
		if (other === undefined || other.id === request.id) {
			return false;
		}
		if (other.route.path === 'reset' && other.route.user === loaded.userId) {
			return true;
		}
		return ['logout', 'sudo', 'login', 'reset'].includes(other.route.path) && loaded.sess !== undefined && other.actor.loaded?.sess === loaded.sess;
	});
}

// The id of the row `request` loaded: the row under the key it loaded when it began (it loads in
// its first step, before anyone else moves).
function loadedRowId(context: CheckContext, request: RequestRecord): string | undefined {
	const key = request.actor.loaded?.key;
	let rowId: string | undefined;
	for (const entry of context.trace.log) {
		if (key === undefined || entry.seq > request.startSeq) {
			break;
		}
		if (entry.new?.key === key) {
			rowId = entry.new.id;
		}
	}
	return rowId;
}

/** The invariants violated, each once, in order. */
export function invariantsOf(violations: readonly Violation[]): Invariant[] {
	return [...new Set(violations.map((violation) => violation.invariant))].sort();
}
