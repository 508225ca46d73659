import test, { type ExecutionContext } from 'ava';
import { kidOf, SessionCipher } from '../src/codec/cipher.js';
import { PgStore, SessionTamperedError, SessionTooLargeError, SessionUnreadableError, type ErrorContext, type PgStoreOptions } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { encodeSession } from '../src/codec/session-codec.js';
import { SessionCipher as CipherBeforePadding } from './fixtures/cipher-before-padding.js';
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
		code: error instanceof SessionTamperedError || error instanceof SessionUnreadableError ? error.code : error.name,
		reason: error instanceof SessionTamperedError || error instanceof SessionUnreadableError ? error.reason : undefined,
		fields: error instanceof SessionTamperedError || error instanceof SessionUnreadableError ? [...error.fields] : undefined,
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

test('maxLength measures the stored, encrypted form, with a third more room for padding', async (t) => {
	const { store, database } = await encryptedStore(t, { maxLength: 300 });
	// 232 bytes of JSON, 385 once encrypted (padded to 240): within 300 and its third, 400.
	await t.notThrowsAsync(store.set('fits', { note: 'x'.repeat(230) }, hour));
	// 270 bytes of JSON, under maxLength, but 427 once encrypted.
	const error = await t.throwsAsync<SessionTooLargeError>(store.set('big', { note: 'x'.repeat(268) }, hour));
	// Refused before it is sent, by the size of the JSON sent (PostgreSQL's text adds a space after
	// each `:` and `,`: 427).
	t.like(error, { name: 'SessionTooLargeError', maxLength: 400 });
	t.true((error?.size ?? 0) > 400 && (error?.size ?? 0) <= 427, String(error?.size));
	t.deepEqual((await sessionRows(database)).length, 1);
});

test('a session that fit maxLength before padding still saves once its fields are padded', async (t) => {
	// The release before padding stored this session in 4,000 of 4,096 bytes; its fields padded
	// take more. Each field holds 6 bytes of JSON, the most padding (10 bytes) per field.
	const data = Object.fromEntries(Array.from({ length: 56 }, (_, index) => [`f${String(index).padStart(2, '0')}`, 'abcd']));
	const before = new CipherBeforePadding([newSecret], undefined);
	const { store, database } = await encryptedStore(t, { maxLength: 4096, touchAfter: 0 });
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) VALUES ($1, $2::jsonb, now(), now(), now() + interval '1 hour')`, [digestKey('k'), before.seal(digestKey('k'), encodeSession(data).fields)]);
	const [{ size = 0 } = {}] = await database.query<{ size: number }>('SELECT octet_length(data::text) AS size FROM http_sessions');
	t.true(size > 3_800 && size <= 4_096, `unpadded: ${size} bytes`);
	const ctx = {};
	t.deepEqual(await store.get('k', hour, { ctx }), data);
	await t.notThrowsAsync(store.set('k', { ...data, f00: 'efgh' }, hour, { ctx, changed: true }));
	const [{ size: padded = 0 } = {}] = await database.query<{ size: number }>('SELECT octet_length(data::text) AS size FROM http_sessions');
	t.true(padded > 4_096, `every field rewritten padded: ${padded} bytes`);
	t.like(await store.get('k', hour, {}), { f00: 'efgh', f55: 'abcd' });
});

test('a reader of the table cannot tell short values apart by their length: booleans, short strings and numbers encrypt to one length', async (t) => {
	const { store, database } = await encryptedStore(t);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	for (const session of [{ admin: true, role: 'admin', plan: 1 }, { admin: false, role: 'user', plan: 20_000 }, { admin: null, role: 'moderator', plan: 0.5 }]) {
		await request(`${url}/set-json`, new CookieJar(), { method: 'POST', body: JSON.stringify(session) });
	}
	const lengths = await database.query<{ admin: number; role: number; plan: number }>(
		`SELECT octet_length(data->>'admin') AS admin, octet_length(data->>'role') AS role, octet_length(data->>'plan') AS plan FROM http_sessions`,
	);
	t.is(lengths.length, 3);
	t.is(new Set(lengths.flatMap((row) => [row.admin, row.role, row.plan])).size, 1, JSON.stringify(lengths));
});

test('a rolling deploy: rows written before padding are read, and their next save pads every field, even within touchAfter', async (t) => {
	const before = new CipherBeforePadding([newSecret], undefined);
	const { store, database, reported } = await encryptedStore(t, { touchAfter: hour });
	const { url } = await startApp(t, { session: { store, maxAge: hour, rolling: true }, handler: sessionRoutes({ store }) });
	const jar = new CookieJar();
	await request(`${url}/set?lang=en`, jar);
	const key = digestKey(jarKey(jar));
	const data = { lang: 'en', _expire: Date.now() + hour, _maxAge: hour };
	await database.query('UPDATE http_sessions SET data = $2::jsonb WHERE key = $1', [key, before.seal(key, encodeSession(data).fields)]);
	const unpadded = String((await storedData(database, jarKey(jar)))['lang']);
	t.like((await request(`${url}/`, jar)).body, { lang: 'en' });
	const padded = String((await storedData(database, jarKey(jar)))['lang']);
	t.is(padded.length, String(JSON.parse(new SessionCipher([newSecret]).seal(key, encodeSession({ lang: 'en' }).fields))['lang']).length);
	t.true(padded.length > unpadded.length, `${unpadded.length} → ${padded.length} characters`);
	t.deepEqual(reported, []);
});

test('a key id changed in the table is reported as tampering, like any other change; a secret no longer listed still ends its sessions silently', async (t) => {
	const { store, database, reported } = await encryptedStore(t);
	const { store: retired } = sameTable(t, database, { encryptionKeys: oldSecret });
	await retired.set('retired', { userId: 'bob' }, hour);
	await store.set('k', { userId: 'alice' }, hour);
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{userId}', to_jsonb(replace(data->>'userId', $1, ':AAAAAA:'))) WHERE key = $2`, [`:${kidOf(newSecret)}:`, digestKey('k')]);
	t.is(await store.get('k', hour, {}), undefined);
	t.is(await store.get('retired', hour, {}), undefined);
	t.deepEqual(tamperedReports(reported), [{ code: 'ERR_PGSTORE_TAMPERED', reason: 'authentication', fields: ['userId'], source: 'get' }], 'the changed key id only');
});

