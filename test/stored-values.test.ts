import { PrismaPg } from '@prisma/adapter-pg';
import test, { type ExecutionContext } from 'ava';
import { PgStore, SessionUnreadableError, type ErrorContext, type PgStoreOptions } from '../src/index.js';
import { PrismaClient } from '../src/generated/prisma/client.js';
import { createDatabase } from './helpers/database.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { hour } from './helpers/time.js';

// What someone with write access to the table (not the store, not koa-session) can put in a row
// besides the session's fields: koa-session's `_expire` and `_maxAge`, and the expiry column.
// None of it may fail a request: such a row is passed over as a corrupted one, and onError told.

type Reported = [Error, ErrorContext];

const cases: { what: string; set: string; field: string }[] = [
	{ what: 'a _maxAge below zero', set: `data = jsonb_set(data, '{_maxAge}', '-86400000000')`, field: '_maxAge' },
	{ what: 'a _maxAge that is not a number', set: `data = jsonb_set(data, '{_maxAge}', '"a day"')`, field: '_maxAge' },
	{ what: 'an _expire that is not a number', set: `data = jsonb_set(data, '{_expire}', '"tomorrow"')`, field: '_expire' },
	{ what: 'an expires_on of infinity', set: `expires_on = 'infinity'`, field: 'expiresOn' },
	{ what: 'an expires_on in the year 280000, past what a Date holds', set: `expires_on = '280000-01-01'`, field: 'expiresOn' },
];

async function app(t: ExecutionContext, options: Omit<PgStoreOptions, 'connectionString' | 'prisma'>, { viaPrisma = false } = {}) {
	const database = await createDatabase(t);
	const reported: Reported[] = [];
	const client = viaPrisma ? new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) }) : undefined;
	const connection = client === undefined ? { connectionString: database.url } : { prisma: client };
	const store = new PgStore({ ...connection, cleanupInterval: 0, onError: (error, context) => { reported.push([error, context]); }, ...options });
	t.teardown(async () => {
		await store.close();
		await client?.$disconnect();
	});
	const { url } = await startApp(t, { session: { store, maxAge: hour }, handler: sessionRoutes({ store }) });
	return { database, url, reported };
}

function reports(reported: Reported[]) {
	return reported.map(([error, context]) => ({
		name: error.name,
		code: error instanceof SessionUnreadableError ? error.code : undefined,
		reason: error instanceof SessionUnreadableError ? error.reason : undefined,
		fields: error instanceof SessionUnreadableError ? [...error.fields] : undefined,
		source: context.source,
	}));
}

for (const { what, set, field } of cases) {
	test(`a row with ${what} fails no request: a fresh session for a read and for a save, and onError is told`, async (t) => {
		const { database, url, reported } = await app(t, {});
		const jar = new CookieJar();
		await request(`${url}/set?userId=alice`, jar);
		await database.query(`UPDATE http_sessions SET ${set}`);
		const [before] = await database.query('SELECT data::text, expires_on::text FROM http_sessions');

		const read = await request(`${url}/`, jar);
		t.is(read.status, 200);
		t.like(read.body, { userId: undefined });
		const saved = await request(`${url}/count`, jar);
		t.is(saved.status, 200);
		t.like(saved.body, { userId: undefined, views: 1 });
		t.like((await request(`${url}/count`, jar)).body, { views: 2 }, 'the fresh session goes on');

		const expected = { name: 'SessionUnreadableError', code: 'ERR_PGSTORE_SESSION_UNREADABLE', reason: 'out-of-range', fields: [field], source: 'get' };
		t.deepEqual(reports(reported), [expected, expected]);
		t.false(reported[0]?.[0].message.includes('alice'));
		t.deepEqual((await database.query('SELECT data::text, expires_on::text FROM http_sessions ORDER BY id'))[0], before, 'the row was left as it was');
	});
}

test('with encryption and through the app\'s Prisma client too, a negative _maxAge and an expires_on of infinity fail no request', async (t) => {
	const { database, url, reported } = await app(t, { encryptionKeys: 'the data secret of this test: 32 bytes or more' }, { viaPrisma: true });
	for (const set of [cases[0]?.set, cases[3]?.set]) {
		const jar = new CookieJar();
		await request(`${url}/set?userId=alice`, jar);
		await database.query(`UPDATE http_sessions SET ${set ?? ''} WHERE id = (SELECT max(id) FROM http_sessions)`);
		t.is((await request(`${url}/count`, jar)).status, 200);
		t.like((await request(`${url}/count`, jar)).body, { userId: undefined, views: 2 });
	}
	t.deepEqual(reports(reported).map((report) => [report.reason, report.fields]), [['out-of-range', ['_maxAge']], ['out-of-range', ['expiresOn']]]);
});

test('a lifetime past what a Date holds passes: _maxAge and _expire of 1e300 are read, and the next save clamps the expiry', async (t) => {
	const { database, url, reported } = await app(t, {});
	const jar = new CookieJar();
	await request(`${url}/set?userId=alice`, jar);
	await database.query(`UPDATE http_sessions SET data = jsonb_set(jsonb_set(data, '{_maxAge}', '1e300'), '{_expire}', '1e300')`);
	t.like((await request(`${url}/count`, jar)).body, { userId: 'alice', views: 1 });
	t.like((await request(`${url}/count`, jar)).body, { userId: 'alice', views: 2 });
	const [row] = await database.query<{ expires: string }>('SELECT expires_on::text AS expires FROM http_sessions');
	t.regex(row?.expires ?? '', /^275760-09-13/);
	t.deepEqual(reported, []);
});

test('koa-session\'s own values pass: a _maxAge of a hundred years, or of \'session\'', async (t) => {
	const { database, url, reported } = await app(t, {});
	const jar = new CookieJar();
	await request(`${url}/set?userId=alice`, jar);
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{_maxAge}', to_jsonb(100 * 365 * 86400000::bigint))`);
	t.like((await request(`${url}/count`, jar)).body, { userId: 'alice', views: 1 });
	const other = new CookieJar();
	await request(`${url}/set?userId=bob`, other);
	await database.query(`UPDATE http_sessions SET data = jsonb_set(data, '{_maxAge}', '"session"') WHERE id = (SELECT max(id) FROM http_sessions)`);
	t.like((await request(`${url}/count`, other)).body, { userId: 'bob', views: 1 });
	t.deepEqual(reported, []);
});
