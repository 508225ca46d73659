import test, { type ExecutionContext } from 'ava';
import type Koa from 'koa';
import pg from 'pg';
import { createKeys, PgStore, reissueOnRotation, SessionEndedError, type PgStoreOptions } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { databaseGate } from './helpers/database-gate.js';
import { Gate } from './helpers/gate.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { createStore } from './helpers/store.js';
import type { TestDatabase } from './helpers/database.js';
import { hour } from './helpers/time.js';

// A session's lifecycle against whatever else is in flight: sign-outs, logouts in other tabs,
// regenerates, expiry, key rotations. Each test forces the interleaving that once went wrong, with
// a gate in the app (after a request loaded its session) or in PostgreSQL (a write held after it
// locked its row), and asserts what the database and the next request show.

type StoreOptions = Omit<PgStoreOptions, 'prisma' | 'connectionString'>;

const subject = (session: Record<string, unknown>) => session['userId'] as string | undefined;

/**
 * The routes: `/set` and `/hold` (waits at the gate after loading) apply the query (`-name`
 * deletes a field); `/sign-in?user=` regenerates and sets `userId`; `/regenerate` and
 * `/hold-regenerate` only regenerate; `/logout`; `/shorten` sets `maxAge` to a minute; `/count`. A `SessionEndedError` answers 401.
 */
function routes(gate: Gate): Koa.Middleware {
	return async (ctx) => {
		const session = ctx.session;
		if (session === null) {
			throw new Error('koa-session always gives a session');
		}
		const apply = () => {
			for (const [name, value] of new URLSearchParams(ctx.querystring)) {
				if (name.startsWith('-')) {
					delete session[name.slice(1)];
				} else {
					session[name] = value;
				}
			}
		};
		try {
			switch (ctx.path) {
				case '/hold':
					await gate.wait();
					apply();
					break;
				case '/sign-in':
					await session.regenerate();
					Object.assign(ctx.session ?? {}, { userId: ctx.query['user'] });
					break;
				case '/hold-regenerate':
					await gate.wait();
					await session.regenerate();
					break;
				case '/regenerate':
					await session.regenerate();
					break;
				case '/logout':
					ctx.session = null;
					ctx.body = { loggedOut: true };
					return;
				case '/shorten':
					session.maxAge = 60_000;
					break;
				case '/count':
					session['views'] = (typeof session['views'] === 'number' ? session['views'] : 0) + 1;
					break;
				default:
					apply();
			}
		} catch (error) {
			if (!(error instanceof SessionEndedError)) {
				throw error;
			}
			ctx.status = 401;
			ctx.body = { ended: true };
			return;
		}
		ctx.body = { ...ctx.session?.toJSON() };
	};
}

async function lifecycleApp(t: ExecutionContext, storeOptions: StoreOptions = {}, sessionOptions: Record<string, unknown> = {}) {
	const gate = new Gate();
	const { store, database } = await createStore(t, { subject, ...storeOptions });
	const { url } = await startApp(t, { session: { store, maxAge: hour, ...sessionOptions }, handler: routes(gate) });
	return { gate, store, database, url };
}

async function signedIn(url: string, user = 'alice'): Promise<CookieJar> {
	const jar = new CookieJar();
	const response = await request(`${url}/sign-in?user=${user}`, jar);
	if (response.status !== 200) {
		throw new Error(`sign-in answered ${response.status}`);
	}
	return jar;
}

/** The live rows: key digest, subject and data. */
function liveRows(database: TestDatabase) {
	return database.query<{ key: string; subject: string | null; data: Record<string, unknown> }>(
		'SELECT key, subject, data FROM http_sessions WHERE expires_on > now() ORDER BY id',
	);
}

test('1. "sign out everywhere" holds against a regenerate() in flight: the moved row is deleted, or the move finds none', async (t) => {
	const { store, database, url } = await lifecycleApp(t);
	const laptop = await signedIn(url);
	const gate = await databaseGate(t, database);
	await gate.close();
	const regenerated = laptop.clone();
	const regenerating = request(`${url}/regenerate`, regenerated);
	await gate.writersWaiting(1);
	// The regenerate's write waits in PostgreSQL. The sign-out lands now: before the write (it
	// then waits for the row the write locked) or, on a store that deleted the old key first,
	// between the delete and the insert of the new one.
	const signOut = store.destroyAll('alice');
	await Promise.race([signOut, gate.lockWaiters(1)]);
	await gate.open();
	const [response, ended] = await Promise.all([regenerating, signOut]);
	t.true(response.status === 200 || response.status === 401);
	t.is(ended, 1, 'the sign-out ended the session, under its old key or its new one');
	t.deepEqual(await liveRows(database), [], 'alice is signed out everywhere');
	t.deepEqual((await request(`${url}/`, regenerated.clone())).body, {}, 'the regenerated cookie opens nothing');
});

