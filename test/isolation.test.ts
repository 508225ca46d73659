import { randomBytes } from 'node:crypto';
import type Koa from 'koa';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { DatabaseError, InvalidSessionError, PgStore, type PgStoreOptions } from '../src/index.js';
import { latestExpiry, maxSubjectBytes } from '../src/base/limits.js';
import { digestKey } from '../src/codec/key-digest.js';
import { countingClient } from './helpers/counting-client.js';
import { adminUrl, createDatabase, migrationFiles, withDatabase, type TestDatabase } from './helpers/database.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { createStore, sessionRows } from './helpers/store.js';
import { hour } from './helpers/time.js';

// Writes of one event-loop turn share a statement; one request's data must never decide the
// outcome of another's.

// A data error PostgreSQL raises for one row only, as a check the store cannot foresee.
async function poisonTrigger(database: TestDatabase): Promise<void> {
	await database.query(`
		CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.data ? 'poison' THEN
				RAISE EXCEPTION 'poisoned session' USING ERRCODE = '22023';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON http_sessions FOR EACH ROW EXECUTE FUNCTION refuse_poison();`);
}

test('50 good new sessions and 1 that PostgreSQL rejects in one turn: 50 stored, 1 typed error', async (t) => {
	const { store, database } = await createStore(t);
	await poisonTrigger(database);
	const results = await Promise.allSettled([
		...Array.from({ length: 50 }, (_, index) => store.set(`good-${index}`, { index }, hour)),
		store.set('bad', { poison: true }, hour),
	]);
	t.is(results.filter((result) => result.status === 'fulfilled').length, 50);
	const failed = results.at(-1);
	t.true(failed?.status === 'rejected' && failed.reason instanceof DatabaseError && failed.reason.sqlState === '22023');
	t.is((await sessionRows(database)).length, 50);
});

test('the same for the new sessions of requests (one INSERT): 50 stored, 1 typed error, and a key stored already is replaced', async (t) => {
	const { store, database } = await createStore(t);
	await store.set('stored', { n: 0 }, hour);
	await poisonTrigger(database);
	const results = await Promise.allSettled([
		...Array.from({ length: 50 }, (_, index) => store.set(`good-${index}`, { index }, hour, { ctx: {} })),
		store.set('stored', { n: 1 }, hour, { ctx: {} }),
		store.set('bad', { poison: true }, hour, { ctx: {} }),
	]);
	t.is(results.filter((result) => result.status === 'fulfilled').length, 51);
	const failed = results.at(-1);
	t.true(failed?.status === 'rejected' && failed.reason instanceof DatabaseError && failed.reason.sqlState === '22023');
	const rows = await sessionRows(database);
	t.is(rows.length, 51);
	t.deepEqual(rows.find((row) => row.key === digestKey('stored'))?.data, { n: 1 });
});

test('the same for saves of loaded sessions: only the culprit fails, the others are written', async (t) => {
	const { store, database } = await createStore(t);
	const keys = Array.from({ length: 20 }, (_, index) => `k${index}`);
	await Promise.all(keys.map((key) => store.set(key, { n: 0 }, hour)));
	await poisonTrigger(database);
	const ctx = {};
	await Promise.all(keys.map((key) => store.get(key, hour, { ctx })));
	const results = await Promise.allSettled(keys.map((key, index) => store.set(key, index === 7 ? { n: 1, poison: 1 } : { n: 1 }, hour, { ctx, changed: true })));
	t.deepEqual(results.map((result) => result.status === 'rejected'), keys.map((_, index) => index === 7));
	const rows = await sessionRows(database);
	t.is(rows.filter((row) => row.data['n'] === 1).length, 19);
	t.is(rows.filter((row) => row.data['n'] === 0).length, 1, 'the culprit\'s row is as it was');
});

