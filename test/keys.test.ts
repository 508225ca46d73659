import { createHmac } from 'node:crypto';
import test from 'ava';
import Keygrip from 'keygrip';
import type Koa from 'koa';
import { createKeys, PgStore, reissueOnRotation } from '../src/index.js';
import { countingClient } from './helpers/counting-client.js';
import { createDatabase } from './helpers/database.js';
import { CookieJar, request, startApp, type SetCookie } from './helpers/http.js';
import { sessionRows } from './helpers/store.js';
import { hour } from './helpers/time.js';

const oldSecret = 'old-secret-0123456789-abcdefghijklmnop';
const newSecret = 'new-secret-0123456789-abcdefghijklmnop';
const sessionId = 'fixed-session-id';

test('createKeys signs with HMAC-SHA256 under the first secret and verifies all of them', (t) => {
	const keys = createKeys([newSecret, oldSecret]);
	const expected = createHmac('sha256', newSecret).update('sid=x').digest('base64url');
	t.is(keys.sign('sid=x'), expected);
	t.is(keys.index('sid=x', createHmac('sha256', oldSecret).update('sid=x').digest('base64url')), 1);
	t.is(keys.index('sid=x', 'forged'), -1);
	t.is(createKeys(`${newSecret}, ${oldSecret}`).sign('sid=x'), expected, 'a comma-separated list works too');
});

test('createKeys rejects weak or malformed secret lists without echoing secrets', (t) => {
	const short = 'too-short-secret';
	const cases: [unknown, RegExp][] = [
		[undefined, /`secrets`/],
		[[], /`secrets` to be a non-empty array/],
		['', /`secrets\[0\]` to be a non-empty string/],
		[[newSecret, ''], /`secrets\[1\]` to be a non-empty string/],
		[`${newSecret},,${oldSecret}`, /`secrets\[1\]`/],
		[[short], /`secrets\[0\]` to be at least 32 bytes long.*got 16 bytes/],
		[[newSecret, newSecret], /`secrets\[1\]` to be different from every other secret, got a duplicate/],
		[[newSecret, 42], /`secrets\[1\]` to be a non-empty string, got a number/],
	];
	for (const [secrets, message] of cases) {
		// @ts-expect-error: deliberately wrong
		const error = t.throws(() => createKeys(secrets), { instanceOf: TypeError, message });
		t.false(error?.message.includes(short) || error?.message.includes(newSecret), 'no secret in the message');
	}
});

test('createKeys refuses weak or unknown HMAC algorithms when it is called, not at the first signature', (t) => {
	for (const algorithm of ['md5', 'sha1', 'SHA256', 'sha3-256', 'whirlpool-typo', '']) {
		t.throws(() => createKeys([newSecret], { algorithm: algorithm as 'sha256' }), {
			instanceOf: TypeError,
			message: `Expected \`algorithm\` to be one of "sha256", "sha384", "sha512", got ${JSON.stringify(algorithm)}`,
		});
	}
	for (const algorithm of ['sha384', 'sha512'] as const) {
		t.is(createKeys([newSecret], { algorithm }).sign('sid=x'), createHmac(algorithm, newSecret).update('sid=x').digest('base64url'));
	}
	// The second argument was once the algorithm; a secret put there by mistake is not echoed.
	const error = t.throws(() => createKeys([newSecret], oldSecret as never), { instanceOf: TypeError, message: /`options` to be an object.*got a string/ });
	t.false(error?.message.includes(oldSecret));
});

test('legacySha1Secrets take the old app.keys as they are, and reject malformed lists without echoing them', (t) => {
	const shortLegacy = 'keyboard cat';
	const keys = createKeys([newSecret], { legacySha1Secrets: [shortLegacy] });
	t.is(keys.index('sid=x', new Keygrip([shortLegacy]).sign('sid=x')), 1, 'after every current secret');
	t.true(keys.verify('sid=x', new Keygrip([shortLegacy]).sign('sid=x')));
	t.is(keys.sign('sid=x'), createHmac('sha256', newSecret).update('sid=x').digest('base64url'), 'never signs with SHA-1');
	t.is(createKeys([newSecret], { legacySha1Secrets: `${oldSecret}, ${shortLegacy}` }).index('sid=x', new Keygrip([shortLegacy]).sign('sid=x')), 2);
	t.is(createKeys([newSecret], { legacySha1Secrets: [] }).index('sid=x', new Keygrip([shortLegacy]).sign('sid=x')), -1);
	const cases: [unknown, RegExp][] = [
		['', /`legacySha1Secrets\[0\]` to be a non-empty string, got an empty string/],
		[[shortLegacy, shortLegacy], /`legacySha1Secrets\[1\]` to be different from every other secret, got a duplicate/],
		[[shortLegacy, 7], /`legacySha1Secrets\[1\]` to be a non-empty string, got a number/],
		[{ 0: shortLegacy }, /`legacySha1Secrets` to be a non-empty array/],
	];
	for (const [legacySha1Secrets, message] of cases) {
		const error = t.throws(() => createKeys([newSecret], { legacySha1Secrets: legacySha1Secrets as string[] }), { instanceOf: TypeError, message });
		t.false(error?.message.includes(shortLegacy), 'no secret in the message');
	}
});

