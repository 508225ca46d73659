import test from 'ava';
import {
	DatabaseError, InvalidSessionError, isPgStoreError, PgStore, PgStoreError,
	SessionTooLargeError, StoreClosedError,
} from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { createStore, sessionRows } from './helpers/store.js';
import { runScript } from './helpers/child-process.js';
import { createDatabase } from './helpers/database.js';
import { hour } from './helpers/time.js';


test('set stores the session under the SHA-256 of its key, never the key', async (t) => {
	const { store, database } = await createStore(t);
	const before = Date.now();
	await store.set('key-1', { user: 'ada', _expire: before + hour, _maxAge: hour }, hour + 10_000);
	const [row, ...others] = await sessionRows(database);
	t.is(others.length, 0);
	t.is(row?.key, digestKey('key-1'));
	t.regex(row?.key ?? '', /^[0-9a-f]{64}$/);
	t.deepEqual(row?.data, { user: 'ada', _expire: before + hour, _maxAge: hour });
	const expiresIn = (row?.expires_on.getTime() ?? 0) - before;
	t.true(expiresIn >= hour + 10_000 && expiresIn < hour + 10_000 + 5_000, `expires in ${expiresIn} ms`);
	const dump = JSON.stringify(await database.query('SELECT * FROM http_sessions'));
	t.false(dump.includes('key-1'));
});

test('get returns the stored session and undefined for an unknown key', async (t) => {
	const { store } = await createStore(t);
	await store.set('known', { n: 1 }, hour);
	t.deepEqual(await store.get('known', hour, {}), { n: 1 });
	t.is(await store.get('unknown', hour, {}), undefined);
});

test('get never returns an expired row, whether or not cleanup ran', async (t) => {
	const { store, database } = await createStore(t);
	await store.set('old', { n: 1 }, hour);
	await database.query(`UPDATE http_sessions SET expires_on = now() - interval '1 second'`);
	t.is(await store.get('old', hour, {}), undefined);
	t.is((await sessionRows(database)).length, 1, 'the row is still there: only the read filters it');
});

test('set replaces the session and keeps its creation time', async (t) => {
	const { store, database } = await createStore(t);
	await store.set('k', { n: 1 }, hour);
	const [first] = await sessionRows(database);
	await new Promise((resolve) => setTimeout(resolve, 20));
	await store.set('k', { n: 2 }, 2 * hour);
	const [second, ...others] = await sessionRows(database);
	t.is(others.length, 0);
	t.deepEqual(second?.data, { n: 2 });
	t.deepEqual(second?.created_on, first?.created_on);
	t.true((second?.modified_on.getTime() ?? 0) > (first?.modified_on.getTime() ?? 0));
	t.true((second?.expires_on.getTime() ?? 0) > (first?.expires_on.getTime() ?? 0) + hour / 2);
});

test('maxAge \'session\' (and none) keeps the row for sessionTtl', async (t) => {
	const { store, database } = await createStore(t, { sessionTtl: 5 * hour });
	const before = Date.now();
	await store.set('browser-session', { _session: true }, 'session');
	await store.set('direct-call', { n: 1 });
	for (const row of await sessionRows(database)) {
		const lifetime = row.expires_on.getTime() - before;
		t.true(lifetime >= 5 * hour && lifetime < 5 * hour + 5_000, `lifetime ${lifetime}`);
	}
	t.deepEqual(await store.get('browser-session', undefined, {}), { _session: true });
});

test('destroy deletes the row; destroying an unknown key is fine', async (t) => {
	const { store, database } = await createStore(t);
	await store.set('k', { n: 1 }, hour);
	await store.set('other', { n: 2 }, hour);
	await store.destroy('k', {});
	await store.destroy('never-existed', {});
	t.deepEqual((await sessionRows(database)).map((row) => row.key), [digestKey('other')]);
	t.is(await store.get('k', hour, {}), undefined);
});

test('100 concurrent first writes of one key give no error and one row', async (t) => {
	const { store, database } = await createStore(t, { pool: { max: 10 } });
	const results = await Promise.allSettled(
		Array.from({ length: 100 }, (_, index) => store.set('contended', { index }, hour)),
	);
	t.deepEqual(results.filter((result) => result.status === 'rejected'), []);
	const rows = await sessionRows(database);
	t.is(rows.length, 1);
	const index = rows[0]?.data['index'];
	t.true(Number.isInteger(index) && Number(index) >= 0 && Number(index) < 100, 'one of the 100 writes won whole');
});

