import type Koa from 'koa';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { PgStore, type PgStoreOptions } from '../src/index.js';
import { listCandidates, maxListLimit, subjectDeleteBatch } from '../src/base/limits.js';
import { digestKey } from '../src/codec/key-digest.js';
import { PrismaClient } from '../src/generated/prisma/client.js';
import { readSessionTable } from '../src/sql/session-table.js';
import { sessionStatements } from '../src/sql/statements.js';
import { PrismaPg } from '@prisma/adapter-pg';
import { countingClient } from './helpers/counting-client.js';
import { createDatabase, type TestDatabase } from './helpers/database.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { createStore } from './helpers/store.js';
import { hour } from './helpers/time.js';

// A subject of any size can be signed out and listed: an attacker who knows a password can give
// its victim a million sessions, and the password reset must still end them all. Each statement
// stays short under the request bound, however many sessions the subject has.

const bySubject: Pick<PgStoreOptions, 'subject'> = { subject: (session) => session['userId'] as string | undefined };

/** Adds `count` live sessions of `subject` in one statement, as an attacker's sign-ins would leave them. */
async function manySessions(database: TestDatabase, subject: string, count: number): Promise<void> {
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on, subject)
		SELECT 'many-' || n, '{}', now(), now() - n * interval '1 millisecond', now() + interval '1 hour', $1
		FROM generate_series(1, $2::int) AS n`, [subject, count]);
	await database.query('ANALYZE http_sessions');
}

async function sessionsOf(database: TestDatabase, subject: string): Promise<number> {
	const [row] = await database.query<{ n: number }>('SELECT count(*)::int AS n FROM http_sessions WHERE subject = $1', [subject]);
	return row?.n ?? Number.NaN;
}

/** Resolves once PostgreSQL shows `count` backends of `database` waiting for a lock (or rejects after 10 s). */
async function untilWaitingForLock(database: TestDatabase, count = 1): Promise<void> {
	const deadline = Date.now() + 10_000;
	for (;;) {
		const [row] = await database.query<{ n: number }>(
			`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
		);
		if ((row?.n ?? 0) >= count) {
			return;
		}
		if (Date.now() > deadline) {
			throw new Error(`no ${count} backend(s) waiting for a lock within 10 s`);
		}
		await new Promise((resolve) => setTimeout(resolve, 20));
	}
}

/**
 * A connection of the test's own that locks rows in a transaction (`lock`) until `release`.
 * @param deadlockTimeout How long its lock waits last before it looks for a deadlock.
 */
async function rowLocker(t: ExecutionContext, database: TestDatabase, deadlockTimeout = '60s'): Promise<{ lock: (where: string) => Promise<void>; release: () => Promise<void> }> {
	const client = new pg.Client({ connectionString: database.url });
	await client.connect();
	t.teardown(() => client.end());
	await client.query('BEGIN');
	await client.query(`SET LOCAL deadlock_timeout = ${client.escapeLiteral(deadlockTimeout)}`);
	return {
		async lock(where) {
			const { rowCount } = await client.query(`SELECT 1 FROM http_sessions WHERE ${where} FOR UPDATE`);
			if (rowCount !== 1) {
				throw new Error(`expected to lock one row, locked ${rowCount}`);
			}
		},
		release: async () => { await client.query('ROLLBACK'); },
	};
}

/** A connection of the test's own that holds one row lock in a transaction until `release`. */
async function rowLock(t: ExecutionContext, database: TestDatabase, where: string): Promise<{ release: () => Promise<void> }> {
	const locker = await rowLocker(t, database);
	await locker.lock(where);
	return locker;
}

