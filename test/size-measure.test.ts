import test from 'ava';
import type Koa from 'koa';
import { InvalidSessionError, PgStore, SessionTooLargeError } from '../src/index.js';
import { printedSizeAtLeast } from '../src/codec/printed-size.js';
import { countingClient } from './helpers/counting-client.js';
import { createDatabase } from './helpers/database.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { hour } from './helpers/time.js';

// `maxLength` is checked against PostgreSQL's text of the stored jsonb, which prints a number
// without its exponent: `1e308` is 6 bytes of JSON and 309 of text. A save into a loaded session
// is measured that way before its write joins a batch, so a client's numbers never reach
// PostgreSQL in a statement other users' saves share.

test('the printed size is a lower bound of PostgreSQL\'s text of the jsonb, numbers included', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const samples = [{ a: 1e308 }, { a: 5e-324 }, { a: -1.5e-7, b: 'e+5' }, [1e21, 2e-7, 123.5, 'x'], { nested: { n: [1e300, -2.5e+250] } }, { text: 'héllo €' }];
	for (const sample of samples) {
		const json = JSON.stringify(sample);
		const [row] = await database.query<{ size: number }>('SELECT octet_length($1::jsonb::text) AS size', [json]);
		const printed = printedSizeAtLeast(json);
		t.true(printed <= (row?.size ?? 0), `${json}: ${printed} <= ${row?.size}`);
		// PostgreSQL adds a space after each `:` and `,`; nothing else.
		t.true(printed >= (row?.size ?? 0) - (json.match(/[:,]/g)?.length ?? 0), `${json}: ${printed} close to ${row?.size}`);
	}
});

test('a save of client numbers too large as PostgreSQL prints them is refused before it is sent: one statement, the read', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	// Mounted before koa-session, whose auto-commit after the route sends the save.
	const tooLarge: Koa.Middleware = async (ctx, next) => {
		try {
			await next();
		} catch (error) {
			if (!(error instanceof SessionTooLargeError)) {
				throw error;
			}
			ctx.status = 413;
			ctx.body = { size: error.size, maxLength: error.maxLength };
		}
	};
	const { url } = await startApp(t, { session: { store, maxAge: hour }, before: tooLarge, handler: sessionRoutes({ store }) });
	const jar = new CookieJar();
	await request(`${url}/set?cart=1`, jar);
	const send = (body: unknown) => request(`${url}/set-json`, jar.clone(), { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

	// 2,000 numbers: 14 KB of JSON (its bytes alone decide), 618 KB as PostgreSQL prints them.
	let before = statements();
	const numbers = await send({ filters: Array.from({ length: 2000 }, () => 1e308) });
	t.is(numbers.status, 413);
	t.true((numbers.body as { size: number }).size > 4096);
	t.is(statements() - before, 1, 'the read only: the write was never sent');

	// 14 numbers: about 110 bytes of JSON, 4.3 KB as PostgreSQL prints them: over 4,096.
	before = statements();
	const few = await send({ filters: Array.from({ length: 14 }, () => 1e308) });
	t.is(few.status, 413);
	t.true((few.body as { size: number }).size > 4096 && (few.body as { size: number }).size < 5000);
	t.is(statements() - before, 1, 'the read only: measured as printed, never sent');

	// Under the limit as printed: written.
	before = statements();
	t.is((await send({ filters: [1e300, 2.5e-7] })).status, 200);
	t.is(statements() - before, 2, 'a read and a write');
	const [row] = await database.query<{ filters: unknown }>(`SELECT data->'filters' AS filters FROM http_sessions`);
	t.deepEqual(row?.filters, [1e300, 2.5e-7]);
	t.like((await request(`${url}/`, jar.clone())).body, { cart: '1', filters: [1e300, 2.5e-7] });
});

test('a field far over maxLength is refused from a measure of it, never stringified; one under it is stringified and checked', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	await store.set('k', { cart: '1' }, hour);
	const ctx = {};
	const loaded = await store.get('k', hour, { ctx });
	const unserializable = { toJSON: (): never => {
		throw new Error('stringified');
	} };

	// 2,000 numbers, as PostgreSQL prints them 618 KB: refused once the measure passes 4,096, so
	// the value JSON.stringify refuses after them is never reached.
	const before = statements();
	const error = await t.throwsAsync(store.set('k', { ...loaded, filters: [...Array.from({ length: 2000 }, () => 1e308), unserializable] }, hour, { ctx, changed: true }), { instanceOf: SessionTooLargeError });
	t.true((error?.size ?? 0) > 4096 && (error?.size ?? 0) < 5000, String(error?.size));
	t.is(statements() - before, 0, 'nothing sent');
	// Within the limit the field is stringified, and what JSON refuses is refused.
	await t.throwsAsync(store.set('k', { ...loaded, filters: [1e308, unserializable] }, hour, { ctx, changed: true }), { instanceOf: InvalidSessionError });
	t.deepEqual((await database.query<{ data: unknown }>('SELECT data FROM http_sessions'))[0]?.data, { cart: '1' });
	// 13 numbers: 4,031 bytes as printed, the session under 4,096: written.
	await t.notThrowsAsync(store.set('k', { ...loaded, filters: Array.from({ length: 13 }, () => 1e308) }, hour, { ctx, changed: true }));
});
