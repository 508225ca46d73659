import test from 'ava';
import type Koa from 'koa';
import { PgStore } from '../src/index.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { createStore, sessionRows } from './helpers/store.js';
import { hour } from './helpers/time.js';

const touchAfter = 60_000;

const routes: Koa.Middleware = (ctx) => {
	const session = ctx.session;
	if (session === null) {
		return;
	}
	if (ctx.path === '/count') {
		session['views'] = Number(session['views'] ?? 0) + 1;
	} else if (ctx.path === '/remember-me') {
		session.maxAge = 30 * 24 * hour;
	} else if (ctx.path === '/forget-me') {
		session.maxAge = 50 * 60_000;
	}
	ctx.body = session.toJSON();
};

async function rollingApp(t: Parameters<typeof createStore>[0]) {
	const { store, database } = await createStore(t, { touchAfter });
	const { url } = await startApp(t, { session: { store, rolling: true, maxAge: hour }, handler: routes });
	return { store, database, url };
}

test('rolling with touchAfter: an unchanged session inside the window is not written', async (t) => {
	const { database, url } = await rollingApp(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	const [written] = await sessionRows(database);
	const read = await request(`${url}/`, jar);
	t.true(read.setCookies.some((cookie) => cookie.name === 'koa.sess'), 'the cookie still rolls');
	const [after] = await sessionRows(database);
	t.deepEqual(after, written, 'no write: same modified_on, expires_on and data');

	// The cookie may outlive the row by at most touchAfter.
	const cookieExpires = Date.parse(read.setCookies.find((cookie) => cookie.name === 'koa.sess')?.attributes.get('expires') ?? '');
	t.true(cookieExpires - (after?.expires_on.getTime() ?? 0) <= touchAfter);
});

test('rolling with touchAfter: once the stored expiry is older than the window, the save is written', async (t) => {
	const { database, url } = await rollingApp(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	await database.query(`UPDATE http_sessions SET expires_on = expires_on - interval '2 minutes', modified_on = modified_on - interval '2 minutes'`);
	const [stale] = await sessionRows(database);
	const asked = Date.now();
	await request(`${url}/`, jar);
	const [renewed] = await sessionRows(database);
	t.true((renewed?.modified_on.getTime() ?? 0) > (stale?.modified_on.getTime() ?? 0));
	t.true((renewed?.expires_on.getTime() ?? 0) >= asked + hour, 'a full maxAge from the request on');
	t.is(renewed?.data['views'], 1);
});

// koa-session moves `_expire` on every save. Within the window the store keeps the stored expiry,
// and the stored `_expire` with it, so a save changes no indexed column and PostgreSQL updates the
// row in place (HOT: no new index entries, no dead row left for vacuum).
async function countingApp(t: Parameters<typeof createStore>[0], options: { touchAfter?: number } = {}) {
	const { store, database } = await createStore(t, { touchAfter, ...options });
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: routes });
	return { store, database, url };
}

// Whether the stored `_expire` and the expiry column were both written by the save of a request
// the test made between its clock readings `from` and `to` (the app runs in this process, on the
// same clock). koa-session sets `_expire` to its clock plus maxAge (an hour here), and gives the
// store 10 s more, each from its own clock reading: how far apart those are depends on how loaded
// the machine is, so the window is the request's own duration, not a fixed one.
const withExpiry = (row: { expires_on: Date; data: Record<string, unknown> } | undefined, { from, to }: { from: number; to: number }) => {
	const expire = Number(row?.data['_expire']);
	const expiresOn = row?.expires_on.getTime() ?? Number.NaN;
	return expire >= from + hour && expire <= to + hour
		&& expiresOn >= from + hour + 10_000 && expiresOn <= to + hour + 10_000;
};

/** Runs `request` and returns the test's clock readings just before and after it. */
async function timed(request: () => Promise<unknown>): Promise<{ from: number; to: number }> {
	const from = Date.now();
	await request();
	return { from, to: Date.now() };
}

