import test from 'ava';
import { DatabaseError, PgStore } from '../src/index.js';
import { createDatabase } from './helpers/database.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { startPostgres } from '../scripts/embedded-postgres.js';

// This file stops its own PostgreSQL server, so other files running in parallel are not disturbed.
test('a database outage answers 500, never a fresh session, and the session is back afterwards', async (t) => {
	const server = await startPostgres();
	t.teardown(() => server.stop());
	const database = await createDatabase(t, { serverUrl: server.url });
	const poolErrors: Error[] = [];
	const store = new PgStore({
		connectionString: database.url,
		pool: { connectionTimeoutMillis: 3_000 },
		cleanupInterval: 0,
		// Idle connections break when the server stops: reported here, not thrown anywhere.
		onError: (error) => { poolErrors.push(error); },
	});
	t.teardown(() => store.close());
	const errors: unknown[] = [];
	const { app, url } = await startApp(t, {
		session: { store },
		handler: (ctx) => {
			if (ctx.session) {
				ctx.session['views'] = Number(ctx.session['views'] ?? 0) + 1;
				ctx.body = ctx.session.toJSON();
			}
		},
	});
	app.on('error', (error) => errors.push(error));
	const jar = new CookieJar();
	t.deepEqual((await request(url, jar)).body, { views: 1 });
	const cookie = jar.cookies.get('koa.sess');

	await server.stop({ keepData: true });
	const during = await request(url, jar);
	t.is(during.status, 500);
	t.deepEqual(during.setCookies, [], 'no new session cookie replaces the user\'s');
	t.is(jar.cookies.get('koa.sess'), cookie);
	t.true(errors.some((error) => error instanceof DatabaseError && error.operation === 'get'));

	await server.start();
	t.deepEqual((await request(url, jar)).body, { views: 2 }, 'the user is still signed in, data intact');
});