test('a session larger than maxLength is rejected and the stored one stays intact', async (t) => {
	const { store, database } = await createStore(t, { maxLength: 100 });
	await store.set('k', { note: 'small' }, hour);
	const error = await t.throwsAsync(store.set('k', { note: 'é'.repeat(60) }, hour), { instanceOf: SessionTooLargeError });
	t.is(error?.code, 'ERR_PGSTORE_SESSION_TOO_LARGE');
	t.is(error?.size, Buffer.byteLength(JSON.stringify({ note: 'é'.repeat(60) })));
	t.is(error?.maxLength, 100);
	t.regex(error?.message ?? '', /maxLength/);
	t.true(error instanceof PgStoreError && isPgStoreError(error));
	t.deepEqual((await sessionRows(database)).map((row) => row.data), [{ note: 'small' }]);
});

test('maxLength counts UTF-8 bytes of the session as PostgreSQL stores it; 0 means no limit', async (t) => {
	const { store: limited, database } = await createStore(t, { maxLength: 21 });
	const exactly21 = { a: 'é'.repeat(6) }; // {"a": "éééééé"} is 21 bytes in jsonb's text form (20 of compact JSON)
	await t.notThrowsAsync(limited.set('fits', exactly21, hour));
	const [row] = await database.query<{ size: number }>('SELECT octet_length(data::text) AS size FROM http_sessions');
	t.is(row?.size, 21);
	// 20 bytes of compact JSON, but {"a": "ééé", "b": 1} is 23.
	const error = await t.throwsAsync(limited.set('fits', { a: 'é'.repeat(3), b: 1 }, hour), { instanceOf: SessionTooLargeError });
	t.is(error?.size, 23);
	t.deepEqual((await sessionRows(database)).map((stored) => stored.data), [exactly21]);
	const { store: unlimited } = await createStore(t, { maxLength: 0 });
	await unlimited.set('large', { blob: 'x'.repeat(1_000_000) }, hour);
	t.is((await unlimited.get('large', hour, {}))?.['blob'], 'x'.repeat(1_000_000));
});

test('the default maxLength is 4096 bytes', async (t) => {
	const { store } = await createStore(t);
	const padding = 4096 - '{"p": ""}'.length;
	await t.notThrowsAsync(store.set('k', { p: 'x'.repeat(padding) }, hour));
	await t.throwsAsync(store.set('k', { p: 'x'.repeat(padding + 1) }, hour), { instanceOf: SessionTooLargeError });
});

test('a \\u0000 in the session is rejected before any write', async (t) => {
	const { store, database } = await createStore(t);
	await store.set('k', { name: 'before' }, hour);
	for (const session of [{ name: 'a\u0000b' }, { ['key\u0000']: 1 }, { nested: [{ deep: '\u0000' }] }]) {
		const error = await t.throwsAsync(store.set('k', session, hour), { instanceOf: InvalidSessionError });
		t.is(error?.code, 'ERR_PGSTORE_INVALID_SESSION');
	}
	// An escaped backslash followed by the letters u0000 is ordinary text.
	await store.set('literal', { path: 'C:\\u0000' }, hour);
	t.deepEqual(await store.get('literal', hour, {}), { path: 'C:\\u0000' });
	t.deepEqual(await store.get('k', hour, {}), { name: 'before' });
	t.is((await sessionRows(database)).length, 2);
});

test('sessions that are not JSON objects are rejected', async (t) => {
	const { store } = await createStore(t);
	const circular: Record<string, unknown> = {};
	circular['self'] = circular;
	await t.throwsAsync(store.set('k', circular, hour), { instanceOf: InvalidSessionError });
	// @ts-expect-error: a session is an object
	await t.throwsAsync(store.set('k', 'text', hour), { instanceOf: InvalidSessionError });
	await t.throwsAsync(store.set('k', { big: 1n }, hour), { instanceOf: InvalidSessionError });
});