test('one bad row among 128 costs about 2·log2(n) statements, not one per row', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	await poisonTrigger(database);
	const before = statements();
	const results = await Promise.allSettled(Array.from({ length: 128 }, (_, index) => store.set(`k${index}`, index === 77 ? { poison: true } : { index }, hour)));
	t.deepEqual(results.map((result) => result.status === 'rejected'), results.map((_, index) => index === 77));
	// 1 + 2 per halving (7 of them): 15.
	t.true(statements() - before <= 15, `${statements() - before} statements`);
	t.is((await sessionRows(database)).length, 127);
});

test('a failure that is not the rows\' fault fails the batch once, without a retry per row', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	await database.query('ALTER TABLE http_sessions RENAME TO elsewhere');
	const before = statements();
	const results = await Promise.allSettled(Array.from({ length: 10 }, (_, index) => store.set(`k${index}`, { index }, hour)));
	t.true(results.every((result) => result.status === 'rejected' && result.reason instanceof DatabaseError && result.reason.sqlState === '42P01'));
	t.is(statements() - before, 1);
});

test('what PostgreSQL would reject is refused per request before batching, and the batch goes on', async (t) => {
	const { store, database } = await createStore(t);
	const results = await Promise.allSettled([
		store.set('good-1', { n: 1 }, hour),
		store.set('surrogate-value', { name: 'x\ud800y' }, hour),
		store.set('surrogate-field', { ['\udc00']: 1 }, hour),
		store.set('negative-lifetime', { n: 1 }, -1),
		store.set('good-2', { n: 2 }, hour),
	]);
	t.deepEqual(results.map((result) => result.status), ['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled']);
	const reasons = results.map((result) => (result.status === 'rejected' ? result.reason as Error : undefined));
	t.true(reasons[1] instanceof InvalidSessionError && /surrogate/.test(reasons[1].message));
	t.true(reasons[2] instanceof InvalidSessionError);
	t.true(reasons[3] instanceof TypeError && /`maxAge`/.test(reasons[3].message));
	t.is((await sessionRows(database)).length, 2);
	// A surrogate pair is a well-formed character and is stored.
	await store.set('emoji', { face: '\ud83d\ude00' }, hour);
	t.is((await store.get('emoji', hour, {}))?.['face'], '😀');
	// An escaped backslash before the letters ud800 is ordinary text.
	await store.set('text', { path: '\\ud800' }, hour);
	t.is((await store.get('text', hour, {}))?.['path'], '\\ud800');
});

test('ill-formed session keys are refused, not hashed alike', async (t) => {
	const { store } = await createStore(t);
	for (const key of ['\ud800', '\ud801', 'a\udfffb']) {
		await t.throwsAsync(store.set(key, { n: 1 }, hour), { instanceOf: TypeError, message: /`key`.*well-formed/ });
		await t.throwsAsync(store.get(key, hour, {}), { instanceOf: TypeError });
	}
});

test('over HTTP, a client that sends lone surrogates fails only its own requests', async (t) => {
	const { store } = await createStore(t);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	const send = (body: string) => request(`${url}/set-json`, new CookieJar(), { method: 'POST', body, headers: { 'content-type': 'application/json' } });
	const responses = await Promise.all([
		...Array.from({ length: 40 }, (_, index) => send(JSON.stringify({ index }))),
		...Array.from({ length: 10 }, () => send('{"name":"\\ud800"}')),
	]);
	const statuses = responses.map((response) => response.status);
	t.deepEqual(statuses.slice(0, 40).filter((status) => status !== 200), [], 'every other user\'s request succeeded');
	t.deepEqual(statuses.slice(40), Array(10).fill(500));
});

const bySubject: Pick<PgStoreOptions, 'subject'> = { subject: (session) => session['userId'] as string | undefined };

