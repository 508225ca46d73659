import test, { type ExecutionContext } from 'ava';
import { kidOf } from '../src/codec/cipher.js';
import { PgStore, SessionTamperedError, type ErrorContext, type PgStoreOptions } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import type { TestDatabase } from './helpers/database.js';
import { Gate } from './helpers/gate.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { createStore, sessionRows } from './helpers/store.js';
import { day, hour, minute } from './helpers/time.js';

const newSecret = 'the newest data secret of at least 32 bytes';
const oldSecret = 'an older data secret also of at least 32 bytes';
const ciphertext = /^pgse:v1:([A-Za-z0-9_-]{6}):[A-Za-z0-9_-]+$/;

type Reported = [Error, ErrorContext];

/** A store with encryption on, whose `onError` reports are collected. */
async function encryptedStore(t: ExecutionContext, options: Omit<PgStoreOptions, 'prisma' | 'connectionString'> = {}) {
	const reported: Reported[] = [];
	const { store, database } = await createStore(t, { encryptionKeys: newSecret, onError: (error, context) => { reported.push([error, context]); }, ...options });
	return { store, database, reported };
}

/** Another store on the same table, with options of its own (another deployment of the app). */
function sameTable(t: ExecutionContext, database: TestDatabase, options: Omit<PgStoreOptions, 'prisma' | 'connectionString'> = {}) {
	const reported: Reported[] = [];
	const store = new PgStore({ connectionString: database.url, cleanupInterval: 0, onError: (error, context) => { reported.push([error, context]); }, ...options });
	t.teardown(() => store.close());
	return { store, reported };
}

async function storedText(database: TestDatabase): Promise<string[]> {
	return (await database.query<{ text: string }>('SELECT data::text AS text FROM http_sessions ORDER BY id')).map((row) => row.text);
}

async function storedData(database: TestDatabase, key: string): Promise<Record<string, unknown>> {
	const [row] = await database.query<{ data: Record<string, unknown> }>('SELECT data FROM http_sessions WHERE key = $1', [digestKey(key)]);
	return row?.data ?? {};
}

function kidsOf(data: Record<string, unknown>): Set<string> {
	return new Set(Object.entries(data).filter(([name]) => !name.startsWith('_')).map(([, value]) => ciphertext.exec(String(value))?.[1] ?? 'not a ciphertext'));
}

function tamperedReports(reported: Reported[]) {
	return reported.map(([error, context]) => ({
		code: error instanceof SessionTamperedError ? error.code : error.name,
		reason: error instanceof SessionTamperedError ? error.reason : undefined,
		fields: error instanceof SessionTamperedError ? [...error.fields] : undefined,
		source: context.source,
	}));
}

test('with encryptionKeys the row holds no value in clear: field names and koa-session\'s fields stay plain, every value is a pgse:v1 ciphertext of the newest secret', async (t) => {
	const { store, database } = await encryptedStore(t);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	const jar = new CookieJar();
	await request(`${url}/set?email=alice@example.com&refreshToken=1%2F0AfJohXn-secret&admin=false`, jar);
	const [text = ''] = await storedText(database);
	for (const value of ['alice@example.com', '1/0AfJohXn-secret', 'false']) {
		t.false(text.includes(value), `the row holds ${value}`);
	}
	const [row] = await sessionRows(database);
	const data = row?.data ?? {};
	t.deepEqual(Object.keys(data).sort(), ['_expire', '_maxAge', 'admin', 'email', 'refreshToken']);
	t.is(typeof data['_expire'], 'number');
	t.is(data['_maxAge'], hour);
	t.deepEqual(kidsOf(data), new Set([kidOf(newSecret)]));

	const again = await request(`${url}/`, jar);
	t.like(again.body, { email: 'alice@example.com', refreshToken: '1/0AfJohXn-secret', admin: 'false' }, 'the app reads its values back');
});

