import { createHmac } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { digestKey } from '../src/codec/key-digest.js';
import { cookieName, createLoginApp, type LoginAppOptions } from '../examples/login/app.js';
import { createDatabase, type TestDatabase } from './helpers/database.js';
import { serve, startExample } from './helpers/example.js';
import { CookieJar, request } from './helpers/http.js';

const newSecret = 'a new secret for the login example test: 32+ bytes';
const oldSecret = 'an old secret for the login example test: 32+ bytes';

async function loginApp(t: ExecutionContext, options: Partial<LoginAppOptions> & { database?: TestDatabase } = {}) {
	const database = options.database ?? await createDatabase(t, { migrate: false });
	const { app, store } = await createLoginApp({ connectionString: database.url, secrets: [newSecret, oldSecret], ...options });
	t.teardown(() => store.close());
	return { url: await serve(t, app), database, store };
}

function form(fields: Record<string, string>): RequestInit {
	return { method: 'POST', body: new URLSearchParams(fields), redirect: 'manual' };
}

async function signIn(url: string, jar: CookieJar, username = 'ada', password = 'analytical engine') {
	const passwords: Record<string, string> = { ada: 'analytical engine', alan: 'universal machine' };
	return request(`${url}/sign-in`, jar, form({ username, password: passwords[username] ?? password }));
}

async function rows(database: TestDatabase) {
	return database.query<{ id: string; key: string; data: Record<string, unknown>; subject: string | null; modified_on: Date }>(
		'SELECT id, key, data, subject, modified_on FROM http_sessions ORDER BY id',
	);
}

// Keygrip's signature format: base64url HMAC of "name=value".
function signature(secret: string, value: string): string {
	return createHmac('sha256', secret).update(`${cookieName}=${value}`).digest('base64url');
}

test('signing in moves the session to a new key: the cookie from before sign-in is worth nothing', async (t) => {
	const { url, database } = await loginApp(t);
	const jar = new CookieJar();
	const failed = await request(`${url}/sign-in`, jar, form({ username: 'ada', password: 'wrong' }));
	t.is(failed.status, 401);
	const before = jar.clone();
	const beforeKey = before.cookies.get(cookieName) ?? '';
	t.like(await rows(database), [{ key: digestKey(beforeKey), data: { failedSignIns: 1 }, subject: null }]);

	const signedIn = await signIn(url, jar);
	t.is(signedIn.status, 303);
	const afterKey = jar.cookies.get(cookieName) ?? '';
	t.not(afterKey, beforeKey);
	const stored = await rows(database);
	t.is(stored.length, 1);
	t.is(stored[0]?.key, digestKey(afterKey));
	t.deepEqual(stored[0]?.data['userId'], 'ada');
	t.false('failedSignIns' in (stored[0]?.data ?? {}));
	t.is(stored[0]?.subject, 'ada');

	t.regex(String((await request(`${url}/`, jar)).body), /Signed in as Ada Lovelace/);
	t.regex(String((await request(`${url}/`, before)).body), /<h1>Sign in<\/h1>/);
});

test('a wrong password is a 401 and signs nobody in; the name typed is shown escaped', async (t) => {
	const { url, database } = await loginApp(t);
	const jar = new CookieJar();
	const response = await request(`${url}/sign-in`, jar, form({ username: '<ada>', password: 'analytical engine' }));
	t.is(response.status, 401);
	t.regex(String(response.body), /value="&lt;ada&gt;"/);
	t.like(await rows(database), [{ subject: null, data: { failedSignIns: 1 } }]);
	t.is((await request(`${url}/devices`, jar, { redirect: 'manual' })).status, 303);
});

test('signing out deletes the row and clears the cookies', async (t) => {
	const { url, database } = await loginApp(t);
	const jar = new CookieJar();
	await signIn(url, jar);
	t.is((await rows(database)).length, 1);
	const response = await request(`${url}/sign-out`, jar, form({}));
	t.is(response.status, 303);
	t.deepEqual(response.setCookies.filter((cookie) => cookie.name === cookieName).map((cookie) => cookie.value), ['']);
	t.deepEqual(await rows(database), []);
	t.regex(String((await request(`${url}/`, jar)).body), /<h1>Sign in<\/h1>/);
});

test('the devices page lists the user\'s sessions, marks this one, and signs out another by its id', async (t) => {
	const { url, database } = await loginApp(t);
	const laptop = new CookieJar();
	const phone = new CookieJar();
	const alan = new CookieJar();
	await signIn(url, laptop);
	await signIn(url, phone);
	await signIn(url, alan, 'alan');
	const stored = await rows(database);
	const phoneRow = stored.find((row) => row.key === digestKey(phone.cookies.get(cookieName) ?? ''));
	const laptopRow = stored.find((row) => row.key === digestKey(laptop.cookies.get(cookieName) ?? ''));
	const alanRow = stored.find((row) => row.subject === 'alan');
	if (phoneRow === undefined || laptopRow === undefined || alanRow === undefined) {
		return t.fail('a sign-in left no row');
	}

	const page = String((await request(`${url}/devices`, laptop)).body);
	t.deepEqual([...page.matchAll(/data-session="(\d+)"/g)].map((match) => match[1]).sort(), [laptopRow.id, phoneRow.id].sort());
	t.regex(page, new RegExp(`data-session="${laptopRow.id}">[^]*?<strong>this device</strong>`));
	t.regex(page, new RegExp(`action="/devices/${phoneRow.id}/sign-out"`));
	t.false(page.includes(laptop.cookies.get(cookieName) ?? '-') || page.includes(laptopRow.key), 'no key or digest on the page');

	// Someone else's session id finds nothing: alan cannot sign ada's phone out.
	t.is((await request(`${url}/devices/${phoneRow.id}/sign-out`, alan, form({}))).status, 404);
	t.is((await rows(database)).length, 3);

	t.is((await request(`${url}/devices/${phoneRow.id}/sign-out`, laptop, form({}))).status, 303);
	t.deepEqual((await rows(database)).map((row) => row.id).sort(), [laptopRow.id, alanRow.id].sort());
	t.regex(String((await request(`${url}/`, phone)).body), /<h1>Sign in<\/h1>/);
	t.regex(String((await request(`${url}/`, laptop)).body), /Signed in as Ada/);
});

