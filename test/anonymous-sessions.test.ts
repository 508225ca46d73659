import test from 'ava';
import { CookieJar, request, startApp } from './helpers/http.js';
import { createStore, sessionRows } from './helpers/store.js';

// What README "Security" promises about anonymous visitors, pinned on koa-session 7 over HTTP.
test('a visitor whose session stays empty costs no row and no cookie; a field or a maxAge does', async (t) => {
	const { store, database } = await createStore(t);
	const { url } = await startApp(t, {
		session: { key: 'sid', store, maxAge: 30 * 60_000 },
		handler(ctx) {
			const session = ctx.session;
			if (session === null) {
				return;
			}
			if (ctx.path === '/read') {
				ctx.body = { views: session['views'] ?? 0 };
			} else if (ctx.path === '/csrf') {
				session['csrf'] = 'token';
				ctx.body = 'ok';
			} else if (ctx.path === '/max-age') {
				session.maxAge = 60_000;
				ctx.body = 'ok';
			}
		},
	});
	for (let visit = 0; visit < 5; visit += 1) {
		const response = await request(`${url}/read`, new CookieJar());
		t.deepEqual(response.setCookies, []);
	}
	t.is((await sessionRows(database)).length, 0, 'reading an empty session writes nothing');

	for (let visit = 0; visit < 3; visit += 1) {
		await request(`${url}/csrf`, new CookieJar());
	}
	t.is((await sessionRows(database)).length, 3, 'one row per cookieless request that sets a field');

	const response = await request(`${url}/max-age`, new CookieJar());
	t.true(response.setCookies.some((cookie) => cookie.name === 'sid'));
	const rows = await sessionRows(database);
	t.is(rows.length, 4, 'setting maxAge saves even an empty session');
	t.deepEqual(Object.keys(rows.at(-1)?.data ?? {}).sort(), ['_expire', '_maxAge']);
});
