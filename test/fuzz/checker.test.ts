import test from 'ava';
import { Actor, type Loaded } from './app.js';
import { check, invariantsOf, type Invariant } from './checker.js';
import type { LogEntry, Version } from './log.js';
import type { Route } from './model.js';
import type { DestroyAllRecord, RequestRecord, Segment, Trace } from './run.js';
import { variantNamed } from './variants.js';

// The checker on hand-written logs: the outcomes the fix of issue #17 promises pass (a
// regenerate that moves its row, a logout that deletes the moved row, outcomes a, b and c of a
// sign-out), and each bug it must catch is caught. No database: the fuzzer's own runs show the
// checker on real logs (test/fuzz.test.ts).

const expiry = Date.UTC(2026, 11, 6, 13);

/** A log being written, one actor at a time, as the runner sees it. */
class Scenario {
	readonly requests: RequestRecord[] = [];
	readonly destroyAlls: DestroyAllRecord[] = [];
	readonly segments: Segment[] = [];
	readonly log: LogEntry[] = [];
	seq = 0;

	/** A request of `browser` that loaded `loaded` (a new session when undefined). */
	request(id: string, route: Route, loaded?: Partial<Loaded>, browser = 0): RequestRecord {
		const actor = new Actor(id, { route });
		actor.loaded = { isNew: loaded === undefined, sess: undefined, userId: undefined, key: undefined, ...loaded };
		const record: RequestRecord = { id, phase: 'main', browser, tab: 'A', app: 0, route, actor, startSeq: this.seq, endSeq: undefined, status: undefined, transportError: undefined };
		this.requests.push(record);
		this.segments.push({ actor: id, fromSeq: this.seq, toSeq: this.seq });
		return record;
	}

	/** `actor` writes one row version. */
	write(actor: string, op: LogEntry['op'], old: Version | undefined, written: Version | undefined): void {
		this.seq += 1;
		this.log.push({ seq: this.seq, op, old, new: written });
		this.segments.push({ actor, fromSeq: this.seq - 1, toSeq: this.seq });
	}

	/** `actor` moves without writing (a request held, then let go). */
	step(actor: string): void {
		this.segments.push({ actor, fromSeq: this.seq, toSeq: this.seq });
	}

	answer(record: RequestRecord, status: number): void {
		this.step(record.id);
		record.endSeq = this.seq;
		record.status = status;
	}

	destroyAll(id: string, user: string, deleted: readonly Version[]): void {
		const startSeq = this.seq;
		for (const row of deleted) {
			this.write(id, 'DELETE', row, undefined);
		}
		this.step(id);
		this.destroyAlls.push({ id, user, app: 0, startSeq, endSeq: this.seq, deleted: deleted.length, failure: undefined });
	}

	violations(rows: readonly Version[]): Invariant[] {
		const trace: Trace = {
			variant: variantNamed('defaults'), program: { browsers: [], steps: [], ending: 'newest-first' },
			requests: this.requests, destroyAlls: this.destroyAlls, segments: this.segments, log: this.log, rows,
			storeErrors: [], stuck: undefined, transcript: [],
		};
		return invariantsOf(check(trace, { fieldLevelWrites: true }));
	}
}

/** A row version: `sess` and fields in `data`, the subject from `userId`. */
function row(id: string, key: string, data: Record<string, unknown>, expiresOn = expiry): Version {
	const userId = data['userId'];
	return { id, key, subject: typeof userId === 'string' ? userId : null, data: { _expire: expiresOn - 10_000, _maxAge: 3_600_000, ...data }, expiresOn };
}

/** Browser 1's session r1 of u1, stored by the setup request r1 under key k1. */
function signedIn(scenario: Scenario): Version {
	const setup = scenario.request('r1', { path: 'login', user: 'u1' });
	setup.actor.minted = 'r1';
	const stored = row('1', 'k1', { sess: 'r1', userId: 'u1', a: 'r1' });
	scenario.write('r1', 'INSERT', undefined, stored);
	scenario.answer(setup, 200);
	return stored;
}