test('values of every JSON type come back as they were saved', async (t) => {
	const { store } = await encryptedStore(t);
	const session = { n: 1.5, yes: true, none: null, list: [1, 'two', { three: 3 }], nested: { deep: { s: 'é ✓ 😀' } }, empty: '' };
	await store.set('k', session, hour);
	t.deepEqual(await store.get('k', hour, {}), session);
	// A field named __proto__ stays a field, as JSON.parse makes it.
	await store.set('proto', JSON.parse('{"__proto__": {"admin": true}}') as Record<string, unknown>, hour);
	const loaded = await store.get('proto', hour, {});
	t.is(Object.getPrototypeOf(loaded), Object.prototype);
	t.deepEqual(Object.getOwnPropertyDescriptor(loaded, '__proto__')?.value, { admin: true });
});

test('two concurrent requests of one session changing different fields keep both changes with encryption on', async (t) => {
	const gate = new Gate();
	const { store, database } = await encryptedStore(t);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store, gate }) });
	const browser = new CookieJar();
	await request(`${url}/set?cart=1&lang=en&coupon=SAVE10`, browser);
	const responses = ['/later?cart=2&-coupon', '/later?lang=fr'].map((path) => request(`${url}${path}`, browser.clone()));
	await gate.arrivals(2);
	gate.open();
	t.deepEqual((await Promise.all(responses)).map((response) => response.status), [200, 200]);
	const after = await request(`${url}/`, browser);
	const { _expire, _maxAge, ...data } = after.body as Record<string, unknown>;
	t.deepEqual(data, { cart: '2', lang: 'fr' });
	t.false((await storedText(database))[0]?.includes('SAVE10'));
});

test('a save rewrites only the fields it changed: the ciphertext of an unchanged field stays as it was', async (t) => {
	const { store, database } = await encryptedStore(t);
	await store.set('k', { cart: '1', lang: 'en' }, hour);
	const before = await storedData(database, 'k');
	const ctx = {};
	await store.get('k', hour, { ctx });
	await store.set('k', { cart: '2', lang: 'en' }, hour, { ctx, changed: true });
	const after = await storedData(database, 'k');
	t.is(after['lang'], before['lang'], 'the unchanged field was not re-encrypted');
	t.not(after['cart'], before['cart']);
	t.deepEqual(await store.get('k', hour, {}), { cart: '2', lang: 'en' });
});

test('fieldLevelWrites: false writes the whole session encrypted', async (t) => {
	const { store, database } = await encryptedStore(t, { fieldLevelWrites: false });
	await store.set('k', { cart: '1', lang: 'en' }, hour);
	const ctx = {};
	await store.get('k', hour, { ctx });
	await store.set('k', { cart: '2', lang: 'en' }, hour, { ctx, changed: true });
	const data = await storedData(database, 'k');
	t.deepEqual(kidsOf(data), new Set([kidOf(newSecret)]));
	t.false(JSON.stringify(data).includes('"2"'));
	t.deepEqual(await store.get('k', hour, {}), { cart: '2', lang: 'en' });
});

test('a ciphertext moved to another field of its row does not decrypt: get gives undefined and onError a SessionTamperedError without the data', async (t) => {
	const { store, database, reported } = await encryptedStore(t);
	await store.set('k', { userId: 'alice', role: 'user' }, hour);
	await store.set('admin-key', { userId: 'root', role: 'admin' }, hour);
	// Read first, so that a cache of what authenticated cannot stand in for authentication.
	t.like(await store.get('k', hour, {}), { userId: 'alice' });
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{userId}', data->'role') WHERE key = $1`, [digestKey('k')]);
	t.is(await store.get('k', hour, {}), undefined);
	t.deepEqual(tamperedReports(reported), [{ code: 'ERR_PGSTORE_TAMPERED', reason: 'authentication', fields: ['userId'], source: 'get' }]);
	const [error] = reported[0] ?? [];
	t.false(JSON.stringify({ message: error?.message, ...error }).includes('alice'));
	t.false(error?.message.includes(digestKey('k')));
});

