import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { digestKey } from '../src/codec/key-digest.js';
import { lockWaiters } from './helpers/database-gate.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { createStore } from './helpers/store.js';
import { hour } from './helpers/time.js';

// Coalesced, not shared fate: a session whose row another transaction holds (a slow trigger, a
// long transaction, another instance's statement) delays its own requests only. Its write is
// skipped by the statement it shares with other sessions and tried again alone.

// An app whose `userCount` users and one more, `hot`, are signed in; another transaction holds
// the hot session's row (`holder`, in a transaction the test ends).
async function heldSession(t: ExecutionContext, userCount: number) {
	const { store, database } = await createStore(t);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	const users = await Promise.all(Array.from({ length: userCount }, async (_, index) => {
		const jar = new CookieJar();
		await request(`${url}/set?user=${index}`, jar);
		return jar;
	}));
	const hot = new CookieJar();
	await request(`${url}/set?user=hot`, hot);
	const holder = new pg.Client({ connectionString: database.url });
	await holder.connect();
	t.teardown(() => holder.end());
	await holder.query('BEGIN');
	await holder.query('SELECT 1 FROM http_sessions WHERE key = $1 FOR UPDATE', [digestKey(hot.cookies.get('koa.sess') ?? '')]);
	return { database, url, users, hot, holder };
}

test('a session whose row another transaction holds delays only its own saves: the others of the same turn land', async (t) => {
	const { database, url, users, hot, holder } = await heldSession(t, 20);

	let hotDone = false;
	const hotSave = request(`${url}/set?cart=1`, hot).finally(() => { hotDone = true; });
	const saves = users.map((jar) => request(`${url}/set?cart=1`, jar));
	t.deepEqual((await Promise.all(saves)).map((response) => response.status), users.map(() => 200), 'every other user saved while the row was held');
	t.false(hotDone, 'the held session\'s save waits');
	const [saved] = await database.query<{ count: number }>(`SELECT count(*)::int AS count FROM http_sessions WHERE data->>'cart' = '1'`);
	t.is(saved?.count, 20);

	await holder.query('ROLLBACK');
	t.is((await hotSave).status, 200);
	t.like((await request(`${url}/`, hot)).body, { user: 'hot', cart: '1' }, 'and lands once the row is free');
});

test('a sign-out that waits for a row another transaction holds keeps no other session waiting: their saves and sign-outs made meanwhile land', async (t) => {
	const { database, url, users, hot, holder } = await heldSession(t, 10);

	// The delete waits on the row lock (a sign-out is never skipped), holding its statement open.
	let hotDone = false;
	const hotLogout = request(`${url}/logout`, hot).finally(() => { hotDone = true; });
	await lockWaiters(database, 1);
	// Each in a turn of its own, after the sign-out's statement went: later batches of writes.
	for (const jar of users.slice(0, 5)) {
		t.is((await request(`${url}/set?cart=1`, jar)).status, 200);
	}
	for (const jar of users.slice(5)) {
		t.is((await request(`${url}/logout`, jar)).status, 200);
	}
	t.false(hotDone, 'the held session\'s sign-out still waits');
	const rows = await database.query<{ cart: string | null }>('SELECT data->>\'cart\' AS cart FROM http_sessions WHERE key <> $1', [digestKey(hot.cookies.get('koa.sess') ?? '')]);
	t.deepEqual(rows.map((row) => row.cart), ['1', '1', '1', '1', '1'], 'five saved, five signed out, while the row was held');

	await holder.query('ROLLBACK');
	t.is((await hotLogout).status, 200);
	t.is((await database.query('SELECT 1 FROM http_sessions')).length, 5, 'and the held session is signed out once its row is free');
});

test('a save whose row stays held past the statement bound fails alone, with a query-timeout DatabaseError', async (t) => {
	const { store, database } = await createStore(t, { pool: { query_timeout: 500 } });
	await store.set('hot', { n: 0 }, hour);
	await store.set('cold', { n: 0 }, hour);
	const ctx = {};
	await store.get('hot', hour, { ctx });
	await store.get('cold', hour, { ctx });
	const holder = new pg.Client({ connectionString: database.url });
	await holder.connect();
	t.teardown(() => holder.end());
	await holder.query('BEGIN');
	await holder.query('SELECT 1 FROM http_sessions WHERE key = $1 FOR UPDATE', [digestKey('hot')]);
	const [hotResult, coldResult] = await Promise.allSettled([
		store.set('hot', { n: 1 }, hour, { ctx, changed: true }),
		store.set('cold', { n: 1 }, hour, { ctx, changed: true }),
	]);
	await holder.query('ROLLBACK');
	t.is(coldResult?.status, 'fulfilled');
	t.like(hotResult?.status === 'rejected' ? hotResult.reason : undefined, { name: 'DatabaseError', failure: 'query-timeout', operation: 'set' });
	const rows = await database.query<{ key: string; n: number }>(`SELECT key, (data->>'n')::int AS n FROM http_sessions ORDER BY n`);
	t.deepEqual(rows, [{ key: digestKey('hot'), n: 0 }, { key: digestKey('cold'), n: 1 }]);
});

test('with query_timeout: 0 (no bound) a save whose row another transaction holds waits until it is free, and lands', async (t) => {
	const { store, database } = await createStore(t, { pool: { query_timeout: 0 } });
	await store.set('hot', { n: 0 }, hour);
	const ctx = {};
	await store.get('hot', hour, { ctx });
	const holder = new pg.Client({ connectionString: database.url });
	await holder.connect();
	t.teardown(() => holder.end());
	await holder.query('BEGIN');
	await holder.query('SELECT 1 FROM http_sessions WHERE key = $1 FOR UPDATE', [digestKey('hot')]);
	let settled = false;
	const saving = store.set('hot', { n: 1 }, hour, { ctx, changed: true }).finally(() => {
		settled = true;
	});
	// The save is tried, skipped and tried again while the row is held: it must still be waiting
	// after several of its retries (pauses of 1, 2, 4 … 50 ms).
	await new Promise((resolve) => setTimeout(resolve, 300));
	t.false(settled, 'the save waits for the row, as a statement without a bound would');
	await holder.query('ROLLBACK');
	await saving;
	const rows = await database.query<{ n: number }>(`SELECT (data->>'n')::int AS n FROM http_sessions`);
	t.deepEqual(rows, [{ n: 1 }]);
});