// Row updates PostgreSQL counted for the session table, and how many were HOT. The store's
// backends report them when they exit, so the store is closed first and the counts polled.
async function rowUpdates(store: PgStore, database: Parameters<typeof sessionRows>[0], expected: number) {
	await store.close();
	for (let tries = 0; ; tries++) {
		const [row] = await database.query<{ updates: number; hot: number }>(
			`SELECT n_tup_upd::int AS updates, n_tup_hot_upd::int AS hot FROM pg_stat_user_tables WHERE relname = 'http_sessions'`);
		if ((row?.updates ?? 0) >= expected || tries === 50) {
			return row;
		}
		await new Promise((resolve) => setTimeout(resolve, 100));
	}
}

test('a changed save within touchAfter keeps the stored expiry and `_expire`: the row is updated in place (HOT)', async (t) => {
	const { store, database, url } = await countingApp(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	const [created] = await sessionRows(database);
	let last;
	for (let i = 0; i < 3; i++) {
		await new Promise((resolve) => setTimeout(resolve, 5));
		last = await request(`${url}/count`, jar);
	}
	const [saved] = await sessionRows(database);
	t.is(saved?.data['views'], 4, 'every change is written');
	t.true((saved?.modified_on.getTime() ?? 0) > (created?.modified_on.getTime() ?? 0));
	t.deepEqual(saved?.expires_on, created?.expires_on, 'the expiry column stays');
	t.is(saved?.data['_expire'], created?.data['_expire'], 'and so does the stored `_expire`, with it');
	// The cookie may outlive the row by at most touchAfter.
	const cookieExpires = Date.parse(last?.setCookies.find((cookie) => cookie.name === 'koa.sess')?.attributes.get('expires') ?? '');
	t.true(Number.isFinite(cookieExpires), 'each save sent the cookie');
	t.true(cookieExpires - (saved?.expires_on.getTime() ?? 0) <= touchAfter);
	t.deepEqual(await rowUpdates(store, database, 3), { updates: 3, hot: 3 });
});

test('a changed save moves the expiry once the stored one is older than touchAfter, `_expire` with it', async (t) => {
	const { database, url } = await countingApp(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	await database.query(`UPDATE http_sessions SET expires_on = expires_on - interval '2 minutes', `
		+ `data = jsonb_set(data, '{_expire}', to_jsonb((data->>'_expire')::bigint - 120000))`);
	const save = await timed(() => request(`${url}/count`, jar));
	const [row] = await sessionRows(database);
	t.is(row?.data['views'], 2);
	t.true(withExpiry(row, save), 'the expiry column moved, and the stored `_expire` with it');
});

test('a save koa-session flags as changed whose fields all equal the stored ones, inside touchAfter, writes nothing', async (t) => {
	const { store, database } = await createStore(t, { touchAfter });
	await store.set('k', { cart: { a: 1, b: 2 }, _expire: Date.now() + hour, _maxAge: hour }, hour);
	const [stored] = await sessionRows(database);
	const ctx = {};
	await store.get('k', hour, { ctx });
	await new Promise((resolve) => setTimeout(resolve, 5));
	await store.set('k', { cart: { a: 1, b: 2 }, _expire: Date.now() + hour, _maxAge: hour }, hour, { ctx, changed: true });
	t.deepEqual(await sessionRows(database), [stored]);
});

test('with touchAfter: 0 every changed save moves the expiry', async (t) => {
	const { database, url } = await countingApp(t, { touchAfter: 0 });
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	const [first] = await sessionRows(database);
	await new Promise((resolve) => setTimeout(resolve, 10));
	const save = await timed(() => request(`${url}/count`, jar));
	const [second] = await sessionRows(database);
	t.true((second?.expires_on.getTime() ?? 0) > (first?.expires_on.getTime() ?? 0));
	t.true(withExpiry(second, save), 'the expiry column moved, and the stored `_expire` with it');
});

test('touchAfter never skips a maxAge change on an otherwise unchanged session', async (t) => {
	const { database, url } = await rollingApp(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	await request(`${url}/remember-me`, jar);
	const [row] = await sessionRows(database);
	t.is(row?.data['_maxAge'], 30 * 24 * hour);
	t.true((row?.expires_on.getTime() ?? 0) - Date.now() > 29 * 24 * hour);
});

test('touchAfter never skips a shorter maxAge either', async (t) => {
	const { database, url } = await rollingApp(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	await request(`${url}/forget-me`, jar);
	const [row] = await sessionRows(database);
	t.is(row?.data['_maxAge'], 50 * 60_000);
	t.true((row?.expires_on.getTime() ?? 0) - Date.now() < 51 * 60_000);
});

test('touchAfter never skips changed data, even when koa-session says changed: false', async (t) => {
	const { store, database } = await createStore(t, { touchAfter });
	await store.set('k', { cart: { items: [1] }, _expire: Date.now() + hour, _maxAge: hour }, hour);
	const ctx = {};
	const loaded = await store.get('k', hour, { ctx });
	t.truthy(loaded);
	// save() after a change, and a nested change made in place, both arrive with changed: false.
	const cart = loaded?.['cart'] as { items: number[] };
	cart.items.push(2);
	await store.set('k', { ...loaded, _expire: Date.now() + hour }, hour, { ctx, changed: false, rolling: true });
	t.deepEqual((await sessionRows(database))[0]?.data['cart'], { items: [1, 2] });
	await store.set('k', { ...loaded, note: 'saved', _expire: Date.now() + hour }, hour, { ctx, changed: false });
	t.is((await sessionRows(database))[0]?.data['note'], 'saved');
});

test('with touchAfter: 0 every rolling save is written', async (t) => {
	const { store, database } = await createStore(t, { touchAfter: 0 });
	const { url } = await startApp(t, { session: { store, rolling: true, maxAge: hour }, handler: routes });
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	const [first] = await sessionRows(database);
	await new Promise((resolve) => setTimeout(resolve, 10));
	await request(`${url}/`, jar);
	const [second] = await sessionRows(database);
	t.true((second?.modified_on.getTime() ?? 0) > (first?.modified_on.getTime() ?? 0));
});

test('touchAfter is validated', (t) => {
	for (const touch of [-1, 0.5, Number.POSITIVE_INFINITY, '1m']) {
		// @ts-expect-error: deliberately wrong
		t.throws(() => new PgStore({ connectionString: 'postgresql://x/y', touchAfter: touch }), {
			instanceOf: TypeError,
			message: /`touchAfter` to be an integer >= 0/,
		});
	}
});

test('touchAfter is on by default (a minute) and never more than a quarter of the session\'s lifetime', async (t) => {
	const { store, database } = await createStore(t);
	const ctx = {};
	await store.set('long', { n: 1 }, hour);
	await store.set('short', { n: 1 }, 20_000);
	// Saved 5.1 s ago, as far as the store can tell: inside the minute for the hour-long session,
	// past a quarter of the 20 s one.
	await database.query(`UPDATE http_sessions SET expires_on = expires_on - interval '5100 milliseconds', modified_on = modified_on - interval '5100 milliseconds'`);
	const [long, short] = [await store.get('long', hour, { ctx }), await store.get('short', 20_000, { ctx })];
	const before = await sessionRows(database);
	await store.set('long', { ...long }, hour, { ctx, changed: false });
	await store.set('short', { ...short }, 20_000, { ctx, changed: false });
	const after = await sessionRows(database);
	t.deepEqual(after[0]?.expires_on, before[0]?.expires_on, 'the hour-long session was not rewritten');
	t.true((after[1]?.expires_on.getTime() ?? 0) > (before[1]?.expires_on.getTime() ?? 0), 'the 20 s session was');
});