test('a password reset signs out a subject with 300,000 sessions, under a request bound one DELETE of them exceeds', async (t) => {
	// One DELETE of 300,000 rows took 0.9–2.7 s on the review's and this machine; a batch takes tens of ms.
	const { store, database } = await createStore(t, { ...bySubject, pool: { query_timeout: 600 } });
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	// The sign-ins are setup, not the claim: on a loaded machine the bound the test needs for the
	// reset may also cut a sign-in's first statements short (a 500, and no session to reset), so
	// each is tried again until it is signed in.
	const signIn = async (user: string, jar: CookieJar) => {
		for (let attempt = 1; ; attempt++) {
			const { status } = await request(`${url}/sign-in?user=${user}`, jar);
			if (status === 200 || attempt === 5) {
				t.is(status, 200, `sign-in of ${user}`);
				return;
			}
		}
	};
	const [laptop, phone] = [new CookieJar(), new CookieJar()];
	await signIn('ada', laptop);
	await signIn('ada', phone);
	await manySessions(database, 'ada', 300_000);
	await signIn('grace', new CookieJar());

	// The laptop's own session goes in the first batch, and the request may still sign in anew.
	const reset = await request(`${url}/password-reset`, laptop);
	t.is(reset.status, 200);
	t.like(reset.body, { userId: 'ada', reset: true });
	t.deepEqual(await database.query('SELECT key FROM http_sessions WHERE subject = $1', ['ada']), [{ key: digestKey(laptop.cookies.get('koa.sess') ?? '') }]);
	t.deepEqual((await request(`${url}/`, phone)).body, {}, 'every other device is signed out');
	t.is(await sessionsOf(database, 'grace'), 1, 'nobody else is');
});

test('"sign out other devices" keeps the current one through every batch, and says how many ended', async (t) => {
	const { store, database } = await createStore(t, bySubject);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	await manySessions(database, 'ada', 2.5 * subjectDeleteBatch);
	// Signed in last: its row comes in the last batch.
	const laptop = new CookieJar();
	await request(`${url}/sign-in?user=ada`, laptop);
	t.deepEqual((await request(`${url}/sign-out-others`, laptop)).body, { ended: 2.5 * subjectDeleteBatch });
	t.like((await request(`${url}/`, laptop)).body, { userId: 'ada' });
	t.is(await sessionsOf(database, 'ada'), 1);
});

test('destroyAll costs one statement for a few sessions and one per 10,000 for many', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0, ...bySubject });
	await Promise.all(['a', 'b', 'c'].map((key) => store.set(key, { userId: 'ada' }, hour)));
	t.is((await store.list('ada')).length, 3, 'through the app\'s Prisma client too');
	let before = statements();
	t.is(await store.destroyAll('ada'), 3);
	t.is(statements() - before, 1);
	await manySessions(database, 'grace', 2.5 * subjectDeleteBatch);
	before = statements();
	t.is(await store.destroyAll('grace'), 2.5 * subjectDeleteBatch);
	t.is(statements() - before, 3);
	t.is(await sessionsOf(database, 'grace'), 0);
});

test('a sign-in that lands while destroyAll runs, before its last batch, is signed out too', async (t) => {
	// A batch waits on the test's lock while a sign-in goes through: not what the bound is for.
	const { store, database } = await createStore(t, { ...bySubject, pool: { query_timeout: 20_000 } });
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	await manySessions(database, 'ada', 2.5 * subjectDeleteBatch);
	// The first batch waits on the subject's first row, which the test holds.
	const lock = await rowLock(t, database, `id = (SELECT min(id) FROM http_sessions)`);
	const signingOut = store.destroyAll('ada');
	await untilWaitingForLock(database);
	const newDevice = new CookieJar();
	t.is((await request(`${url}/sign-in?user=ada`, newDevice)).status, 200);
	await lock.release();
	t.is(await signingOut, 2.5 * subjectDeleteBatch + 1, 'a later batch ended it: the sign-in came before the sign-out');
	t.deepEqual((await request(`${url}/`, newDevice)).body, {});
	t.is(await sessionsOf(database, 'ada'), 0);
});

test('a sign-in that lands during destroyAll\'s last batch stays signed in, as one after the sign-out', async (t) => {
	// A batch waits on the test's lock while a sign-in goes through: not what the bound is for.
	const { store, database } = await createStore(t, { ...bySubject, pool: { query_timeout: 20_000 } });
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	await manySessions(database, 'ada', 2.5 * subjectDeleteBatch);
	// The last batch (the one that deletes fewer than a batch) waits on the subject's last row.
	const lock = await rowLock(t, database, `id = (SELECT max(id) FROM http_sessions)`);
	const signingOut = store.destroyAll('ada');
	await untilWaitingForLock(database);
	const newDevice = new CookieJar();
	t.is((await request(`${url}/sign-in?user=ada`, newDevice)).status, 200);
	await lock.release();
	t.is(await signingOut, 2.5 * subjectDeleteBatch);
	t.like((await request(`${url}/`, newDevice)).body, { userId: 'ada' });
	t.is(await sessionsOf(database, 'ada'), 1);
});