test('1. a regenerate() that starts after "sign out everywhere" rejects with SessionEndedError: 401, no new key', async (t) => {
	const { gate, store, database, url } = await lifecycleApp(t);
	const laptop = await signedIn(url);
	const inFlight = request(`${url}/hold-regenerate`, laptop.clone());
	await gate.arrivals(1);
	t.is(await store.destroyAll('alice'), 1);
	gate.open();
	t.is((await inFlight).status, 401);
	t.deepEqual(await liveRows(database), []);
});

test('(a) an anonymous session that signs in while "sign out everywhere" of that user runs stays signed in', async (t) => {
	const { store, database, url } = await lifecycleApp(t);
	const visitor = new CookieJar();
	await request(`${url}/set?cart=3`, visitor);
	const gate = await databaseGate(t, database);
	await gate.close();
	const signingIn = request(`${url}/sign-in?user=alice`, visitor);
	await gate.writersWaiting(1);
	t.is(await store.destroyAll('alice'), 0, 'the visitor was nobody\'s session yet');
	await gate.open();
	t.is((await signingIn).status, 200);
	t.like((await request(`${url}/`, visitor)).body, { userId: 'alice', cart: '3' });
});

test('2. a logout in one tab ends the session a regenerate() in another tab is moving: no key of it reads as signed in', async (t) => {
	const { database, url } = await lifecycleApp(t);
	// Tab A's logout reaches another instance of the app (in one process, the store would queue it
	// behind the move of the same key; across instances PostgreSQL orders them).
	const other = new PgStore({ connectionString: database.url, cleanupInterval: 0, subject });
	t.teardown(() => other.close());
	const instance2 = await startApp(t, { session: { store: other, maxAge: hour }, handler: routes(new Gate()) });
	const browser = await signedIn(url);
	const gate = await databaseGate(t, database);
	await gate.close();
	const tabB = browser.clone();
	const regenerating = request(`${url}/regenerate`, tabB);
	await gate.writersWaiting(1);
	const logout = request(`${instance2.url}/logout`, browser.clone());
	await Promise.race([logout, gate.lockWaiters(1)]);
	await gate.open();
	const [regenerated, loggedOut] = await Promise.all([regenerating, logout]);
	t.is(loggedOut.status, 200);
	t.true(regenerated.status === 200 || regenerated.status === 401);
	t.deepEqual(await liveRows(database), [], 'the logout ended the session, whichever key it had');
	t.deepEqual((await request(`${url}/`, tabB.clone())).body, {}, 'tab B\'s new cookie opens nothing');
});

test('2. a logout whose request loaded the session before another tab moved it ends the moved row', async (t) => {
	const { database, url } = await lifecycleApp(t);
	const browser = await signedIn(url);
	const gate = new Gate();
	// Another instance whose route loads the session, waits, then logs out.
	const other = new PgStore({ connectionString: database.url, cleanupInterval: 0, subject });
	t.teardown(() => other.close());
	const logoutApp = await startApp(t, {
		session: { store: other, maxAge: hour },
		handler: async (ctx) => {
			await gate.wait();
			ctx.session = null;
			ctx.body = { loggedOut: true };
		},
	});
	const logout = request(`${logoutApp.url}/`, browser.clone());
	await gate.arrivals(1);
	const tabB = browser.clone();
	t.is((await request(`${url}/regenerate`, tabB)).status, 200, 'tab B moved the session to a new key');
	gate.open();
	t.is((await logout).status, 200);
	t.deepEqual(await liveRows(database), [], 'the logout deleted the row it loaded, under the key B moved it to');
	t.deepEqual((await request(`${url}/`, tabB.clone())).body, {});
});