// An anonymous visit that stored field `a` under key k1: its row.
function visited(scenario: Scenario): Version {
	const visit = scenario.request('r1', { path: 'set', set: ['a'], remove: [] });
	visit.actor.minted = 'r1';
	const anonymous = row('1', 'k1', { sess: 'r1', a: 'r1' });
	scenario.write('r1', 'INSERT', undefined, anonymous);
	scenario.answer(visit, 200);
	return anonymous;
}

test('a regenerate that moves its row, then a sign-out everywhere that deletes it: nothing to report', (t) => {
	const scenario = new Scenario();
	const stored = signedIn(scenario);
	const sudo = scenario.request('r2', { path: 'sudo' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	const moved = row('1', 'k2', { sess: 'r1', userId: 'u1', a: 'r1' });
	scenario.write('r2', 'UPDATE', stored, moved);
	scenario.destroyAll('d3', 'u1', [moved]);
	scenario.answer(sudo, 200);
	t.deepEqual(scenario.violations([]), []);
});

test('a sign-out everywhere before the move makes the regenerate answer 401: nothing to report', (t) => {
	const scenario = new Scenario();
	const stored = signedIn(scenario);
	const sudo = scenario.request('r2', { path: 'sudo' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	scenario.destroyAll('d3', 'u1', [stored]);
	scenario.answer(sudo, 401);
	t.deepEqual(scenario.violations([]), []);
});

test('a sign-out everywhere between regenerate\'s delete and insert (bug 1) breaks I1', (t) => {
	const scenario = new Scenario();
	const stored = signedIn(scenario);
	const sudo = scenario.request('r2', { path: 'sudo' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	scenario.write('r2', 'DELETE', stored, undefined);
	scenario.destroyAll('d3', 'u1', []);
	const inserted = row('2', 'k2', { sess: 'r1', userId: 'u1', a: 'r1' });
	scenario.write('r2', 'INSERT', undefined, inserted);
	scenario.answer(sudo, 200);
	t.deepEqual(scenario.violations([inserted]), ['I1']);
});

test('an anonymous session that signs in while a sign-out everywhere runs stays signed in', (t) => {
	const scenario = new Scenario();
	const anonymous = visited(scenario);
	const login = scenario.request('r2', { path: 'login', user: 'u1' }, { sess: 'r1', key: 'k1' });
	login.actor.own.set('userId', 'u1');
	const moved = row('1', 'k2', { sess: 'r1', a: 'r1' });
	scenario.write('r2', 'UPDATE', anonymous, moved);
	scenario.destroyAll('d3', 'u1', []);
	const loggedIn = row('1', 'k2', { sess: 'r1', a: 'r1', userId: 'u1' });
	scenario.write('r2', 'UPDATE', moved, loggedIn);
	scenario.answer(login, 200);
	t.deepEqual(scenario.violations([loggedIn]), []);
});

test('a password reset signs in on a fresh session while the old one stays ended', (t) => {
	const scenario = new Scenario();
	const stored = signedIn(scenario);
	const reset = scenario.request('r2', { path: 'reset', user: 'u1' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	reset.actor.signedOut = true;
	reset.actor.minted = 'r2';
	scenario.write('r2', 'DELETE', stored, undefined);
	const fresh = row('2', 'k2', { sess: 'r2', userId: 'u1', a: 'r1' });
	scenario.write('r2', 'INSERT', undefined, fresh);
	scenario.answer(reset, 200);
	t.deepEqual(scenario.violations([fresh]), []);
});

test('a logout deletes the row another tab moved to a new key, whose later save answers 401: nothing to report', (t) => {
	const scenario = new Scenario();
	const stored = signedIn(scenario);
	const logout = scenario.request('r2', { path: 'logout' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	const login = scenario.request('r3', { path: 'login', user: 'u2' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	const moved = row('1', 'k3', { sess: 'r1', userId: 'u1', a: 'r1' });
	scenario.write('r3', 'UPDATE', stored, moved);
	scenario.write('r2', 'DELETE', moved, undefined);
	scenario.answer(logout, 200);
	scenario.answer(login, 401);
	t.deepEqual(scenario.violations([]), []);
});

test('a logout ends the row it loaded after another tab\'s password reset moved it under a fresh token; another row is not its own', (t) => {
	for (const deletesItsRow of [true, false]) {
		const scenario = new Scenario();
		const anonymous = visited(scenario);
		const other = scenario.request('r2', { path: 'set', set: ['b'], remove: [] }, undefined, 1);
		other.actor.minted = 'r2';
		const othersRow = row('2', 'k2', { sess: 'r2', b: 'r2' });
		scenario.write('r2', 'INSERT', undefined, othersRow);
		scenario.answer(other, 200);
		// Forgot password: the anonymous session signs in as u1 with a fresh token, moved to a new key.
		const reset = scenario.request('r3', { path: 'reset', user: 'u1' }, { sess: 'r1', key: 'k1' });
		reset.actor.signedOut = true;
		reset.actor.minted = 'r3';
		const fresh = row('1', 'k3', { sess: 'r3', userId: 'u1', a: 'r1' });
		const logout = scenario.request('r4', { path: 'logout' }, { sess: 'r1', key: 'k1' });
		scenario.write('r3', 'UPDATE', anonymous, fresh);
		scenario.answer(reset, 200);
		scenario.write('r4', 'DELETE', deletesItsRow ? fresh : othersRow, undefined);
		scenario.answer(logout, 200);
		t.deepEqual(scenario.violations(deletesItsRow ? [othersRow] : [fresh]), deletesItsRow ? [] : ['I5']);
	}
});

test('a logout while another tab regenerated into a key that stays (bug 2) breaks I2', (t) => {
	const scenario = new Scenario();
	const stored = signedIn(scenario);
	const logout = scenario.request('r2', { path: 'logout' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	const sudo = scenario.request('r3', { path: 'sudo' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	scenario.write('r3', 'DELETE', stored, undefined);
	const inserted = row('2', 'k3', { sess: 'r1', userId: 'u1', a: 'r1' });
	scenario.write('r3', 'INSERT', undefined, inserted);
	scenario.answer(sudo, 200);
	scenario.answer(logout, 200);
	t.deepEqual(scenario.violations([inserted]), ['I2']);
});

test('a save that brings back a value another save replaced breaks I3, unless the request set it itself', (t) => {
	for (const [setter, expected] of [['r1', ['I3']], ['r3', []]] as const) {
		const scenario = new Scenario();
		const stored = signedIn(scenario);
		const other = scenario.request('r2', { path: 'set', set: ['a'], remove: [] }, { sess: 'r1', userId: 'u1', key: 'k1' });
		const changed = row('1', 'k1', { sess: 'r1', userId: 'u1', a: 'r2' });
		scenario.write('r2', 'UPDATE', stored, changed);
		scenario.answer(other, 200);
		const stale = scenario.request('r3', { path: 'set', set: ['b'], remove: [] }, { sess: 'r1', userId: 'u1', key: 'k1' });
		stale.actor.own.set('a', setter === 'r3' ? 'r1' : undefined);
		const back = row('1', 'k1', { sess: 'r1', userId: 'u1', a: 'r1', b: 'r3' });
		scenario.write('r3', 'UPDATE', changed, back);
		scenario.answer(stale, 200);
		t.deepEqual(scenario.violations([back]), [...expected], `a=r1 written by a request that ${setter === 'r3' ? 'set it' : 'did not'}`);
	}
});

test('an update that moves the expiry back breaks I4, unless it changes _maxAge', (t) => {
	for (const maxAge of [3_600_000, 60_000]) {
		const scenario = new Scenario();
		const stored = signedIn(scenario);
		const save = scenario.request('r2', { path: 'set', set: ['b'], remove: [] }, { sess: 'r1', userId: 'u1', key: 'k1' });
		const earlier = { ...row('1', 'k1', { sess: 'r1', userId: 'u1', a: 'r1', b: 'r2', _maxAge: maxAge }, expiry - 5) };
		scenario.write('r2', 'UPDATE', stored, earlier);
		scenario.answer(save, 200);
		t.deepEqual(scenario.violations([earlier]), maxAge === 3_600_000 ? ['I4'] : []);
	}
});

test('a 401 that nothing explains breaks I5', (t) => {
	const scenario = new Scenario();
	signedIn(scenario);
	const sudo = scenario.request('r2', { path: 'sudo' }, { sess: 'r1', userId: 'u1', key: 'k1' });
	scenario.answer(sudo, 401);
	t.deepEqual(scenario.violations([]), ['I5']);
});
