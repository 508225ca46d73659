import { readFile } from 'node:fs/promises';
import { PrismaPg } from '@prisma/adapter-pg';
import test from 'ava';
import { PgStore, SchemaMismatchError } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { PrismaClient as AppClient } from './fixtures/app-schema/generated/client.js';
import { createDatabase, migrationFiles } from './helpers/database.js';
import { Gate } from './helpers/gate.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { createStore, sessionRows } from './helpers/store.js';
import { hour } from './helpers/time.js';

async function subjectApp(t: Parameters<typeof createStore>[0], gate?: Gate) {
	const { store, database } = await createStore(t, { subject: (session) => session['userId'] as string | undefined });
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store, ...gate ? { gate } : {} }) });
	return { store, database, url };
}

test('the subject is stored with the session: none before login, the user after', async (t) => {
	const { database, url } = await subjectApp(t);
	const jar = new CookieJar();
	await request(`${url}/`, jar);
	await request(`${url}/sign-in?user=ada`, jar);
	const rows = await database.query<{ key: string; subject: string | null }>('SELECT key, subject FROM http_sessions');
	t.deepEqual(rows, [{ key: digestKey(jar.cookies.get('koa.sess') ?? ''), subject: 'ada' }]);
});

test('destroyAll signs a user out on every device and nobody else', async (t) => {
	const { store, database, url } = await subjectApp(t);
	const devices = [new CookieJar(), new CookieJar(), new CookieJar()];
	for (const jar of devices) {
		await request(`${url}/sign-in?user=ada`, jar);
	}
	const other = new CookieJar();
	await request(`${url}/sign-in?user=grace`, other);
	t.is(await store.destroyAll('ada'), 3);
	for (const jar of devices) {
		t.deepEqual((await request(`${url}/`, jar)).body, {}, 'signed out');
	}
	t.like((await request(`${url}/`, other)).body, { userId: 'grace' });
	t.deepEqual((await database.query('SELECT subject FROM http_sessions')).map((row) => row['subject']), ['grace']);
	t.is(await store.destroyAll('nobody'), 0);
});

test('destroyAll with except: ctx keeps the current device ("sign out other devices")', async (t) => {
	const { url } = await subjectApp(t);
	const [laptop, phone, tablet] = [new CookieJar(), new CookieJar(), new CookieJar()];
	for (const jar of [laptop, phone, tablet]) {
		await request(`${url}/sign-in?user=ada`, jar);
	}
	t.deepEqual((await request(`${url}/sign-out-others`, laptop)).body, { ended: 2 });
	t.like((await request(`${url}/`, laptop)).body, { userId: 'ada' });
	t.deepEqual((await request(`${url}/`, phone)).body, {});
	t.deepEqual((await request(`${url}/`, tablet)).body, {});
});

test('list shows a user\'s live sessions with the current one marked, never a key', async (t) => {
	const { store, database, url } = await subjectApp(t);
	const [laptop, phone] = [new CookieJar(), new CookieJar()];
	await request(`${url}/sign-in?user=ada`, laptop);
	await request(`${url}/sign-in?user=ada`, phone);
	const expired = new CookieJar();
	await request(`${url}/sign-in?user=ada`, expired);
	await database.query(`UPDATE http_sessions SET expires_on = now() - interval '1 second' WHERE key = $1`, [digestKey(expired.cookies.get('koa.sess') ?? '')]);

	const response = await request(`${url}/devices`, laptop);
	const devices = response.body as Record<string, unknown>[];
	t.is(devices.length, 2, 'the expired session is not listed');
	t.deepEqual(devices.map((device) => Object.keys(device).sort()), Array(2).fill(['createdOn', 'current', 'expiresOn', 'id', 'modifiedOn']));
	t.deepEqual(devices.map((device) => device['current']).sort(), [false, true]);
	const body = JSON.stringify(devices);
	for (const jar of [laptop, phone]) {
		const key = jar.cookies.get('koa.sess') ?? '';
		t.false(body.includes(key) || body.includes(digestKey(key)));
	}
	t.deepEqual(await store.list('grace'), []);
});

test('list() puts the most recently written session first', async (t) => {
	const { store, database } = await createStore(t, { subject: (session) => session['userId'] as string | undefined });
	for (const key of ['older', 'newest', 'middle']) {
		await store.set(key, { userId: 'ada', device: key }, hour);
	}
	await database.query(`UPDATE http_sessions SET modified_on = now() - (CASE data->>'device' WHEN 'older' THEN interval '2 hours' WHEN 'middle' THEN interval '1 hour' ELSE interval '0' END)`);
	const listed = await store.list('ada');
	const rows = await database.query<{ id: string; device: string }>(`SELECT id::text, data->>'device' AS device FROM http_sessions`);
	const deviceOf = new Map(rows.map((row) => [row.id, row.device]));
	t.deepEqual(listed.map((session) => deviceOf.get(session.id)), ['newest', 'middle', 'older']);
});

test('destroySession ends one device, only for its own subject', async (t) => {
	const { store, url } = await subjectApp(t);
	const [laptop, phone] = [new CookieJar(), new CookieJar()];
	await request(`${url}/sign-in?user=ada`, laptop);
	await request(`${url}/sign-in?user=ada`, phone);
	const devices = (await request(`${url}/devices`, laptop)).body as { id: string; current: boolean }[];
	const phoneId = devices.find((device) => !device.current)?.id ?? '';
	t.false(await store.destroySession('grace', phoneId), 'another user cannot end it');
	t.true(await store.destroySession('ada', phoneId));
	t.false(await store.destroySession('ada', phoneId));
	t.deepEqual((await request(`${url}/`, phone)).body, {});
	t.like((await request(`${url}/`, laptop)).body, { userId: 'ada' });
	await t.throwsAsync(store.destroySession('ada', 'DROP TABLE'), { instanceOf: TypeError, message: /`id`/ });
});

