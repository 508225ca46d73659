import test from 'ava';
import type Koa from 'koa';
import { digestKey } from '../src/codec/key-digest.js';
import { Gate } from './helpers/gate.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { createStore, sessionRows } from './helpers/store.js';
import { day } from './helpers/time.js';

async function app(t: Parameters<typeof createStore>[0], sessionOptions: Record<string, unknown> = {}, handler: Koa.Middleware = sessionRoutes()) {
	// touchAfter: 0, so that every save these tests make reaches the table.
	const { store, database } = await createStore(t, { touchAfter: 0 });
	const { url } = await startApp(t, { session: { store, ...sessionOptions }, handler });
	return { store, database, url };
}

function sessionKey(jar: CookieJar): string {
	const key = jar.cookies.get('koa.sess');
	if (key === undefined) {
		throw new Error('no session cookie');
	}
	return key;
}

test('a session lives from its first write to logout, stored under the digest of a signed cookie', async (t) => {
	const { database, url } = await app(t, { maxAge: day });
	const jar = new CookieJar();

	const empty = await request(`${url}/`, jar);
	t.deepEqual(empty.body, {});
	t.deepEqual(empty.setCookies, [], 'an untouched new session is neither stored nor sent');
	t.is((await sessionRows(database)).length, 0);

	const first = await request(`${url}/count`, jar);
	t.deepEqual(first.body, { views: 1 });
	const cookie = first.setCookies.find((set) => set.name === 'koa.sess');
	t.truthy(cookie);
	t.true(cookie?.attributes.has('httponly'));
	t.true(first.setCookies.some((set) => set.name === 'koa.sess.sig'), 'the cookie is signed');
	const rows = await sessionRows(database);
	t.is(rows.length, 1);
	t.is(rows[0]?.key, digestKey(sessionKey(jar)));
	t.is(rows[0]?.data['views'], 1);

	t.deepEqual((await request(`${url}/`, jar)).body, { views: 1 });
	t.deepEqual((await request(`${url}/count`, jar)).body, { views: 2 });
	t.is((await sessionRows(database))[0]?.data['views'], 2);

	const logout = await request(`${url}/logout`, jar);
	t.deepEqual(logout.body, { loggedOut: true });
	const cleared = logout.setCookies.find((set) => set.name === 'koa.sess');
	t.is(cleared?.value, '');
	t.is(Date.parse(cleared?.attributes.get('expires') ?? ''), 0);
	t.is((await sessionRows(database)).length, 0);
	t.false(jar.cookies.has('koa.sess'));
	t.deepEqual((await request(`${url}/`, jar)).body, {});
});

test('regenerate() on login moves the data to a new key and the old key stops working', async (t) => {
	const { database, url } = await app(t);
	const jar = new CookieJar();
	await request(`${url}/set?cart=3`, jar);
	const before = sessionKey(jar);
	const stolen = jar.clone();

	t.deepEqual((await request(`${url}/login`, jar)).body, { cart: '3', user: 'ada' });
	const after = sessionKey(jar);
	t.not(after, before);
	const rows = await sessionRows(database);
	t.deepEqual(rows.map((row) => row.key), [digestKey(after)]);
	t.deepEqual((await request(`${url}/`, stolen)).body, {}, 'the pre-login cookie gives nothing');
	t.deepEqual((await request(`${url}/`, jar)).body, { cart: '3', user: 'ada' });
});

test('maxAge \'session\': a cookie without expiry, a row kept for sessionTtl', async (t) => {
	const { database, url } = await app(t, { maxAge: 'session' });
	const jar = new CookieJar();
	const response = await request(`${url}/count`, jar);
	const cookie = response.setCookies.find((set) => set.name === 'koa.sess');
	t.false(cookie?.attributes.has('expires'));
	const [row] = await sessionRows(database);
	const lifetime = (row?.expires_on.getTime() ?? 0) - Date.now();
	t.true(lifetime > day - 60_000 && lifetime <= day, `row lives ${lifetime} ms`);
	t.deepEqual((await request(`${url}/count`, jar)).body, { views: 2 });
});

test('rolling: every response re-sends the cookie and pushes the row\'s expiry', async (t) => {
	const { database, url } = await app(t, { rolling: true, maxAge: 60_000 });
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	await database.query(`UPDATE http_sessions SET expires_on = now() + interval '5 seconds'`);
	const read = await request(`${url}/`, jar);
	t.true(read.setCookies.some((set) => set.name === 'koa.sess'));
	const [row] = await sessionRows(database);
	t.true((row?.expires_on.getTime() ?? 0) - Date.now() > 60_000, 'expiry was renewed to maxAge + 10 s');
	t.is(row?.data['views'], 1);
});