test('a subject longer than its index takes is refused before batching: the others\' writes go in one statement', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0, ...bySubject });
	// Random text, which PostgreSQL cannot compress into the index: 3,000 bytes, over its 2,704.
	const tooLong = randomBytes(2250).toString('base64');
	const before = statements();
	const results = await Promise.allSettled([
		...Array.from({ length: 20 }, (_, index) => store.set(`user-${index}`, { userId: `user-${index}` }, hour)),
		store.set('culprit', { userId: tooLong }, hour),
	]);
	t.is(statements() - before, 1, 'one INSERT for the 20 others, no retry row by row');
	t.deepEqual(results.map((result) => result.status), [...Array(20).fill('fulfilled'), 'rejected']);
	const refused = results[20]?.status === 'rejected' ? results[20].reason as Error : undefined;
	t.true(refused instanceof InvalidSessionError && refused.code === 'ERR_PGSTORE_INVALID_SESSION');
	t.is(refused?.message, `The session's subject is 3000 bytes of UTF-8, more than the ${maxSubjectBytes} the store keeps; it was not saved`);
	t.is((await sessionRows(database)).length, 20);
	// The limit counts bytes: 512 two-byte characters fit, 513 do not.
	await store.set('longest', { userId: 'é'.repeat(maxSubjectBytes / 2) }, hour);
	await t.throwsAsync(store.set('longer', { userId: 'é'.repeat(maxSubjectBytes / 2 + 1) }, hour), { instanceOf: InvalidSessionError });
	// A save of a loaded session that changes its subject is refused alike, and changes nothing.
	const ctx = {};
	await store.get('user-1', hour, { ctx });
	await t.throwsAsync(store.set('user-1', { userId: tooLong }, hour, { ctx, changed: true }), { instanceOf: InvalidSessionError });
	t.deepEqual(await database.query('SELECT subject FROM http_sessions WHERE key = $1', [digestKey('user-1')]), [{ subject: 'user-1' }]);
});