test('a request in flight on a signed-out device does not bring its session back', async (t) => {
	const gate = new Gate();
	const { store, database, url } = await subjectApp(t, gate);
	const jar = new CookieJar();
	await request(`${url}/sign-in?user=ada`, jar);
	const slow = request(`${url}/slow-write`, jar.clone());
	await gate.arrivals(1);
	t.is(await store.destroyAll('ada'), 1);
	gate.open();
	t.is((await slow).status, 200);
	t.deepEqual(await sessionRows(database), []);
});

test('the subject methods need the subject option, and the option needs the column', async (t) => {
	const { store } = await createStore(t);
	await t.throwsAsync(store.destroyAll('ada'), { instanceOf: TypeError, message: /`subject` option/ });
	await t.throwsAsync(store.list('ada'), { instanceOf: TypeError, message: /`subject` option/ });
	await t.throwsAsync(store.destroySession('ada', '1'), { instanceOf: TypeError, message: /`subject` option/ });
	const database = await createDatabase(t, { migrate: false });
	await database.query(await readFile(new URL('fixtures/app-schema/migration.sql', import.meta.url), 'utf8'));
	const prisma = new AppClient({ adapter: new PrismaPg({ connectionString: database.url }) });
	t.teardown(() => prisma.$disconnect());
	t.throws(() => new PgStore({ prisma, subject: () => 'x' }), { instanceOf: TypeError, message: /`subject`.*subject` field/ });
	t.throws(() => new PgStore({ connectionString: database.url, subject: 'userId' as never }), { instanceOf: TypeError, message: /`subject` to be a function/ });
	const { store: withSubject } = await createStore(t, { subject: () => ({}) as never });
	await t.throwsAsync(withSubject.set('k', { n: 1 }, hour), { instanceOf: TypeError, message: /`subject\(session\)`/ });
});

test('upgrade: sessions written before the subject migration are read and written after it', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const [init, ...later] = await migrationFiles();
	t.true(later.length > 0);
	await database.query(init?.sql ?? '');
	// What the previous release left: the init migration and sessions in its shape.
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		VALUES ($1, '{"userId": "ada", "cart": 2}', now(), now(), now() + interval '1 hour')`, [digestKey('old-session')]);

	const store = new PgStore({ connectionString: database.url, cleanupInterval: 0, subject: (session) => session['userId'] as string });
	t.teardown(() => store.close());
	const applied = await store.ensureSchema();
	t.true(applied.includes('20261122010000_session_subject'));
	const ctx = {};
	t.deepEqual(await store.get('old-session', hour, { ctx }), { userId: 'ada', cart: 2 });
	await store.set('old-session', { userId: 'ada', cart: 3 }, hour, { ctx, changed: true });
	t.deepEqual(await database.query('SELECT data, subject FROM http_sessions'), [{ data: { userId: 'ada', cart: 3 }, subject: 'ada' }]);
	t.is(await store.destroyAll('ada'), 1);
});

test('list() shows at most `limit` sessions (50 by default) and says when there are more', async (t) => {
	const { store, database } = await createStore(t, { subject: (session) => session['userId'] as string | undefined });
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on, subject)
		SELECT 'k' || n, '{}', now(), now() - n * interval '1 second', now() + interval '1 hour', 'ada' FROM generate_series(1, 60) AS n`);
	const first = await store.list('ada');
	t.is(first.length, 50);
	t.true(first.hasMore);
	const all = await store.list('ada', { limit: 60 });
	t.is(all.length, 60);
	t.false(all.hasMore);
	t.deepEqual(JSON.parse(JSON.stringify(all)).length, 60, 'a JSON body is the plain list');
	t.deepEqual(first.map((session) => session.id), all.slice(0, 50).map((session) => session.id), 'the most recent ones first');
	await t.throwsAsync(store.list('ada', { limit: 0 }), { instanceOf: TypeError, message: /`limit` to be an integer from 1 to 1000/ });
});

test('a store with `subject` on a table without the column: reads and writes fail with SchemaMismatchError naming the migration', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const [init] = await migrationFiles();
	await database.query(init?.sql ?? '');
	const store = new PgStore({ connectionString: database.url, cleanupInterval: 0, subject: (session) => session['userId'] as string | undefined });
	t.teardown(() => store.close());
	for (const attempt of [store.set('k', { userId: 'ada' }, hour), store.get('k', hour, {})]) {
		const error = await t.throwsAsync(attempt, { instanceOf: SchemaMismatchError });
		t.is(error?.code, 'ERR_PGSTORE_SCHEMA');
		t.deepEqual(error?.missing, ['column "subject"']);
		t.regex(error?.message ?? '', /…_session_subject.*ensureSchema\(\)/);
	}
	t.true((await store.ensureSchema()).some((name) => name.endsWith('_session_subject')), 'ensureSchema() adds it');
	await store.set('k', { userId: 'ada' }, hour);
	t.deepEqual(await database.query('SELECT subject FROM http_sessions'), [{ subject: 'ada' }]);
});