test('a ciphertext moved to another row, or a row moved to another key, does not decrypt', async (t) => {
	const { store, database, reported } = await encryptedStore(t);
	await store.set('mine', { role: 'user' }, hour);
	await store.set('theirs', { role: 'admin' }, hour);
	t.like(await store.get('mine', hour, {}), { role: 'user' });
	t.like(await store.get('theirs', hour, {}), { role: 'admin' });
	// The admin's role ciphertext, copied into my row.
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{role}', (SELECT data->'role' FROM http_sessions WHERE key = $2)) WHERE key = $1`, [digestKey('mine'), digestKey('theirs')]);
	t.is(await store.get('mine', hour, {}), undefined);
	// The admin's row given my key.
	await database.query('DELETE FROM http_sessions WHERE key = $1', [digestKey('mine')]);
	await database.query('UPDATE http_sessions SET key = $1 WHERE key = $2', [digestKey('mine'), digestKey('theirs')]);
	t.is(await store.get('mine', hour, {}), undefined);
	t.deepEqual(tamperedReports(reported).map((report) => report.reason), ['authentication', 'authentication']);
});

test('over HTTP, a row changed by a table writer gives the request a fresh session, not the forged one', async (t) => {
	const { store, database, reported } = await encryptedStore(t);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	const jar = new CookieJar();
	await request(`${url}/set?userId=alice&lang=en`, jar);
	// The attack: write one's own userId as "admin" in the row.
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{userId}', '"admin"')`);
	const forged = await request(`${url}/`, jar);
	t.is(forged.status, 200);
	t.is((forged.body as Record<string, unknown>)['userId'], undefined);
	t.deepEqual(tamperedReports(reported), [{ code: 'ERR_PGSTORE_TAMPERED', reason: 'mixed', fields: ['userId'], source: 'get' }]);
});

test('a plain row inserted by a table writer is refused, and so is a malformed ciphertext', async (t) => {
	const { store, database, reported } = await encryptedStore(t);
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) VALUES ($1, '{"userId": "admin"}', now(), now(), now() + interval '1 hour')`, [digestKey('forged')]);
	t.is(await store.get('forged', hour, {}), undefined);
	await store.set('k', { userId: 'alice' }, hour);
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{userId}', '"pgse:v1:AAAAAA:not base64!"') WHERE key = $1`, [digestKey('k')]);
	t.is(await store.get('k', hour, {}), undefined);
	t.deepEqual(tamperedReports(reported), [
		{ code: 'ERR_PGSTORE_TAMPERED', reason: 'plain', fields: ['userId'], source: 'get' },
		{ code: 'ERR_PGSTORE_TAMPERED', reason: 'malformed', fields: ['userId'], source: 'get' },
	]);
});

test('a reserved field of the wrong type must be a ciphertext too', async (t) => {
	const { store, database, reported } = await encryptedStore(t);
	await store.set('k', { _expire: Date.now() + hour, _maxAge: hour, user: 'alice' }, hour);
	t.like(await storedData(database, 'k'), { _maxAge: hour });
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{_maxAge}', '"session"')`);
	t.is(await store.get('k', hour, {}), undefined);
	t.deepEqual(tamperedReports(reported).map((report) => report.reason), ['mixed']);
});