test('a batch of destroyAll that a deadlock rolled back runs again', async (t) => {
	const { store, database } = await createStore(t, { ...bySubject, pool: { query_timeout: 20_000 } });
	// PostgreSQL looks for a deadlock once per wait, when it has lasted deadlock_timeout, and the
	// backend that finds one is rolled back: the store's connections (made later) look soon, the
	// test's own only after a minute.
	await database.query(`ALTER DATABASE ${database.name} SET deadlock_timeout = '100ms'`);
	await manySessions(database, 'ada', 3);
	const [first, middle, last] = ['min(id)', 'min(id) + 1', 'max(id)'].map((id) => `id = (SELECT ${id} FROM http_sessions)`) as [string, string, string];
	const [pauser, holder] = [await rowLocker(t, database), await rowLocker(t, database)];
	await pauser.lock(middle);
	await holder.lock(last);
	// The batch locks the first row and waits for the middle one; the holder then waits for the
	// first. Once the pauser lets go, the batch waits for the last, held by the holder: a deadlock
	// that the batch's own wait finds.
	const signingOut = store.destroyAll('ada');
	await untilWaitingForLock(database);
	const holderWaits = holder.lock(first);
	await untilWaitingForLock(database, 2);
	await pauser.release();
	// The holder gets the first row once the batch is rolled back.
	await holderWaits;
	await holder.release();
	t.is(await signingOut, 3);
	t.is(await sessionsOf(database, 'ada'), 0);
});

// The most rows any node of the plan read: those it produced and those its filter removed, over
// all its loops (a parallel worker is one).
function mostRows(plan: Record<string, unknown>): number {
	const children = (plan['Plans'] as Record<string, unknown>[] | undefined) ?? [];
	const read = (Number(plan['Actual Rows']) + Number(plan['Rows Removed by Filter'] ?? 0)) * Number(plan['Actual Loops']);
	return Math.max(read, ...children.map(mostRows));
}