const handler: Koa.Middleware = (ctx) => {
	if (ctx.session === null) {
		return;
	}
	if (ctx.path === '/login') {
		ctx.session['user'] = 'ada';
	}
	ctx.body = ctx.session.toJSON();
};

async function rotationSetup(t: Parameters<typeof createDatabase>[0], { reissue = true, keys = [newSecret, oldSecret], mountedBefore = false } = {}) {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	const sessionOptions = { key: 'sid', store, maxAge: hour, sameSite: 'lax' as const, genid: () => sessionId };
	// Before the rotation: the app signs with the old secret only.
	const before = await startApp(t, { keys: createKeys([oldSecret]), session: sessionOptions, handler });
	const jar = new CookieJar();
	await request(`${before.url}/login`, jar);
	t.is(jar.cookies.get('sid'), sessionId);
	t.is(jar.cookies.get('sid.sig'), createHmac('sha256', oldSecret).update(`sid=${sessionId}`).digest('base64url'));
	// After it: the new secret first, the old one kept.
	const after = await startApp(t, {
		keys: createKeys(keys),
		session: sessionOptions,
		...mountedBefore ? { before: reissueOnRotation() } : {},
		handler: async (ctx, next) => {
			if (reissue && !mountedBefore) {
				await reissueOnRotation()(ctx, async () => handler(ctx, next));
			} else {
				await handler(ctx, next);
			}
		},
	});
	return { database, statements, jar, url: after.url };
}

function attributes(cookie: SetCookie | undefined) {
	return Object.fromEntries(cookie?.attributes ?? []);
}

for (const mountedBefore of [false, true]) {
	test(`after a rotation an old-key cookie is accepted and both cookies come back whole, newest-key signed (reissueOnRotation mounted ${mountedBefore ? 'before' : 'after'} koa-session)`, async (t) => {
		const { database, statements, jar, url } = await rotationSetup(t, { mountedBefore });
		const [stored] = await sessionRows(database);
		const expire = Number(stored?.data['_expire']);
		const before = statements();

		const response = await request(`${url}/`, jar);
		t.like(response.body, { user: 'ada' });
		t.is(statements() - before, 1, 'one read, no write');
		t.deepEqual(await sessionRows(database), [stored]);

		const sid = response.setCookies.filter((cookie) => cookie.name === 'sid');
		const sig = response.setCookies.filter((cookie) => cookie.name === 'sid.sig');
		t.is(sid.length, 1);
		t.is(sig.length, 1, 'the bare .sig that `cookies` set was replaced');
		t.is(sid[0]?.value, sessionId);
		// HMAC-SHA256 of "sid=fixed-session-id" under the new secret.
		t.is(sig[0]?.value, 'YX6fvmZwnKyhTtTVVhGK9a9nWqjKH-fkpXyoC9pn4LM');
		t.is(sig[0]?.value, createHmac('sha256', newSecret).update(`sid=${sessionId}`).digest('base64url'));
		const expires = new Date(expire).toUTCString();
		for (const cookie of [sid[0], sig[0]]) {
			t.deepEqual(attributes(cookie), { path: '/', expires, samesite: 'lax', httponly: '' });
		}
		// The next request verifies with the newest key: nothing to re-issue.
		const again = await request(`${url}/`, jar);
		t.deepEqual(again.setCookies, []);
		t.like(again.body, { user: 'ada' });
	});
}

test('without reissueOnRotation `cookies` re-sets only a bare .sig (pillarjs/cookies#22)', async (t) => {
	const { jar, url } = await rotationSetup(t, { reissue: false });
	const response = await request(`${url}/`, jar);
	t.like(response.body, { user: 'ada' });
	const [sig, ...others] = response.setCookies;
	t.deepEqual(others, []);
	t.is(sig?.name, 'sid.sig');
	t.false(sig?.attributes.has('expires'), 'no expiry: it dies with the browser');
	t.false(sig?.attributes.has('samesite'));
});

test('once the old key is dropped its cookies start a fresh session without a query', async (t) => {
	const { statements, jar, url } = await rotationSetup(t, { keys: [newSecret] });
	const before = statements();
	const response = await request(`${url}/`, jar);
	t.deepEqual(response.body, {});
	t.is(statements(), before, 'the store was never asked');
});

test('a cookie whose signature does not verify never reaches the database', async (t) => {
	const { statements, jar, url } = await rotationSetup(t);
	jar.cookies.set('sid.sig', createHmac('sha256', 'an attacker secret of 32+ bytes......').update(`sid=${sessionId}`).digest('base64url'));
	const before = statements();
	t.deepEqual((await request(`${url}/`, jar)).body, {});
	jar.cookies.delete('sid.sig');
	t.deepEqual((await request(`${url}/`, jar)).body, {}, 'nor does an unsigned one');
	t.is(statements(), before);
});