test('rotation: rows of an older secret are read, and the next save re-encrypts every field with the newest, even within touchAfter', async (t) => {
	const { store: before, database } = await encryptedStore(t, { encryptionKeys: oldSecret });
	const { url: oldUrl } = await startApp(t, { session: { store: before, maxAge: hour }, handler: sessionRoutes({ store: before }) });
	const jar = new CookieJar();
	await request(`${oldUrl}/set?email=alice@example.com&lang=en`, jar);
	t.deepEqual(kidsOf(await storedData(database, jarKey(jar))), new Set([kidOf(oldSecret)]));

	// The app deployed again with a new secret first; a rolling request that changes nothing.
	const { store: after, reported } = sameTable(t, database, { encryptionKeys: [newSecret, oldSecret], touchAfter: hour });
	const { url } = await startApp(t, { session: { store: after, maxAge: hour, rolling: true }, handler: sessionRoutes({ store: after }) });
	const read = await request(`${url}/`, jar);
	t.like(read.body, { email: 'alice@example.com', lang: 'en' });
	const rewritten = await storedData(database, jarKey(jar));
	t.deepEqual(kidsOf(rewritten), new Set([kidOf(newSecret)]), 'every field under the newest secret');
	t.false(JSON.stringify(rewritten).includes('alice'));

	// Once re-encrypted, touchAfter skips unchanged saves again.
	const [modified] = await database.query<{ modified_on: Date }>('SELECT modified_on FROM http_sessions');
	await request(`${url}/`, jar);
	t.deepEqual(await database.query<{ modified_on: Date }>('SELECT modified_on FROM http_sessions'), [modified]);
	t.deepEqual(reported, []);
});

test('rotation keeps a concurrent request\'s new field: the re-encrypting save is still a merge', async (t) => {
	const { store: before, database } = await encryptedStore(t, { encryptionKeys: oldSecret });
	await before.set('k', { cart: '1' }, hour);
	const { store } = sameTable(t, database, { encryptionKeys: [newSecret, oldSecret] });
	const [slow, fast] = [{}, {}];
	await store.get('k', hour, { ctx: slow });
	await store.get('k', hour, { ctx: fast });
	await store.set('k', { cart: '1', lang: 'fr' }, hour, { ctx: fast, changed: true });
	await store.set('k', { cart: '1' }, hour, { ctx: slow, changed: false });
	t.deepEqual(await store.get('k', hour, {}), { cart: '1', lang: 'fr' });
	t.deepEqual(kidsOf(await storedData(database, 'k')), new Set([kidOf(newSecret)]));
});

test('dropping a secret ends the sessions only it could read: get gives undefined, and onError is not called', async (t) => {
	const { store: before, database } = await encryptedStore(t, { encryptionKeys: oldSecret });
	await before.set('k', { userId: 'alice' }, hour);
	const { store, reported } = sameTable(t, database, { encryptionKeys: newSecret });
	t.is(await store.get('k', hour, {}), undefined);
	t.deepEqual(reported, []);
});

test('encryptionMigration: plain rows are read until acceptPlainRowsUntil, and their next save encrypts every field, even within touchAfter', async (t) => {
	const { store: plain, database } = await createStore(t);
	const { url: plainUrl } = await startApp(t, { session: { store: plain, maxAge: hour }, handler: sessionRoutes({ store: plain }) });
	const jar = new CookieJar();
	await request(`${plainUrl}/set?email=alice@example.com&cart=3`, jar);
	t.is((await storedData(database, jarKey(jar)))['email'], 'alice@example.com');

	const { store, reported } = sameTable(t, database, { encryptionKeys: newSecret, encryptionMigration: { acceptPlainRowsUntil: new Date(Date.now() + day) }, touchAfter: hour });
	const { url } = await startApp(t, { session: { store, maxAge: hour, rolling: true }, handler: sessionRoutes({ store }) });
	t.like((await request(`${url}/`, jar)).body, { email: 'alice@example.com', cart: '3' });
	const encrypted = await storedData(database, jarKey(jar));
	t.deepEqual(kidsOf(encrypted), new Set([kidOf(newSecret)]));
	t.like((await request(`${url}/`, jar)).body, { email: 'alice@example.com', cart: '3' }, 'and it reads as encrypted now');
	t.deepEqual(reported, []);
});