test('a ciphertext re-encoded with other unused bits, which decodes to the same bytes, is reported as tampering', async (t) => {
	const { store, database, reported } = await encryptedStore(t);
	await store.set('k', { userId: 'alice' }, hour);
	// "alice" pads to 16 bytes: 44 bytes of nonce, ciphertext and tag, whose last base64 character
	// carries 2 unused bits.
	const value = String((await storedData(database, 'k'))['userId']);
	const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
	const forged = `${value.slice(0, -1)}${alphabet[alphabet.indexOf(value.at(-1) ?? '') | 0b11]}`;
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{userId}', to_jsonb($1::text))`, [forged]);
	const fresh = sameTable(t, database, { encryptionKeys: newSecret });
	t.is(await fresh.store.get('k', hour, {}), undefined);
	t.is(await store.get('k', hour, {}), undefined);
	t.deepEqual(tamperedReports([...fresh.reported, ...reported]).map((report) => report.reason), ['authentication', 'authentication']);
});

test('the log line of a plain row refused under encryptionKeys names encryptionMigration, the way to keep users signed in', async (t) => {
	const { store: plain, database } = await createStore(t);
	await plain.set('k', { userId: 'alice' }, hour);
	const logged: unknown[][] = [];
	const consoleError = console.error;
	console.error = (...args: unknown[]) => { logged.push(args); };
	t.teardown(() => { console.error = consoleError; });
	// The default onError, as an app that sets only encryptionKeys has it.
	const store = new PgStore({ connectionString: database.url, cleanupInterval: 0, encryptionKeys: newSecret });
	t.teardown(() => store.close());
	t.is(await store.get('k', hour, {}), undefined);
	console.error = consoleError;
	t.is(logged.length, 1);
	t.regex(String(logged[0]?.[0]), /^koa-pgstore: get: SessionTamperedError: .*field "userId" is not encrypted.*`encryptionMigration: \{ acceptPlainRowsUntil \}`/);
});