test('renew: a session in the second half of its life is saved again', async (t) => {
	const { database, url } = await app(t, { renew: true, maxAge: 60_000 });
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	const fresh = await request(`${url}/`, jar);
	t.deepEqual(fresh.setCookies, [], 'no save in the first half');
	// Age the stored session past half its life, as koa-session reads it from _expire.
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{_expire}', to_jsonb((extract(epoch from now()) * 1000)::bigint + 20000))`);
	const renewed = await request(`${url}/`, jar);
	t.true(renewed.setCookies.some((set) => set.name === 'koa.sess'));
	const [row] = await sessionRows(database);
	t.true(Number(row?.data['_expire']) - Date.now() > 50_000);
});

test('an expired row starts a fresh session even before cleanup deletes it', async (t) => {
	const { database, url } = await app(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	await database.query(`UPDATE http_sessions SET expires_on = now() - interval '1 ms'`);
	t.deepEqual((await request(`${url}/count`, jar)).body, { views: 1 });
	t.is((await sessionRows(database)).length, 2, 'the expired row is left for cleanup; a new one was made');
});

test('a cookie with a tampered signature starts a fresh session', async (t) => {
	const { url } = await app(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	const signature = jar.cookies.get('koa.sess.sig') ?? '';
	jar.cookies.set('koa.sess.sig', `${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BB' : 'AA'}`);
	t.deepEqual((await request(`${url}/count`, jar)).body, { views: 1 });
});

test('an oversized session answers 500 and the stored session stays as it was', async (t) => {
	const { database, url } = await app(t);
	const jar = new CookieJar();
	await request(`${url}/set?name=ada`, jar);
	const key = sessionKey(jar);
	const oversized = await request(`${url}/set?blob=${'x'.repeat(5_000)}`, jar);
	t.is(oversized.status, 500);
	t.is(sessionKey(jar), key);
	const rows = await sessionRows(database);
	t.is(rows.length, 1);
	t.is(rows[0]?.data['name'], 'ada');
	t.false('blob' in (rows[0]?.data ?? {}));
	t.like((await request(`${url}/`, jar)).body, { name: 'ada' });
});

test('forced saves arrive with changed: false and are written in full', async (t) => {
	const { database, url } = await app(t);
	const jar = new CookieJar();
	// save() on a brand-new session: a row that does not exist yet.
	await request(`${url}/save`, jar);
	t.is((await sessionRows(database)).length, 1);
	await request(`${url}/set?name=ada`, jar);
	// A maxAge change on an otherwise unchanged session ("remember me").
	await request(`${url}/remember-me`, jar);
	const [row] = await sessionRows(database);
	t.is(row?.data['_maxAge'], 30 * day);
	t.true((row?.expires_on.getTime() ?? 0) - Date.now() > 29 * day);
	t.is(row?.data['name'], 'ada');
});

test('100 concurrent requests on one session and 100 new sessions all succeed', async (t) => {
	const { database, url } = await app(t);
	const jar = new CookieJar();
	await request(`${url}/count`, jar);
	const same = await Promise.all(Array.from({ length: 100 }, () => request(`${url}/count`, jar.clone())));
	t.deepEqual(same.filter((response) => response.status !== 200), []);
	const fresh = await Promise.all(Array.from({ length: 100 }, () => request(`${url}/count`, new CookieJar())));
	t.deepEqual(fresh.filter((response) => response.status !== 200), []);
	t.is((await sessionRows(database)).length, 101);
});

test('a logout in one tab is not undone by a slower request of another tab', async (t) => {
	const slowTab = new Gate();
	const { database, url } = await app(t, {}, sessionRoutes({ gate: slowTab }));
	const tab = new CookieJar();
	await request(`${url}/set?user=ada`, tab);
	const slow = request(`${url}/slow-write`, tab.clone());
	await slowTab.arrivals(1);
	await request(`${url}/logout`, tab);
	slowTab.open();
	t.is((await slow).status, 200);
	t.deepEqual(await sessionRows(database), [], 'the slow request did not bring the session back');
});

test('a session cleaned up while a request ran is not recreated by that request', async (t) => {
	const gate = new Gate();
	const { database, url } = await app(t, {}, sessionRoutes({ gate }));
	const jar = new CookieJar();
	await request(`${url}/set?user=ada`, jar);
	const slow = request(`${url}/slow-write`, jar.clone());
	await gate.arrivals(1);
	await database.query('DELETE FROM http_sessions');
	gate.open();
	await slow;
	t.is((await sessionRows(database)).length, 0);
});

test('koa-session accepts the store as an external store, and would refuse one without its methods', async (t) => {
	const { store } = await createStore(t);
	const { default: session } = await import('koa-session');
	const { default: Koa } = await import('koa');
	const contract: Pick<typeof store, 'get' | 'set' | 'destroy'> = store;
	t.notThrows(() => session({ store: contract }, new Koa()));
	t.throws(() => session({ store: { get: store.get, set: store.set } as never }, new Koa()), { message: /destroy/ });
});
