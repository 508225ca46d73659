import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { DatabaseError, PgStore, type PgStoreOptions } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { defaultConnectionTimeout, defaultQueryTimeout } from '../src/driver/prisma-client.js';
import { createDatabase, type TestDatabase } from './helpers/database.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { CookieJar, request, startApp } from './helpers/http.js';

// The machine is shared with other test files: a bound is checked with this much leeway on top.
const slack = 3_000;
const hour = 3_600_000;

async function storeBehindProxy(t: ExecutionContext, options: Omit<PgStoreOptions, 'prisma' | 'connectionString'> = {}): Promise<{
	store: PgStore; proxy: FaultProxy; database: TestDatabase; poolErrors: Error[];
}> {
	const database = await createDatabase(t);
	const proxy = await startFaultProxy(t, database.url);
	const poolErrors: Error[] = [];
	const store = new PgStore({ connectionString: proxy.url, cleanupInterval: 0, onError: (error) => poolErrors.push(error), ...options });
	t.teardown(() => store.close());
	return { store, proxy, database, poolErrors };
}

async function timed<T>(promise: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
	const started = performance.now();
	try {
		const value = await promise;
		return { ms: performance.now() - started, value };
	} catch (error) {
		return { ms: performance.now() - started, error };
	}
}

/** A direct connection (not through the proxy) for the test's own locks. */
async function lockingClient(t: ExecutionContext, database: TestDatabase): Promise<pg.Client> {
	const client = new pg.Client({ connectionString: database.url });
	await client.connect();
	t.teardown(() => client.end());
	return client;
}