test('3. a re-encrypting save during a key rotation keeps a field another request changed or removed meanwhile', async (t) => {
	const oldSecret = 'an old encryption secret, 32 chars or more';
	const newSecret = 'a new encryption secret, also 32 chars long';
	const { database, url: before } = await lifecycleApp(t, { encryptionKeys: [oldSecret] });
	const browser = new CookieJar();
	await request(`${before}/sign-in?user=alice`, browser);
	await request(`${before}/set?a=1&b=1`, browser);
	// After the rotation: the new secret first. The row is still under the old one.
	const gate = new Gate();
	const rotated = new PgStore({ connectionString: database.url, cleanupInterval: 0, subject, encryptionKeys: [newSecret, oldSecret] });
	t.teardown(() => rotated.close());
	const { url } = await startApp(t, { session: { store: rotated, maxAge: hour }, handler: routes(gate) });
	const slow = request(`${url}/hold?b=2`, browser.clone());
	await gate.arrivals(1);
	t.is((await request(`${url}/set?a=2&-userId=`, browser.clone())).status, 200);
	gate.open();
	t.is((await slow).status, 200);
	// Read back through a store that knows only the new secret: every field was re-sealed under it.
	const newOnly = new PgStore({ connectionString: database.url, cleanupInterval: 0, subject, encryptionKeys: [newSecret] });
	t.teardown(() => newOnly.close());
	const reader = await startApp(t, { session: { store: newOnly, maxAge: hour }, handler: routes(new Gate()) });
	t.deepEqual((await request(`${reader.url}/`, browser.clone())).body, { a: '2', b: '2' }, 'a stays as changed, userId stays removed');
	t.like(await liveRows(database), [{ subject: null }], 'the subject follows the removed userId');
	t.is(await rotated.destroyAll('alice'), 0);
});

test('4. regenerate() of a session that expired while the request ran rejects with SessionEndedError and moves nothing', async (t) => {
	const { gate, database, url } = await lifecycleApp(t);
	const laptop = await signedIn(url);
	const inFlight = request(`${url}/hold-regenerate`, laptop.clone());
	await gate.arrivals(1);
	await database.query(`UPDATE http_sessions SET expires_on = now() - interval '1 second'`);
	gate.open();
	const response = await inFlight;
	t.is(response.status, 401);
	t.false(response.setCookies.some((cookie) => cookie.name === 'koa.sess' && cookie.value !== ''), 'no cookie for a new key');
	t.deepEqual(await liveRows(database), []);
});

test('5. a session with a maxAge shorter than 4 × touchAfter lives as long as it is used', async (t) => {
	// koa-session passes the store maxAge + 10 s; the touch window must follow the 3 s the app set,
	// so the stored _expire lags the last save by less than 750 ms.
	const { url } = await lifecycleApp(t, {}, { maxAge: 3000 });
	const jar = new CookieJar();
	let views = 0;
	let chainStarted = Date.now();
	let lastAnswered = Date.now();
	// Used every 200 ms, each request must find the session of the last, for longer than maxAge.
	// A request that starts more than 2 s after the last answer (a stalled, loaded machine) may
	// find it expired by design: the chain then starts again.
	while (Date.now() - chainStarted < 4500) {
		const started = Date.now();
		const response = await request(`${url}/count`, jar);
		const body = response.body as { views?: number };
		if (started - lastAnswered > 2000 && body.views === 1) {
			views = 1;
			chainStarted = started;
		} else {
			views += 1;
			t.is(body.views, views, `request ${views}, ${started - chainStarted} ms into the chain`);
		}
		lastAnswered = Date.now();
		t.true(Date.now() - chainStarted < 30_000, 'the machine let a 4.5 s chain of requests run');
		await new Promise((resolve) => setTimeout(resolve, 200));
	}
});

