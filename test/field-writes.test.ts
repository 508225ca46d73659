import test, { type ExecutionContext } from 'ava';
import { PgStore, type PgStoreOptions } from '../src/index.js';
import { Gate } from './helpers/gate.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { createStore, sessionRows } from './helpers/store.js';
import { hour } from './helpers/time.js';

// Two tabs of one browser: requests of one session that all loaded it before any of them saved
// (the gate holds each after it loaded). Each saves only the fields it changed.

async function twoTabsApp(t: ExecutionContext, storeOptions: Omit<PgStoreOptions, 'prisma' | 'connectionString'> = {}) {
	const gate = new Gate();
	const { store, database } = await createStore(t, storeOptions);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store, gate }) });
	const browser = new CookieJar();
	await request(`${url}/set?cart=1&lang=en&coupon=SAVE10`, browser);
	return { gate, database, url, browser };
}

/** Runs the requests of `paths` concurrently, each held after loading until all have loaded. */
async function concurrently(url: string, browser: CookieJar, gate: Gate, paths: string[]): Promise<number[]> {
	const responses = paths.map((path) => request(`${url}${path}`, browser.clone()));
	await gate.arrivals(paths.length);
	gate.open();
	return (await Promise.all(responses)).map((response) => response.status);
}

async function storedData(database: Awaited<ReturnType<typeof createStore>>['database']) {
	const [row] = await sessionRows(database);
	const { _expire, _maxAge, ...data } = row?.data ?? {};
	return data;
}

test('two requests of one session changing different fields keep both changes', async (t) => {
	const { gate, database, url, browser } = await twoTabsApp(t);
	t.deepEqual(await concurrently(url, browser, gate, ['/later?cart=2', '/later?lang=fr']), [200, 200]);
	t.deepEqual(await storedData(database), { cart: '2', lang: 'fr', coupon: 'SAVE10' });
});

test('one request deletes a field while another changes another: the deletion and the change both stay', async (t) => {
	const { gate, database, url, browser } = await twoTabsApp(t);
	await concurrently(url, browser, gate, ['/later?-coupon', '/later?lang=fr']);
	t.deepEqual(await storedData(database), { cart: '1', lang: 'fr' });
});

test('two requests changing the same field: the last save wins', async (t) => {
	const { store, database } = await createStore(t);
	await store.set('k', { cart: '0', lang: 'en' }, hour);
	const [first, second] = [{}, {}];
	await store.get('k', hour, { ctx: first });
	await store.get('k', hour, { ctx: second });
	await store.set('k', { cart: 'first', lang: 'en' }, hour, { ctx: first, changed: true });
	await store.set('k', { cart: 'second', lang: 'en' }, hour, { ctx: second, changed: true });
	t.deepEqual((await sessionRows(database))[0]?.data, { cart: 'second', lang: 'en' });
});

test('100 concurrent requests of one session each setting a field of its own: all 100 fields stay', async (t) => {
	const { gate, database, url, browser } = await twoTabsApp(t);
	const statuses = await concurrently(url, browser, gate, Array.from({ length: 100 }, (_, index) => `/later?f${index}=${index}`));
	t.deepEqual(statuses.filter((status) => status !== 200), []);
	const data = await storedData(database);
	t.deepEqual(Array.from({ length: 100 }, (_, index) => data[`f${index}`]), Array.from({ length: 100 }, (_, index) => String(index)));
	t.like(data, { cart: '1', lang: 'en', coupon: 'SAVE10' });
});

test('a merge that would make the stored session larger than maxLength: SessionTooLargeError, row unchanged', async (t) => {
	const { gate, database, url, browser } = await twoTabsApp(t, { maxLength: 200 });
	const before = (await sessionRows(database))[0]?.data;
	// Each save alone fits; together they would not.
	const [first, second] = await concurrently(url, browser, gate, [`/later?a=${'x'.repeat(60)}`, `/later?b=${'y'.repeat(60)}`]);
	t.deepEqual([first, second].sort(), [200, 500]);
	const after = (await sessionRows(database))[0]?.data;
	t.is(Object.keys(after ?? {}).filter((name) => name === 'a' || name === 'b').length, 1, 'one of the two fields, never both');
	t.like(after, { cart: before?.['cart'], lang: before?.['lang'] });
});

test('a save that shrinks a session over a lowered maxLength is still written', async (t) => {
	const { store, database } = await createStore(t, { maxLength: 0 });
	await store.set('k', { note: 'x'.repeat(300), keep: 1 }, hour);
	// The same database through a store with a lower limit.
	const strict = new PgStore({ connectionString: database.url, cleanupInterval: 0, maxLength: 100 });
	t.teardown(() => strict.close());
	const ctx = {};
	const loaded = await strict.get('k', hour, { ctx });
	const { note: _note, ...smaller } = loaded ?? {};
	await t.notThrowsAsync(strict.set('k', { ...smaller, note: 'x'.repeat(200) }, hour, { ctx, changed: true }));
	t.is((await sessionRows(database))[0]?.data['note'], 'x'.repeat(200));
	await t.throwsAsync(strict.set('k', { ...smaller, note: 'x'.repeat(250) }, hour, { ctx, changed: true }), { code: 'ERR_PGSTORE_SESSION_TOO_LARGE' });
	t.is((await sessionRows(database))[0]?.data['note'], 'x'.repeat(200), 'a growing save is still refused');
});

test('replacing ctx.session with a new object removes the fields it lacks', async (t) => {
	const { store, database } = await createStore(t);
	const { url } = await startApp(t, {
		session: { store, maxAge: hour },
		handler: (ctx) => {
			if (ctx.path === '/replace') {
				ctx.session = { fresh: true } as never;
			} else if (ctx.session) {
				ctx.session['old'] = 'value';
			}
			ctx.body = 'ok';
		},
	});
	const jar = new CookieJar();
	await request(`${url}/`, jar);
	await request(`${url}/replace`, jar);
	const { _expire, _maxAge, ...data } = (await sessionRows(database))[0]?.data ?? {};
	t.deepEqual(data, { fresh: true });
});

test('fieldLevelWrites: false writes whole sessions: the last save wins, other fields included', async (t) => {
	const { gate, database, url, browser } = await twoTabsApp(t, { fieldLevelWrites: false });
	const first = request(`${url}/later?cart=2`, browser.clone());
	const second = request(`${url}/later?lang=fr`, browser.clone());
	await gate.arrivals(2);
	gate.open();
	await Promise.all([first, second]);
	const data = await storedData(database);
	t.true(
		(data['cart'] === '2' && data['lang'] === 'en') || (data['cart'] === '1' && data['lang'] === 'fr'),
		`one save erased the other's change: ${JSON.stringify(data)}`,
	);
});

test('the subject is written only when this request changed it: a stale save never signs the user out of the column', async (t) => {
	const gate = new Gate();
	const { store, database } = await createStore(t, { subject: (session) => session['userId'] as string | undefined });
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store, gate }) });
	const browser = new CookieJar();
	await request(`${url}/set?lang=en`, browser);
	const stale = request(`${url}/later?lang=fr`, browser.clone());
	await gate.arrivals(1);
	// Another request of the same key sets the user (an app that does not regenerate on login).
	await request(`${url}/set?userId=alice`, browser.clone());
	gate.open();
	await stale;
	const rows = await database.query<{ subject: string | null; user: string | null; lang: string }>(
		`SELECT subject, data->>'userId' AS user, data->>'lang' AS lang FROM http_sessions`,
	);
	t.deepEqual(rows, [{ subject: 'alice', user: 'alice', lang: 'fr' }]);
});