test('a deploy without encryptionKeys after one with never hands the app a ciphertext nor overwrites the row: a fresh session, and onError says why', async (t) => {
	const { store: encrypted, database } = await encryptedStore(t);
	const first = await startApp(t, { session: { store: encrypted, maxAge: hour }, handler: sessionRoutes() });
	const saving = new CookieJar();
	const reading = new CookieJar();
	await request(`${first.url}/count`, saving);
	await request(`${first.url}/set?userId=alice`, reading);
	const rows = await storedText(database);

	// Rolled back to a release without the option.
	const { store: plain, reported } = sameTable(t, database);
	const rolledBack = await startApp(t, { session: { store: plain, maxAge: hour }, handler: sessionRoutes() });
	const counted = await request(`${rolledBack.url}/count`, saving);
	t.is(counted.status, 200);
	t.deepEqual(omitKoaFields(counted.body), { views: 1 }, 'a fresh session, under a new key');
	const read = await request(`${rolledBack.url}/`, reading);
	t.is(read.status, 200);
	t.deepEqual(omitKoaFields(read.body), {}, 'no ciphertext handed to the app');
	t.deepEqual(read.setCookies, [], 'nothing saved for a request that only reads: its cookie still names its row');
	t.deepEqual((await storedText(database)).slice(0, 2), rows, 'both encrypted rows as they were');
	t.deepEqual(tamperedReports(reported), [
		{ code: 'ERR_PGSTORE_SESSION_UNREADABLE', reason: 'encrypted', fields: ['views'], source: 'get' },
		{ code: 'ERR_PGSTORE_SESSION_UNREADABLE', reason: 'encrypted', fields: ['userId'], source: 'get' },
	]);
	t.regex(reported[0]?.[0].message ?? '', /`decryptionKeys`/);

	// Deployed again with the option: the reading user is still signed in; the saving user's
	// cookie names the session the rollback gave it, so that user was signed out.
	const again = await startApp(t, { session: { store: encrypted, maxAge: hour }, handler: sessionRoutes() });
	t.like((await request(`${again.url}/`, reading)).body, { userId: 'alice' });
	t.deepEqual(omitKoaFields((await request(`${again.url}/`, saving)).body), {});
});

test('turning encryption off with decryptionKeys signs nobody out: every session is read, each save writes it plain, and then a store without secrets reads it', async (t) => {
	const { store: encrypted, database } = await encryptedStore(t, { encryptionKeys: [newSecret, oldSecret] });
	const first = await startApp(t, { session: { store: encrypted, maxAge: hour }, handler: sessionRoutes() });
	const saving = new CookieJar();
	const reading = new CookieJar();
	await request(`${first.url}/set?email=alice@example.com&cart=3`, saving);
	await request(`${first.url}/set?userId=bob`, reading);

	const { store: off, reported } = sameTable(t, database, { decryptionKeys: [newSecret, oldSecret], touchAfter: hour });
	const decrypting = await startApp(t, { session: { store: off, maxAge: hour }, handler: sessionRoutes() });
	t.like((await request(`${decrypting.url}/set?cart=4`, saving)).body, { email: 'alice@example.com', cart: '4' });
	t.like(await storedData(database, jarKey(saving)), { email: 'alice@example.com', cart: '4' }, 'every field written plain, the unchanged one too');
	t.like((await request(`${decrypting.url}/`, reading)).body, { userId: 'bob' }, 'read, though still encrypted');
	t.regex(String((await storedData(database, jarKey(reading)))['userId']), ciphertext, 'a session only read keeps its ciphertext');
	t.deepEqual(reported, []);

	// The option removed: the saved session reads as plain; one never saved since is passed over.
	const { store: plain, reported: plainReports } = sameTable(t, database);
	const last = await startApp(t, { session: { store: plain, maxAge: hour }, handler: sessionRoutes() });
	t.like((await request(`${last.url}/`, saving)).body, { email: 'alice@example.com', cart: '4' });
	t.deepEqual(omitKoaFields((await request(`${last.url}/`, reading)).body), {});
	t.deepEqual(tamperedReports(plainReports).map((report) => [report.reason, report.fields]), [['encrypted', ['userId']]]);
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
	t.throws(() => new PgStore({ connectionString, encryptionKeys: newSecret, decryptionKeys: oldSecret }), { instanceOf: TypeError, message: /`decryptionKeys` to be given without `encryptionKeys`.*got both/ });
	t.throws(() => new PgStore({ connectionString, decryptionKeys: 'too short a secret' }), { instanceOf: TypeError, message: /`decryptionKeys\[0\]` to be at least 32 bytes long/ });
	t.throws(() => new PgStore({ connectionString, decryptionKeys: newSecret, encryptionMigration: { acceptPlainRowsUntil: new Date(Date.now() + day) } }), { instanceOf: TypeError, message: /`encryptionMigration` to be given only with `encryptionKeys`/ });
});

// The session key the jar's cookie names (koa-session's external key is the cookie's value).
function jarKey(jar: CookieJar): string {
	const key = jar.cookies.get('koa.sess');
	if (key === undefined) {
		throw new Error('no session cookie');
	}
	return key;
}

function omitKoaFields(body: unknown): Record<string, unknown> {
	const { _expire, _maxAge, _session, ...fields } = body as Record<string, unknown>;
	return fields;
}