/** Resolves once PostgreSQL shows a backend of `database` waiting for a lock (or rejects after 10 s). */
async function untilWaitingForLock(database: TestDatabase, expected = 1): Promise<void> {
	const deadline = Date.now() + 10_000;
	for (;;) {
		const [row] = await database.query<{ n: number }>(
			`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, [database.name],
		);
		if ((row?.n ?? 0) >= expected) {
			return;
		}
		if (Date.now() > deadline) {
			throw new Error(`no ${expected} backend(s) waiting for a lock within 10 s`);
		}
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
}

test('a black hole turns requests into DatabaseErrors within the default bounds, and the store recovers when the network is back', async (t) => {
	const { store, proxy } = await storeBehindProxy(t);
	await store.set('a', { n: 1 }, hour);
	// Two statements at once, so the pool holds two connections when the network goes.
	await Promise.all([store.get('a', hour, {}), store.set('b', { n: 2 }, hour)]);

	proxy.blackHole();
	const [read, write] = await Promise.all([timed(store.get('a', hour, {})), timed(store.set('c', { n: 3 }, hour))]);
	for (const outcome of [read, write]) {
		t.true(outcome.error instanceof DatabaseError);
		t.is((outcome.error as DatabaseError).failure, 'query-timeout');
		t.true(outcome.ms < defaultQueryTimeout + slack, `rejected after ${outcome.ms} ms`);
	}
	t.regex((read.error as DatabaseError).message, /no answer to the statement within 3000 ms \(pool\.query_timeout\)/);
	// Now the pool must open a connection, which the black hole swallows too.
	const connecting = await timed(store.get('a', hour, {}));
	t.is((connecting.error as DatabaseError | undefined)?.failure, 'connect-timeout');
	t.true(connecting.ms < defaultConnectionTimeout + slack, `rejected after ${connecting.ms} ms`);

	proxy.heal();
	// No connection of the black hole is handed out again: each of these would hang until its bound.
	for (let round = 0; round < 3; round++) {
		const [again, written] = await Promise.all([timed(store.get('a', hour, {})), timed(store.set('b', { n: 2 + round }, hour))]);
		t.deepEqual(again.value, { n: 1 });
		t.is(written.error, undefined);
		t.true(again.ms < 1_000 + slack && written.ms < 1_000 + slack);
	}
});

test('close() resolves during a black hole, with requests in flight', async (t) => {
	const { store, proxy } = await storeBehindProxy(t);
	await store.set('a', { n: 1 }, hour);
	proxy.blackHole();
	const inFlight = store.get('a', hour, {}).catch((error: unknown) => error);
	await new Promise((resolve) => setTimeout(resolve, 100));
	const closing = await timed(store.close());
	t.is(closing.error, undefined);
	t.true(closing.ms < defaultQueryTimeout + slack, `close() took ${closing.ms} ms`);
	t.true(await inFlight instanceof DatabaseError);
});

// While a statement is on its way, the connection breaks: the server's answer never comes.
const breaks = [
	{ title: 'a connection reset', cut: (proxy: FaultProxy) => proxy.reset(), message: /ECONNRESET|Connection terminated/ },
	// node-postgres: "Connection terminated unexpectedly", an error with neither code nor syscall.
	{ title: 'a connection closed without a word', cut: (proxy: FaultProxy) => proxy.hangUp(), message: /Connection terminated unexpectedly/ },
];
for (const { title, cut, message } of breaks) {
	test(`${title} while a statement runs is a connection-lost DatabaseError, and the next request succeeds`, async (t) => {
		const { store, proxy } = await storeBehindProxy(t);
		await store.set('a', { n: 1 }, hour);
		proxy.blackHole();
		const pending = timed(store.get('a', hour, {}));
		await new Promise((resolve) => setTimeout(resolve, 200));
		cut(proxy);
		const outcome = await pending;
		t.true(outcome.error instanceof DatabaseError);
		t.like(outcome.error, { failure: 'connection-lost', sqlState: undefined });
		t.regex((outcome.error as DatabaseError).message, message);
		t.true(outcome.ms < 1_000 + slack, `rejected after ${outcome.ms} ms`);
		t.deepEqual(await store.get('a', hour, {}), { n: 1 });
	});
}

test('requests stuck behind row locks of an exhausted pool end within the bound, are cancelled in PostgreSQL, and the rest are served', async (t) => {
	const { store, database } = await storeBehindProxy(t, { pool: { max: 2 } });
	await store.set('locked-1', { n: 1 }, hour);
	await store.set('locked-2', { n: 2 }, hour);
	await store.set('free', { n: 3 }, hour);
	// The test holds both rows' locks, as a long transaction of the app would.
	const locker = await lockingClient(t, database);
	await locker.query('BEGIN');
	await locker.query('SELECT 1 FROM http_sessions WHERE key = ANY($1) FOR UPDATE', [[digestKey('locked-1'), digestKey('locked-2')]]);

	const { url } = await startApp(t, {
		session: { store, key: 'sid' },
		handler: (ctx) => {
			if (ctx.session) {
				ctx.session['seen'] = Number(ctx.session['seen'] ?? 0) + 1;
				ctx.body = 'ok';
			}
		},
	});
	// Writes to the locked sessions hold both pooled connections; 50 other visitors queue for them.
	// (In separate turns of the event loop, or they would share one statement.)
	const lockedWrites = [timed(store.set('locked-1', { n: 10 }, hour))];
	await new Promise((resolve) => setImmediate(resolve));
	lockedWrites.push(timed(store.set('locked-2', { n: 20 }, hour)));
	await untilWaitingForLock(database, 2);
	const started = performance.now();
	const visitors = await Promise.all(Array.from({ length: 50 }, () => request(url, new CookieJar())));
	const visitorsMs = performance.now() - started;
	for (const outcome of await Promise.all(lockedWrites)) {
		t.is((outcome.error as DatabaseError | undefined)?.failure, 'query-timeout');
		t.true(outcome.ms < defaultQueryTimeout + slack, `rejected after ${outcome.ms} ms`);
	}
	// Queued requests outlive the stuck statements' bound (connectionTimeoutMillis >= query_timeout) and are served.
	t.deepEqual(new Set(visitors.map((visitor) => visitor.status)), new Set([200]));
	t.true(visitorsMs < defaultQueryTimeout + defaultConnectionTimeout + slack, `visitors took ${visitorsMs} ms`);
	// The timed-out UPDATEs were cancelled in PostgreSQL: nothing waits on the lock any more (the
	// CancelRequest travels on a connection of its own, so it may land a moment later; the lock is
	// held until the COMMIT below, so without the cancel they would wait forever), and releasing
	// it applies no late write.
	let waiting: { n: number } | undefined;
	for (const deadline = performance.now() + 2_000; performance.now() < deadline;) {
		[waiting] = await database.query<{ n: number }>(
			`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, [database.name],
		);
		if (waiting?.n === 0) {
			break;
		}
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
	t.deepEqual(waiting, { n: 0 });
	await locker.query('COMMIT');
	t.deepEqual(await store.get('locked-1', hour, {}), { n: 1 });
	t.deepEqual(await store.get('locked-2', hour, {}), { n: 2 });
});