test('"sign out everywhere else" ends every other session of the user, and only the user\'s', async (t) => {
	const { url, database } = await loginApp(t);
	const devices = [new CookieJar(), new CookieJar(), new CookieJar()];
	for (const jar of devices) {
		await signIn(url, jar);
	}
	const alan = new CookieJar();
	await signIn(url, alan, 'alan');
	const [here, ...others] = devices;
	if (here === undefined) {
		return t.fail();
	}
	const response = await request(`${url}/devices/sign-out-others`, here, form({}));
	t.is(response.status, 303);
	t.regex(String((await request(`${url}/devices?ended=2`, here)).body), /Signed out of 2 other sessions/);
	t.deepEqual((await rows(database)).map((row) => row.subject).sort(), ['ada', 'alan']);
	for (const jar of others) {
		t.regex(String((await request(`${url}/`, jar)).body), /<h1>Sign in<\/h1>/);
	}
	t.regex(String((await request(`${url}/`, alan)).body), /Signed in as Alan/);
});

test('key rotation: a cookie signed with the old secret is re-signed with the new one and survives dropping the old', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const before = await loginApp(t, { database, secrets: [oldSecret] });
	const jar = new CookieJar();
	await signIn(before.url, jar);
	const value = jar.cookies.get(cookieName) ?? '';
	t.is(jar.cookies.get(`${cookieName}.sig`), signature(oldSecret, value));
	const [written] = await rows(database);

	// SESSION_KEYS=new,old
	const during = await loginApp(t, { database, secrets: [newSecret, oldSecret] });
	const response = await request(`${during.url}/`, jar);
	t.regex(String(response.body), /Signed in as Ada[^]*signed with secret #2 of 2, an older one/);
	const reissued = new Map(response.setCookies.map((cookie) => [cookie.name, cookie]));
	t.is(reissued.get(cookieName)?.value, value, 'the same session');
	t.is(reissued.get(`${cookieName}.sig`)?.value, signature(newSecret, value));
	t.truthy(reissued.get(`${cookieName}.sig`)?.attributes.get('expires'), 'a persistent cookie, not one that dies with the browser');
	t.is(reissued.get(`${cookieName}.sig`)?.attributes.get('samesite'), 'lax');
	t.regex(String((await request(`${during.url}/`, jar)).body), /signed with the newest of 2 secrets/);
	t.deepEqual((await rows(database))[0]?.modified_on, written?.modified_on, 'no database write for the reissue');

	// SESSION_KEYS=new
	const after = await loginApp(t, { database, secrets: [newSecret] });
	t.regex(String((await request(`${after.url}/`, jar)).body), /Signed in as Ada/);
});

test('rolling sessions: every response renews the cookie, the row is rewritten only after touchAfter', async (t) => {
	const { url, database } = await loginApp(t, { touchAfter: 60_000 });
	const jar = new CookieJar();
	await signIn(url, jar);
	const [signedIn] = await rows(database);
	const response = await request(`${url}/`, jar);
	t.true(response.setCookies.some((cookie) => cookie.name === cookieName && cookie.attributes.has('expires')), 'cookie re-sent (rolling)');
	t.deepEqual((await rows(database))[0]?.modified_on, signedIn?.modified_on, 'inside touchAfter: no write');

	const { url: eager, database: eagerDatabase } = await loginApp(t, { touchAfter: 0 });
	const other = new CookieJar();
	await signIn(eager, other);
	const [first] = await rows(eagerDatabase);
	await new Promise((resolve) => setTimeout(resolve, 5));
	await request(`${eager}/`, other);
	t.true(((await rows(eagerDatabase))[0]?.modified_on.getTime() ?? 0) > (first?.modified_on.getTime() ?? 0), 'touchAfter: 0 writes every rolling save');
});

test('a form POSTed from another site is refused', async (t) => {
	const { url } = await loginApp(t);
	const jar = new CookieJar();
	await signIn(url, jar);
	const response = await request(`${url}/sign-out`, jar, { ...form({}), headers: { origin: 'https://evil.example' } });
	t.is(response.status, 403);
	t.regex(String((await request(`${url}/`, jar)).body), /Signed in as Ada/);
});

test('`npm run example:login` serves the app on its own database, and stops on SIGTERM', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const example = await startExample(t, 'examples/login/server.ts', { DATABASE_URL: database.url, SESSION_KEYS: `${newSecret},${oldSecret}` });
	const jar = new CookieJar();
	t.is((await signIn(example.url, jar)).status, 303);
	t.regex(String((await request(`${example.url}/devices`, jar)).body), /this device/);
	t.is((await rows(database)).length, 1);
	t.is(await example.stop(), 0, example.output());
});