test('6. a save computed earlier that lands later moves neither expires_on nor _expire backwards', async (t) => {
	// Instance 1 has one pooled connection, held by a write that waits in PostgreSQL: the next save
	// is computed, then waits for the connection while instance 2 saves the same session later.
	const { gate, database, url } = await lifecycleApp(t, { touchAfter: 0, pool: { max: 1 } });
	const other = new PgStore({ connectionString: database.url, cleanupInterval: 0, subject, touchAfter: 0 });
	t.teardown(() => other.close());
	const instance2 = await startApp(t, { session: { store: other, maxAge: hour }, handler: routes(new Gate()) });
	const blocker = new CookieJar();
	const session = new CookieJar();
	await request(`${url}/set?who=blocker`, blocker);
	await request(`${url}/set?who=session`, session);
	const key = digestKey(session.cookies.get('koa.sess') ?? '');
	// Only writes that set `hold` wait at this gate.
	await database.query(`CREATE FUNCTION public.hold_gate() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock_shared(4343); RETURN NEW; END $$;
		CREATE TRIGGER hold_gate BEFORE UPDATE ON http_sessions FOR EACH ROW WHEN (NEW.data ? 'hold') EXECUTE FUNCTION public.hold_gate()`);
	const holder = new pg.Client({ connectionString: database.url });
	await holder.connect();
	t.teardown(() => holder.end());
	await holder.query('SELECT pg_advisory_lock(4343)');
	// The earlier request loads its session and waits in the app; then the blocker's write takes
	// the connection and waits in PostgreSQL.
	const earlier = request(`${url}/hold?n=1`, session.clone());
	await gate.arrivals(1);
	const blocking = request(`${url}/set?hold=1`, blocker);
	await waitForAdvisoryWaiter(database, 4343);
	// The save is computed as the gate opens: by the next turn it waits for instance 1's connection.
	gate.open();
	await new Promise((resolve) => setImmediate(resolve));
	const computed = Date.now();
	while (Date.now() - computed < 5) {
		await new Promise((resolve) => setTimeout(resolve, 1));
	}
	t.is((await request(`${instance2.url}/set?later=1`, session.clone())).status, 200);
	const [later] = await database.query<{ expires: number; expire: number }>(
		'SELECT (extract(epoch FROM expires_on) * 1000)::float8 AS expires, (data->>\'_expire\')::float8 AS expire FROM http_sessions WHERE key = $1', [key]);
	await holder.query('SELECT pg_advisory_unlock(4343)');
	t.deepEqual([(await blocking).status, (await earlier).status], [200, 200]);
	const [after] = await database.query<{ expires: number; expire: number; data: Record<string, unknown> }>(
		'SELECT (extract(epoch FROM expires_on) * 1000)::float8 AS expires, (data->>\'_expire\')::float8 AS expire, data FROM http_sessions WHERE key = $1', [key]);
	t.like(after?.data, { n: '1', later: '1' }, 'both saves applied');
	t.true((after?.expires ?? 0) >= (later?.expires ?? Infinity), 'expires_on did not move back');
	t.true((after?.expire ?? 0) >= (later?.expire ?? Infinity), '_expire did not move back');
});

async function waitForAdvisoryWaiter(database: TestDatabase, lock: number): Promise<void> {
	for (let tries = 0; tries < 2000; tries += 1) {
		const [row] = await database.query<{ count: number }>(`SELECT count(*)::int AS count FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, [lock]);
		if ((row?.count ?? 0) > 0) {
			return;
		}
		await new Promise((resolve) => setTimeout(resolve, 10));
	}
	throw new Error('No write waited at the gate');
}

test('6. a save that changes maxAge may shorten the session', async (t) => {
	const { database, url } = await lifecycleApp(t, { touchAfter: 0 });
	const jar = new CookieJar();
	await request(`${url}/set?who=x`, jar);
	t.is((await request(`${url}/shorten`, jar)).status, 200);
	const [row] = await database.query<{ left: number }>('SELECT extract(epoch FROM expires_on - now()) * 1000 AS left FROM http_sessions');
	t.true((row?.left ?? Infinity) < 120_000, 'the shorter maxAge took effect');
});

test('7. reissueOnRotation() after regenerate() keeps the new key: a cookie signed by an older secret does not bring back the old one', async (t) => {
	const oldSecret = 'old-secret-0123456789-abcdefghijklmnop';
	const newSecret = 'new-secret-0123456789-abcdefghijklmnop';
	const { store } = await createStore(t, { subject });
	const before = await startApp(t, { keys: createKeys([oldSecret]), session: { store, maxAge: hour }, handler: routes(new Gate()) });
	for (const mountedBefore of [true, false]) {
		const jar = new CookieJar();
		await request(`${before.url}/set?cart=1`, jar);
		const gate = new Gate();
		const after = await startApp(t, {
			keys: createKeys([newSecret, oldSecret]),
			session: { store, maxAge: hour },
			...mountedBefore ? { before: reissueOnRotation() } : {},
			handler: mountedBefore ? routes(gate) : async (ctx, next) => reissueOnRotation()(ctx, async () => routes(gate)(ctx, next)),
		});
		const browser = jar.clone();
		const response = await request(`${after.url}/sign-in?user=alice`, browser);
		t.is(response.status, 200);
		t.like((await request(`${after.url}/`, browser)).body, { userId: 'alice', cart: '1' }, `mounted ${mountedBefore ? 'before' : 'after'} koa-session: still signed in`);
	}
});