test('with a pool-acquire bound shorter than the statement bound, queued requests fail as pool-exhausted', async (t) => {
	const { store, database } = await storeBehindProxy(t, { pool: { max: 1, connectionTimeoutMillis: 500, query_timeout: 4_000 } });
	// The setup's first connection may take longer than 500 ms on a loaded machine: it is not what
	// this test measures.
	for (let tries = 0; ; tries += 1) {
		const setup = await timed(store.set('locked', { n: 1 }, hour));
		if (setup.error === undefined || tries === 5) {
			break;
		}
	}
	const locker = await lockingClient(t, database);
	await locker.query('BEGIN');
	await locker.query('SELECT 1 FROM http_sessions WHERE key = $1 FOR UPDATE', [digestKey('locked')]);
	const stuck = timed(store.set('locked', { n: 2 }, hour));
	await untilWaitingForLock(database);
	const queued = await timed(store.get('other', hour, {}));
	t.is((queued.error as DatabaseError | undefined)?.failure, 'pool-exhausted');
	t.regex((queued.error as Error).message, /no pooled connection became free within 500 ms/);
	t.true(queued.ms < 500 + slack);
	t.is(((await stuck).error as DatabaseError | undefined)?.failure, 'query-timeout');
	await locker.query('ROLLBACK');
});

test('a black hole in the middle of a cleanup sweep: the sweep fails within its bound and its connection is not pooled again', async (t) => {
	// One connection only: if the sweep's blocked connection went back to the pool, the next
	// request would get it and wait for an answer that never comes.
	const { store, proxy, database } = await storeBehindProxy(t, { pool: { max: 1, query_timeout: 700 } });
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		SELECT 'expired-' || n, '{}'::jsonb, now(), now(), now() - interval '1 hour' FROM generate_series(1, 50) AS n
		UNION ALL SELECT $1, '{"n": 1}'::jsonb, now(), now(), now() + interval '1 hour'`, [digestKey('live')]);
	const locker = await lockingClient(t, database);
	await locker.query('BEGIN');
	// Reads go on; the sweep's row locks (FOR UPDATE SKIP LOCKED) must wait for the table.
	await locker.query('LOCK TABLE http_sessions IN EXCLUSIVE MODE');

	const sweep = timed(store.cleanup());
	// The sweep's DELETE waits for the table lock, inside its transaction; then the network goes,
	// and the answer the DELETE gets once the lock is released is lost.
	await untilWaitingForLock(database);
	proxy.blackHole();
	await locker.query('ROLLBACK');
	const outcome = await sweep;
	t.true(outcome.error instanceof DatabaseError);
	t.is((outcome.error as DatabaseError).operation, 'cleanup');
	t.is((outcome.error as DatabaseError).failure, 'query-timeout');
	// Statements in a transaction (ensureSchema, cleanup) may take ten times query_timeout.
	t.true(outcome.ms >= 7_000 - 100 && outcome.ms < 7_000 + slack, `the sweep failed after ${outcome.ms} ms`);

	proxy.heal();
	const after = await timed(store.get('live', hour, {}));
	t.deepEqual(after.value, { n: 1 });
	t.true(after.ms < 1_000 + slack, `the request after the sweep took ${after.ms} ms`);
	const report = await store.cleanup();
	t.false(report.skipped);
	t.deepEqual(await database.query(`SELECT count(*)::int AS n FROM http_sessions WHERE expires_on < now()`), [{ n: 0 }]);
});

test('a DatabaseError from an answering server has no failure, and PostgreSQL\'s own message', async (t) => {
	const { store, database } = await storeBehindProxy(t);
	await database.query('ALTER TABLE http_sessions RENAME TO gone');
	const error = await t.throwsAsync(store.get('k', hour, {}), { instanceOf: DatabaseError });
	t.is(error?.failure, undefined);
	t.is(error?.sqlState, '42P01');
	t.regex(error?.message ?? '', /SQLSTATE 42P01.*: relation "http_sessions" does not exist$/);
});