test('bad keys and maxAge values are TypeErrors naming the argument', async (t) => {
	const { store } = await createStore(t);
	await t.throwsAsync(store.get('', hour, {}), { instanceOf: TypeError, message: /`key`/ });
	// @ts-expect-error: keys are strings
	await t.throwsAsync(store.destroy(42, {}), { instanceOf: TypeError, message: /`key`.*got 42/ });
	await t.throwsAsync(store.set('k', {}, -1), { instanceOf: TypeError, message: /`maxAge`.*got -1/ });
	await t.throwsAsync(store.set('k', {}, Number.NaN), { instanceOf: TypeError, message: /`maxAge`/ });
});

test('constructor options are validated with TypeErrors naming the option', (t) => {
	const url = 'postgresql://localhost/none';
	const cases: [unknown, RegExp][] = [
		[undefined, /`options`/],
		[{}, /exactly one of `prisma` and `connectionString`.*neither/],
		[{ connectionString: url, prisma: {} }, /exactly one.*both/],
		[{ connectionString: '' }, /`connectionString` to be a non-empty string, got ""/],
		[{ prisma: { pGSession: {} } }, /`prisma` to be a Prisma 7 client/],
		[{ connectionString: url, maxLength: -1 }, /`maxLength` to be an integer >= 0, got -1/],
		[{ connectionString: url, maxLength: 1.5 }, /`maxLength`.*got 1.5/],
		[{ connectionString: url, sessionTtl: 0 }, /`sessionTtl` to be an integer >= 1, got 0/],
		[{ connectionString: url, sessionTtl: '1d' }, /`sessionTtl`.*got "1d"/],
		[{ connectionString: url, pool: 5 }, /`pool`/],
		[{ connectionString: url, schema: '' }, /`schema`/],
		[{ connectionString: url, onError: 'log' }, /`onError` to be a function/],
		[{ connectionString: url, preparedStatements: 'yes' }, /`preparedStatements` to be a boolean/],
	];
	for (const [options, message] of cases) {
		// @ts-expect-error: deliberately wrong options
		t.throws(() => new PgStore(options), { instanceOf: TypeError, message }, JSON.stringify(options));
	}
});

test('the options object is not mutated', async (t) => {
	const { database } = await createStore(t);
	const options = Object.freeze({ connectionString: database.url, pool: Object.freeze({ max: 2 }) });
	const store = new PgStore(options);
	t.teardown(() => store.close());
	await store.set('k', { n: 1 }, hour);
	t.deepEqual(options, { connectionString: database.url, pool: { max: 2 } });
});

test('close() sends the reads, saves and sign-outs asked for before it, and waits for them', async (t) => {
	const { store, database } = await createStore(t);
	await store.set('ending', { n: 1 }, hour);
	await store.set('read', { n: 1 }, hour);
	// Not awaited: their batches have not gone when close() is called.
	const asked = [store.set('saved', { n: 1 }, hour), store.destroy('ending', {}), store.get('read', hour, {})];
	await store.close();
	t.deepEqual(await Promise.all(asked), [undefined, undefined, { n: 1 }]);
	const rows = await database.query<{ key: string }>('SELECT key FROM http_sessions ORDER BY key');
	t.deepEqual(rows.map((row) => row.key).sort(), [digestKey('read'), digestKey('saved')].sort());
});

test('close is idempotent and later calls reject with StoreClosedError', async (t) => {
	const { store } = await createStore(t);
	await store.set('k', { n: 1 }, hour);
	const first = store.close();
	t.is(store.close(), first);
	await first;
	const error = await t.throwsAsync(store.get('k', hour, {}), { instanceOf: StoreClosedError });
	t.is(error?.code, 'ERR_PGSTORE_CLOSED');
	await t.throwsAsync(store.set('k', {}, hour), { instanceOf: StoreClosedError });
	await t.throwsAsync(store.destroy('k', {}), { instanceOf: StoreClosedError });
	t.is(store[Symbol.asyncDispose](), first, '`await using` closes it the same way');
});