test('list() and each batch of destroyAll read at most 10,000 rows, however many sessions the subject has and wherever they lie', async (t) => {
	const { store, database } = await createStore(t, bySubject);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	// Other users' sessions first, as in a table in use, then an attacker's sign-ins: the
	// subject's rows are the last of the table.
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on, subject)
		SELECT 'other-' || n, '{}', now(), now(), now() + interval '1 hour', 'user-' || (n % 5000) FROM generate_series(1, 40000) AS n`);
	await manySessions(database, 'ada', 3 * listCandidates);
	const laptop = new CookieJar();
	await request(`${url}/sign-in?user=ada`, laptop);

	const devices = await request(`${url}/devices`, laptop);
	t.is(devices.status, 200);
	t.is((devices.body as unknown[]).length, 50);

	// The statements the store sends, as PostgreSQL runs them: first with the values (a custom
	// plan), then prepared as one plan for any subject (what a named statement may settle on).
	const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) });
	t.teardown(() => prisma.$disconnect());
	const statements = sessionStatements(readSessionTable(prisma, undefined), true).bySubject;
	if (statements === undefined) {
		t.fail('no subject statements');
		return;
	}
	const client = new pg.Client({ connectionString: database.url });
	await client.connect();
	t.teardown(() => client.end());
	const plans = async (name: string, statement: { text: string; values: readonly unknown[] }, types: string) => {
		const explain = async (sql: string, values: readonly unknown[]) => {
			// In a transaction rolled back: EXPLAIN ANALYZE runs the DELETE.
			await client.query('BEGIN');
			const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: Record<string, unknown> }] }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, [...values]);
			await client.query('ROLLBACK');
			return rows[0]?.['QUERY PLAN'][0].Plan ?? {};
		};
		const custom = await explain(statement.text, statement.values);
		await client.query('SET plan_cache_mode = force_generic_plan');
		await client.query(`PREPARE ${name}(${types}) AS ${statement.text}`);
		const literals = statement.values.map((value) => (Array.isArray(value) ? `${client.escapeLiteral(`{${value.join(',')}}`)}::text[]` : client.escapeLiteral(String(value))));
		const generic = await explain(`EXECUTE ${name}(${literals.join(', ')})`, []);
		await client.query('RESET plan_cache_mode');
		return { custom, generic };
	};
	const list = await plans('list_of_subject', statements.list({ subject: 'ada', now: new Date(), limit: 51, candidates: listCandidates }), 'text, float8, int8, int8');
	const batch = await plans('delete_batch', statements.deleteBatch({ subject: 'ada', keep: [], limit: subjectDeleteBatch, watch: [] }), 'text, text[], int8, text[]');
	for (const [what, plan, most] of [
		['list, custom plan', list.custom, listCandidates], ['list, generic plan', list.generic, listCandidates],
		['batch, custom plan', batch.custom, subjectDeleteBatch], ['batch, generic plan', batch.generic, subjectDeleteBatch],
	] as const) {
		t.true(mostRows(plan) <= most, `${what}: ${mostRows(plan)} rows read`);
		t.true(JSON.stringify(plan).includes('http_sessions_subject_idx'), `${what}: through the index on the subject`);
	}
});

test('list() takes a limit of at most 1,000 and refuses a larger one', async (t) => {
	const { store, database } = await createStore(t, bySubject);
	await manySessions(database, 'ada', maxListLimit + 5);
	const listed = await store.list('ada', { limit: maxListLimit });
	t.is(listed.length, maxListLimit);
	t.true(listed.hasMore);
	for (const limit of [maxListLimit + 1, 1e9, Number.MAX_SAFE_INTEGER]) {
		await t.throwsAsync(store.list('ada', { limit }), { instanceOf: TypeError, message: `Expected \`limit\` to be an integer from 1 to ${maxListLimit}, got ${limit}` });
	}
});

/** The subject routes plus "sign out this device" by the id in `?id=`, as a devices page sends it. */
function deviceRoutes(store: PgStore): Koa.Middleware {
	const routes = sessionRoutes({ store });
	return async (ctx, next) => {
		if (ctx.path !== '/sign-out-device') {
			return routes(ctx, next);
		}
		ctx.body = { ended: await store.destroySession(String(ctx.session?.['userId']), String(ctx.query['id']), { ctx }) };
	};
}

test('destroySession: an id past bigint is an unknown one, a malformed id a 400 that quotes none of it', async (t) => {
	const { store } = await createStore(t, bySubject);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: deviceRoutes(store) });
	const [laptop, phone] = [new CookieJar(), new CookieJar()];
	await request(`${url}/sign-in?user=ada`, laptop);
	await request(`${url}/sign-in?user=ada`, phone);
	const signOut = (id: string) => request(`${url}/sign-out-device?id=${encodeURIComponent(id)}`, laptop);

	for (const unknown of ['9223372036854775807', '9223372036854775808', '18446744073709551616', '99999999999999999999999999', '0']) {
		const response = await signOut(unknown);
		t.is(response.status, 200, unknown);
		t.deepEqual(response.body, { ended: false });
	}
	for (const malformed of ['DROP TABLE http_sessions', '12a', '-1', '1e3', '', ' 1', '١']) {
		const response = await signOut(malformed);
		t.is(response.status, 400, JSON.stringify(malformed));
		t.is(response.body, 'Expected `id` to be a session id from list() (a string of digits), got a string that is not one');
	}
	await t.throwsAsync(store.destroySession('ada', 5 as never), { instanceOf: TypeError, message: /got a number$/ });
	t.false(await store.destroySession('ada', 2n ** 64n));
	t.false(await store.destroySession('ada', -1n));

	// Leading zeros name the same row.
	const phoneId = ((await request(`${url}/devices`, laptop)).body as { id: string; current: boolean }[]).find((device) => !device.current)?.id ?? '';
	t.deepEqual((await signOut(`000${phoneId}`)).body, { ended: true });
	t.deepEqual((await request(`${url}/`, phone)).body, {});
});
