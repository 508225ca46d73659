import test from 'ava';
import { DatabaseError, InvalidSessionError, PgStore } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { countingClient } from './helpers/counting-client.js';
import { createDatabase, type TestDatabase } from './helpers/database.js';
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
		store.set('far-future', { n: 1 }, 9e15),
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