/** A migrated database of the test's own in `encoding` (with the C locale, which takes any). */
async function databaseIn(t: ExecutionContext, encoding: string): Promise<TestDatabase> {
	const name = `pgstore_test_${randomBytes(6).toString('hex')}`;
	const admin = new pg.Client({ connectionString: adminUrl() });
	await admin.connect();
	await admin.query(`CREATE DATABASE ${name} ENCODING '${encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
	await admin.end();
	const url = withDatabase(adminUrl(), name);
	const pool = new pg.Pool({ connectionString: url, max: 2 });
	t.teardown(async () => {
		await pool.end();
		const dropper = new pg.Client({ connectionString: adminUrl() });
		await dropper.connect();
		await dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => dropper.end());
	});
	for (const migration of await migrationFiles()) {
		await pool.query(migration.sql);
	}
	return { name, url, query: async (sql, values) => (await pool.query(sql, values)).rows };
}

test('in a LATIN1 database a character it cannot hold is refused before batching: the others\' writes go in one statement', async (t) => {
	const database = await databaseIn(t, 'LATIN1');
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	const start = statements();
	// The first write that is not ASCII reads the database's encoding: once.
	await store.set('first', { name: 'Zoë' }, hour);
	t.is(statements() - start, 2);
	const before = statements();
	const results = await Promise.allSettled([
		...Array.from({ length: 20 }, (_, index) => store.set(`good-${index}`, { index, place: index % 2 === 0 ? 'café' : 'cafe', byte: '\u00ff' }, hour)),
		store.set('culprit', { price: '5 €' }, hour),
		store.set('culprit-name', { ['ключ']: 1 }, hour),
	]);
	t.is(statements() - before, 1, 'one INSERT for the 20 others, no retry row by row');
	t.deepEqual(results.map((result) => result.status), [...Array(20).fill('fulfilled'), 'rejected', 'rejected']);
	for (const result of results.slice(20)) {
		const reason = result.status === 'rejected' ? result.reason as Error : undefined;
		t.true(reason instanceof InvalidSessionError);
		t.is(reason?.message, 'The session holds a character that the database\'s encoding (LATIN1) cannot store; it was not saved');
	}
	t.like(await store.get('good-0', hour, {}), { place: 'café', byte: 'ÿ' });
	t.is((await sessionRows(database)).length, 21);
	// A save of a loaded session is refused alike, and leaves it as it was.
	const ctx = {};
	await store.get('good-1', hour, { ctx });
	await t.throwsAsync(store.set('good-1', { index: 1, place: '€' }, hour, { ctx, changed: true }), { instanceOf: InvalidSessionError });
	t.like(await store.get('good-1', hour, {}), { place: 'cafe' });
});

test('over HTTP on a LATIN1 database, clients that send "€" get the typed error, every other request succeeds', async (t) => {
	const database = await databaseIn(t, 'LATIN1');
	const store = new PgStore({ connectionString: database.url, cleanupInterval: 0 });
	t.teardown(() => store.close());
	const { app, url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	const errors: unknown[] = [];
	app.on('error', (error) => errors.push(error));
	const send = (body: string) => request(`${url}/set-json`, new CookieJar(), { method: 'POST', body, headers: { 'content-type': 'application/json' } });
	// All at once, before the store knows the encoding: the first that needs it reads it.
	const responses = await Promise.all([
		...Array.from({ length: 40 }, (_, index) => send(JSON.stringify({ index, city: 'Zürich' }))),
		...Array.from({ length: 10 }, () => send(JSON.stringify({ price: '5 €' }))),
	]);
	t.deepEqual(responses.slice(0, 40).map((response) => response.status), Array(40).fill(200));
	t.deepEqual(responses.slice(40).map((response) => response.status), Array(10).fill(500));
	t.is(errors.length, 10);
	t.true(errors.every((error) => error instanceof InvalidSessionError));
	t.is((await sessionRows(database)).length, 40);
});

test('writes of one key in one turn keep their order while the store reads the encoding', async (t) => {
	// One connection: statements run in the order they ask for it.
	const { store } = await createStore(t, { pool: { max: 1 } });
	// The first waits for the encoding, the second needs none: it must not overtake.
	await Promise.all([store.set('k', { v: 'é first' }, hour), store.set('k', { v: 'second' }, hour)]);
	t.deepEqual(await store.get('k', hour, {}), { v: 'second' });
});

/** The session routes plus `/max-age?ms=…`, which sets the session's `maxAge` from the query, as an app's "remember me for n days" might. */
function maxAgeRoutes(store: PgStore): Koa.Middleware {
	const routes = sessionRoutes({ store });
	return async (ctx, next) => {
		if (ctx.path !== '/max-age' || ctx.session === null) {
			return routes(ctx, next);
		}
		ctx.session.maxAge = Number(ctx.query['ms']);
		ctx.session['remembered'] = true;
		ctx.body = { remembered: true };
	};
}

test('maxAge: every lifetime a Date holds is stored as asked, a longer one up to the last moment a Date holds', async (t) => {
	const { store, database } = await createStore(t);
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: maxAgeRoutes(store) });
	const expiryOf = async (jar: CookieJar) => {
		const [row] = await database.query<{ ms: number }>('SELECT (extract(epoch FROM expires_on) * 1000)::float8 AS ms FROM http_sessions WHERE key = $1', [digestKey(jar.cookies.get('koa.sess') ?? '')]);
		return row?.ms;
	};
	// 1e15 ms, year 33715: stored as before.
	const far = new CookieJar();
	const before = Date.now();
	t.is((await request(`${url}/max-age?ms=1e15`, far)).status, 200);
	const farExpiry = await expiryOf(far) ?? Number.NaN;
	t.true(farExpiry >= before + 1e15 && farExpiry <= Date.now() + 1e15 + 10_000, String(farExpiry));
	// Past what a Date holds (a 500 before): stored until +275760-09-13, and the session is read back.
	for (const ms of ['1e16', '1e300']) {
		const jar = new CookieJar();
		t.is((await request(`${url}/max-age?ms=${ms}`, jar)).status, 200, ms);
		t.is(await expiryOf(jar), latestExpiry);
		t.like((await request(`${url}/`, jar)).body, { remembered: true });
	}
	t.is(new Date(latestExpiry).toISOString(), '+275760-09-13T00:00:00.000Z');
	await store.set('direct', { n: 1 }, 9e15);
	t.is((await store.get('direct', hour, {}))?.['n'], 1);
	for (const maxAge of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
		await t.throwsAsync(store.set('bad', { n: 1 }, maxAge), { instanceOf: TypeError, message: /`maxAge`/ });
	}
});