test('encryptionMigration: after acceptPlainRowsUntil plain rows are refused, and a mixed row is refused within the window', async (t) => {
	const { store: plain, database } = await createStore(t);
	await plain.set('plain', { userId: 'alice' }, hour);
	const { store: past, reported: pastReports } = sameTable(t, database, { encryptionKeys: newSecret, encryptionMigration: { acceptPlainRowsUntil: new Date(Date.now() - minute) } });
	t.is(await past.get('plain', hour, {}), undefined);
	t.deepEqual(tamperedReports(pastReports).map((report) => report.reason), ['plain']);

	const { store, reported } = sameTable(t, database, { encryptionKeys: newSecret, encryptionMigration: { acceptPlainRowsUntil: new Date(Date.now() + day) } });
	await store.set('mixed', { userId: 'alice' }, hour);
	await database.query(`UPDATE http_sessions SET data = data || '{"role": "admin"}' WHERE key = $1`, [digestKey('mixed')]);
	t.is(await store.get('mixed', hour, {}), undefined);
	t.deepEqual(tamperedReports(reported).map((report) => [report.reason, report.fields]), [['mixed', ['role']]]);
});

test('maxLength measures the stored, encrypted form', async (t) => {
	const { store, database } = await encryptedStore(t, { maxLength: 300 });
	// 150 bytes of JSON, about 260 once encrypted: fits.
	await t.notThrowsAsync(store.set('fits', { note: 'x'.repeat(140) }, hour));
	// 200 bytes of JSON, under maxLength, but about 330 once encrypted.
	const error = await t.throwsAsync(store.set('big', { note: 'x'.repeat(190) }, hour));
	t.is(error?.name, 'SessionTooLargeError');
	t.deepEqual((await sessionRows(database)).length, 1);
});

test('bad encryptionKeys and encryptionMigration throw a TypeError that never echoes a secret', (t) => {
	const connectionString = 'postgres://127.0.0.1/none';
	const cases: [unknown, RegExp][] = [
		['too short a secret', /`encryptionKeys\[0\]` to be at least 32 bytes long.*got 18 bytes/],
		[[newSecret, newSecret], /`encryptionKeys\[1\]` to be different from every other secret, got a duplicate/],
		[[], /`encryptionKeys` to be a non-empty array/],
		[[newSecret, 42], /`encryptionKeys\[1\]` to be a non-empty string, got a number/],
	];
	for (const [encryptionKeys, message] of cases) {
		const error = t.throws(() => new PgStore({ connectionString, encryptionKeys: encryptionKeys as string }), { instanceOf: TypeError, message });
		t.false(error?.message.includes(newSecret) ?? true);
		t.false(error?.message.includes('too short a secret') ?? true);
	}
	t.throws(() => new PgStore({ connectionString, encryptionMigration: { acceptPlainRowsUntil: new Date(Date.now() + day) } }), { instanceOf: TypeError, message: /`encryptionMigration` to be given only with `encryptionKeys`/ });
	t.throws(() => new PgStore({ connectionString, encryptionKeys: newSecret, encryptionMigration: { acceptPlainRowsUntil: new Date(Date.now() + 91 * day) } }), { instanceOf: TypeError, message: /at most 90 days ahead/ });
	t.throws(() => new PgStore({ connectionString, encryptionKeys: newSecret, encryptionMigration: { acceptPlainRowsUntil: new Date(Number.NaN) } }), { instanceOf: TypeError, message: /valid date/ });
	t.throws(() => new PgStore({ connectionString, encryptionKeys: newSecret, acceptPlainUntil: new Date() } as never), { instanceOf: TypeError, message: /use `encryptionMigration/ });
});

// The session key the jar's cookie names (koa-session's external key is the cookie's value).
function jarKey(jar: CookieJar): string {
	const key = jar.cookies.get('koa.sess');
	if (key === undefined) {
		throw new Error('no session cookie');
	}
	return key;
}