test('reissueOnRotation works with app.keys as a plain array and leaves new sessions alone', async (t) => {
	const database = await createDatabase(t);
	const store = new PgStore({ connectionString: database.url, cleanupInterval: 0 });
	t.teardown(() => store.close());
	const options = { key: 'sid', store, maxAge: hour };
	const old = await startApp(t, { keys: [oldSecret], session: options, handler });
	const jar = new CookieJar();
	await request(`${old.url}/login`, jar);
	const rotated = await startApp(t, {
		keys: [newSecret, oldSecret],
		session: options,
		handler: (ctx, next) => reissueOnRotation({ key: 'sid' })(ctx, async () => handler(ctx, next)),
	});
	const response = await request(`${rotated.url}/`, jar);
	const sig = response.setCookies.find((cookie) => cookie.name === 'sid.sig');
	t.is(sig?.value, new Keygrip([newSecret]).sign(`sid=${jar.cookies.get('sid')}`));
	t.true(sig?.attributes.has('expires'));
	const fresh = await request(`${rotated.url}/`, new CookieJar());
	t.deepEqual(fresh.setCookies, []);
	t.throws(() => reissueOnRotation({ key: '' }), { instanceOf: TypeError });
});

test('reissueOnRotation mounted without koa-session says so', async (t) => {
	const Koa = (await import('koa')).default;
	const app = new Koa();
	const ctx = app.createContext({ headers: {} } as never, { setHeader() {}, getHeader() {} } as never);
	await t.throwsAsync(reissueOnRotation()(ctx, async () => {}), { instanceOf: TypeError, message: /needs koa-session's middleware/ });
});

const legacySecret = 'keyboard cat'; // what Koa's docs put in `app.keys`: short, and signed with SHA-1

// Before: `app.keys = [legacySecret]`, Keygrip's HMAC-SHA1. After: createKeys with the legacy list.
async function legacySetup(t: Parameters<typeof createDatabase>[0], keysAfter: Keygrip) {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	const sessionOptions = { key: 'sid', store, maxAge: hour, sameSite: 'lax' as const, genid: () => sessionId };
	const before = await startApp(t, { keys: [legacySecret], session: sessionOptions, handler });
	const jar = new CookieJar();
	await request(`${before.url}/login`, jar);
	t.is(jar.cookies.get('sid.sig'), createHmac('sha1', legacySecret).update(`sid=${sessionId}`).digest('base64url'), 'signed with SHA-1');
	const after = await startApp(t, {
		keys: keysAfter,
		session: sessionOptions,
		handler: (ctx, next) => reissueOnRotation()(ctx, async () => handler(ctx, next)),
	});
	return { database, statements, jar, url: after.url };
}

test('a cookie SHA-1-signed under the old app.keys keeps its session after the move to createKeys, re-signed with SHA-256', async (t) => {
	const { database, statements, jar, url } = await legacySetup(t, createKeys([newSecret], { legacySha1Secrets: [legacySecret] }));
	const [stored] = await sessionRows(database);
	const before = statements();

	const response = await request(`${url}/`, jar);
	t.like(response.body, { user: 'ada' });
	t.is(statements() - before, 1, 'one read, no write');
	const sid = response.setCookies.filter((cookie) => cookie.name === 'sid');
	const sig = response.setCookies.filter((cookie) => cookie.name === 'sid.sig');
	t.is(sid.length, 1);
	t.is(sig.length, 1);
	t.is(sig[0]?.value, createHmac('sha256', newSecret).update(`sid=${sessionId}`).digest('base64url'));
	const expires = new Date(Number(stored?.data['_expire'])).toUTCString();
	for (const cookie of [sid[0], sig[0]]) {
		t.deepEqual(attributes(cookie), { path: '/', expires, samesite: 'lax', httponly: '' }, 'reissued whole, not a bare .sig');
	}
	const again = await request(`${url}/`, jar);
	t.like(again.body, { user: 'ada' });
	t.deepEqual(again.setCookies, [], 'now signed with the newest key: nothing to reissue');
});

test('only the listed legacy secrets verify with SHA-1: forged and downgraded signatures never reach the database', async (t) => {
	const { statements, jar, url } = await legacySetup(t, createKeys([newSecret], { legacySha1Secrets: [legacySecret] }));
	const before = statements();
	const sha1 = (secret: string) => createHmac('sha1', secret).update(`sid=${sessionId}`).digest('base64url');
	for (const forged of [sha1('an attacker secret'), sha1(newSecret), createHmac('sha256', legacySecret).update(`sid=${sessionId}`).digest('base64url')]) {
		const forgedJar = jar.clone();
		forgedJar.cookies.set('sid.sig', forged);
		const response = await request(`${url}/`, forgedJar);
		t.deepEqual(response.body, {}, 'a fresh session');
		t.false(forgedJar.cookies.has('sid.sig'), 'cookies clears the bad signature');
	}
	t.is(statements(), before, 'the store was never asked');
});

test('without legacySha1Secrets the SHA-1 cookies of the old app.keys start fresh sessions', async (t) => {
	const { jar, url } = await legacySetup(t, createKeys([newSecret]));
	t.deepEqual((await request(`${url}/`, jar)).body, {});
});
