import test, { type ExecutionContext } from 'ava';
import { PgStore, type PgStoreOptions } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { Gate } from './helpers/gate.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { createStore, sessionRows } from './helpers/store.js';
import { hour } from './helpers/time.js';

// Once a request has seen that its session was ended by something else, no later write of that
// request brings it back, under its old key or a new one. Each test holds request A at a gate
// after it loaded its session, ends the session from elsewhere, then lets A go on.

type SessionOptions = Record<string, unknown>;

async function gatedApp(t: ExecutionContext, sessionOptions: SessionOptions = {}, storeOptions: Omit<PgStoreOptions, 'prisma' | 'connectionString'> = {}) {
	const gate = new Gate();
	const { store, database } = await createStore(t, { subject: (session) => session['userId'] as string | undefined, ...storeOptions });
	const { url } = await startApp(t, { session: { store, maxAge: hour, ...sessionOptions }, handler: sessionRoutes({ store, gate }) });
	return { gate, store, database, url };
}

/** Signs `user` in on a new browser; returns its cookie jar. */
async function signedIn(url: string, user = 'alice'): Promise<CookieJar> {
	const jar = new CookieJar();
	await request(`${url}/sign-in?user=${user}`, jar);
	return jar;
}

/** What the old cookie reads now. */
async function sessionOf(url: string, jar: CookieJar): Promise<unknown> {
	return (await request(`${url}/`, jar.clone())).body;
}

for (const then of ['save', 'save-twice'] as const) {
	test(`a logout elsewhere is not undone by a request in flight that calls ${then === 'save' ? 'save() and then auto-commits' : 'save() twice'}`, async (t) => {
		const { gate, database, url } = await gatedApp(t);
		const tab = await signedIn(url);
		const inFlight = request(`${url}/later?cart=3&then=${then}`, tab.clone());
		await gate.arrivals(1);
		await request(`${url}/logout`, tab.clone());
		gate.open();
		t.is((await inFlight).status, 200);
		t.deepEqual(await sessionRows(database), [], 'no row came back');
		t.deepEqual(await sessionOf(url, tab), {});
	});
}

for (const sessionOptions of [{ rolling: true }, { renew: true }] as const) {
	test(`a logout elsewhere is not undone by a request in flight with ${JSON.stringify(sessionOptions)}`, async (t) => {
		const { gate, database, url } = await gatedApp(t, sessionOptions);
		const tab = await signedIn(url);
		if ('renew' in sessionOptions) {
			// Past half its maxAge, so koa-session renews it on the next request.
			await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{_expire}', to_jsonb((extract(epoch FROM now()) * 1000)::bigint + 60000))`);
		}
		const inFlight = request(`${url}/later`, tab.clone());
		await gate.arrivals(1);
		await request(`${url}/logout`, tab.clone());
		gate.open();
		const response = await inFlight;
		t.is(response.status, 200);
		t.true(response.setCookies.some((cookie) => cookie.name === 'koa.sess'), 'koa-session saved the session');
		t.deepEqual(await sessionRows(database), []);
	});
}

test('regenerate() after a sign-out everywhere rejects with SessionEndedError: no new key, no cookie, 401', async (t) => {
	const { gate, store, database, url } = await gatedApp(t);
	const tab = await signedIn(url);
	const inFlight = request(`${url}/later?then=regenerate`, tab.clone());
	await gate.arrivals(1);
	t.is(await store.destroyAll('alice'), 1);
	gate.open();
	const response = await inFlight;
	t.is(response.status, 401);
	t.deepEqual(response.body, { ended: true });
	t.false(response.setCookies.some((cookie) => cookie.name === 'koa.sess' && cookie.value !== ''), 'no cookie for a new key');
	t.deepEqual(await sessionRows(database), [], 'alice is not signed in again');
});

test('a password reset ends every session of the user, its own included, and signs in on a fresh key', async (t) => {
	const { database, url } = await gatedApp(t);
	const laptop = await signedIn(url);
	const phone = await signedIn(url);
	const before = laptop.cookies.get('koa.sess');
	const response = await request(`${url}/password-reset`, laptop);
	t.is(response.status, 200);
	t.like(response.body, { userId: 'alice', reset: true });
	const after = laptop.cookies.get('koa.sess') ?? '';
	t.not(after, before);
	const rows = await database.query<{ key: string; subject: string }>('SELECT key, subject FROM http_sessions');
	t.deepEqual(rows, [{ key: digestKey(after), subject: 'alice' }]);
	t.deepEqual(await sessionOf(url, phone), {});
	t.like(await sessionOf(url, laptop), { userId: 'alice', reset: true });
});

test('a sign-out everywhere from another store instance ends sessions whose requests are in flight and call save()', async (t) => {
	const { gate, database, url } = await gatedApp(t);
	const tabs = await Promise.all([signedIn(url), signedIn(url), signedIn(url)]);
	const bob = await signedIn(url, 'bob');
	const inFlight = tabs.map((tab) => request(`${url}/later?cart=1&then=save`, tab.clone()));
	const bobInFlight = request(`${url}/later?cart=2&then=save`, bob.clone());
	await gate.arrivals(4);
	const elsewhere = new PgStore({ connectionString: database.url, cleanupInterval: 0, subject: (session) => session['userId'] as string | undefined });
	t.teardown(() => elsewhere.close());
	t.is(await elsewhere.destroyAll('alice'), 3);
	gate.open();
	t.deepEqual((await Promise.all(inFlight)).map((response) => response.status), [200, 200, 200]);
	t.is((await bobInFlight).status, 200);
	const rows = await database.query<{ subject: string; cart: string }>(`SELECT subject, data->>'cart' AS cart FROM http_sessions`);
	t.deepEqual(rows, [{ subject: 'bob', cart: '2' }], 'only bob\'s session, with his save');
});

test('a request that loaded no session still starts new ones', async (t) => {
	const { database, url } = await gatedApp(t);
	const jar = new CookieJar();
	t.like((await request(`${url}/set?lang=fr`, jar)).body, { lang: 'fr' });
	t.is((await sessionRows(database)).length, 1);
});