test('an unreachable database is a DatabaseError whose failure says the connection was lost, not a missing session', async (t) => {
	const store = new PgStore({ connectionString: 'postgresql://nobody:secret@127.0.0.1:1/none', pool: { connectionTimeoutMillis: 2_000 } });
	t.teardown(() => store.close());
	const error = await t.throwsAsync(store.get('k', hour, {}), { instanceOf: DatabaseError });
	t.is(error?.code, 'ERR_PGSTORE_DATABASE');
	t.is(error?.operation, 'get');
	t.is(error?.failure, 'connection-lost');
	t.is(error?.sqlState, undefined);
	t.truthy(error?.cause);
	t.false(error?.message.includes('secret'), 'the password stays out of the message');
});

test('type parsers an app installs in node-postgres change nothing the store reads or lists', async (t) => {
	const database = await createDatabase(t);
	// Global to the process, so in a process of its own.
	const script = `
		import pg from 'pg';
		import { PgStore } from 'koa-pgstore';
		for (const oid of [16, 20, 21, 23, 25, 114, 701, 1114, 1184, 3802]) {
			pg.types.setTypeParser(oid, (value) => 'app:' + value);
		}
		const store = new PgStore({ connectionString: process.env.URL, cleanupInterval: 0, subject: (session) => session.user });
		const ctx = {};
		await store.set('k', { user: 'ada', n: 1 }, 60_000);
		const loaded = await store.get('k', 60_000, { ctx });
		await store.set('k', { user: 'ada', n: 2 }, 60_000, { ctx, changed: true });
		const [device] = await store.list('ada');
		const validDate = (date) => date instanceof Date && Math.abs(date.getTime() - Date.now()) < 120_000;
		console.log(JSON.stringify({
			loaded,
			again: await store.get('k', 60_000, {}),
			device: { id: typeof device?.id, createdOn: validDate(device?.createdOn), modifiedOn: validDate(device?.modifiedOn), expires: device?.expiresOn instanceof Date },
		}));
		await store.close();
	`;
	const { code, output, errorOutput } = await runScript(script, { URL: database.url });
	t.is(code, 0, errorOutput);
	t.deepEqual(JSON.parse(output), {
		loaded: { user: 'ada', n: 1 },
		again: { user: 'ada', n: 2 },
		device: { id: 'string', createdOn: true, modifiedOn: true, expires: true },
	});
});

test('a database error keeps its SQLSTATE', async (t) => {
	const { store, database } = await createStore(t);
	await database.query('ALTER TABLE http_sessions RENAME TO gone');
	const error = await t.throwsAsync(store.set('k', { n: 1 }, hour), { instanceOf: DatabaseError });
	t.is(error?.operation, 'set');
	t.is(error?.sqlState, '42P01', 'undefined_table');
	t.regex(error?.message ?? '', /SQLSTATE 42P01/);
	const missingTable = await t.throwsAsync(store.get('k', hour, {}), { instanceOf: DatabaseError });
	t.is(missingTable?.sqlState, '42P01');
	t.is(missingTable?.operation, 'get');
});

test('options from other session stores, a pg.Pool as `pool`, and a missing DATABASE_URL get TypeErrors that say what to do', async (t) => {
	const url = 'postgresql://localhost/none';
	for (const [options, message] of [
		[{ connectionString: url, tableName: 'sessions' }, /Unknown option `tableName`.*`@@map`/],
		[{ connectionString: url, ttl: 3600 }, /Unknown option `ttl`.*`maxAge`/],
		[{ connectionString: url, prefix: 'sess:' }, /Unknown option `prefix`.*digests/],
		[{ connectionString: url, pruneSessionInterval: 60 }, /Unknown option `pruneSessionInterval`.*`cleanupInterval`/],
		[{ connectionString: url, createTableIfMissing: true }, /Unknown option `createTableIfMissing`.*ensureSchema/],
		[{ connectionString: url, maxlength: 10 }, /Unknown option `maxlength`/],
		[{ connectionString: process.env['PGSTORE_NO_SUCH_VARIABLE'] }, /got neither: pass `connectionString: process.env.DATABASE_URL`/],
	] as const) {
		t.throws(() => new PgStore(options as never), { instanceOf: TypeError, message }, JSON.stringify(options));
	}
	const { default: pg } = await import('pg');
	const pool = new pg.Pool({ connectionString: url });
	t.teardown(() => pool.end());
	t.throws(() => new PgStore({ connectionString: url, pool: pool as never }), { instanceOf: TypeError, message: /got a pool.*as `prisma`/ });
});
