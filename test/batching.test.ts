import test from 'ava';
import pg from 'pg';
import { DatabaseError, PgStore } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { countingClient } from './helpers/counting-client.js';
import { createDatabase, type TestDatabase } from './helpers/database.js';
import { createStore, sessionRows } from './helpers/store.js';
import { recordParses } from './helpers/wire-recorder.js';
import { hour } from './helpers/time.js';

// Calls made in the same turn of the event loop share statements; these tests start them all
// before awaiting any, so that they land in one batch.

test('reads of one turn each get their own row, or undefined', async (t) => {
	const { store } = await createStore(t);
	await Promise.all(['a', 'b', 'c'].map((key) => store.set(key, { key }, hour)));
	const results = await Promise.all(['a', 'missing', 'b', 'a', 'c'].map((key) => store.get(key, hour, {})));
	t.deepEqual(results, [{ key: 'a' }, undefined, { key: 'b' }, { key: 'a' }, { key: 'c' }]);
});

test('a failed batch rejects every read in it with a DatabaseError', async (t) => {
	const { store, database } = await createStore(t);
	await database.query('ALTER TABLE http_sessions RENAME TO elsewhere');
	const results = await Promise.allSettled(['a', 'b'].map((key) => store.get(key, hour, {})));
	for (const result of results) {
		t.is(result.status, 'rejected');
		t.true(result.status === 'rejected' && result.reason instanceof DatabaseError);
	}
});

test('writes of one turn to distinct keys all land', async (t) => {
	const { store, database } = await createStore(t);
	await store.set('updated', { v: 0 }, hour);
	await store.set('destroyed', { v: 0 }, hour);
	const ctx = {};
	await store.get('updated', hour, { ctx });
	await Promise.all([
		store.set('updated', { v: 1 }, hour, { ctx, changed: true }),
		store.set('created', { v: 1 }, hour),
		store.destroy('destroyed', {}),
	]);
	const rows = await sessionRows(database);
	t.deepEqual(
		rows.map((row) => [row.key, row.data]).sort(),
		[[digestKey('created'), { v: 1 }], [digestKey('updated'), { v: 1 }]].sort(),
	);
});

test('two writes to one key in one turn apply in the order they were made', async (t) => {
	const { store, database } = await createStore(t);
	await Promise.all([store.set('k', { v: 1 }, hour), store.set('k', { v: 2 }, hour), store.set('other', { v: 0 }, hour)]);
	t.deepEqual((await sessionRows(database)).find((row) => row.key === digestKey('k'))?.data, { v: 2 });

	const ctx = {};
	await store.get('k', hour, { ctx });
	// A logout and a save of the same loaded session in one turn: the logout comes first and stays.
	await Promise.all([store.destroy('k', {}), store.set('k', { v: 3 }, hour, { ctx, changed: true })]);
	t.false((await sessionRows(database)).some((row) => row.key === digestKey('k')));
});

test('an update in a batch does not recreate a session deleted before it', async (t) => {
	const { store, database } = await createStore(t);
	await Promise.all(['a', 'b'].map((key) => store.set(key, { key }, hour)));
	const ctx = {};
	await Promise.all(['a', 'b'].map((key) => store.get(key, hour, { ctx })));
	await database.query('DELETE FROM http_sessions WHERE key = $1', [digestKey('a')]);
	await Promise.all([
		store.set('a', { key: 'a', v: 2 }, hour, { ctx, changed: true }),
		store.set('b', { key: 'b', v: 2 }, hour, { ctx, changed: true }),
	]);
	const rows = await sessionRows(database);
	t.deepEqual(rows.map((row) => row.data), [{ key: 'b', v: 2 }]);
});

test('concurrent reads of one session get objects of their own', async (t) => {
	const { store } = await createStore(t);
	await store.set('shared', { cart: { items: [1] } }, hour);
	const [first, second] = await Promise.all([store.get('shared', hour, {}), store.get('shared', hour, {})]);
	(first?.['cart'] as { items: number[] }).items.push(2);
	t.deepEqual(second, { cart: { items: [1] } });
});

test('preparedStatements: false sends plain statements, with the same results', async (t) => {
	const { store } = await createStore(t, { preparedStatements: false });
	await store.set('k', { n: 1 }, hour);
	t.deepEqual(await Promise.all([store.get('k', hour, {}), store.get('none', hour, {})]), [{ n: 1 }, undefined]);
});

test('reads of one turn go to PostgreSQL as one statement', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	await store.set('a', { n: 1 }, hour);
	const before = statements();
	const results = await Promise.all(['a', 'b', 'a', 'c', 'd', 'e', 'f', 'g'].map((key) => store.get(key, hour, {})));
	t.is(results.filter(Boolean).length, 2);
	t.is(statements() - before, 1, 'eight reads, one statement');
});

test('a turn of mixed writes runs one statement per kind of write', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	await Promise.all(['u1', 'u2', 'd1', 'd2'].map((key) => store.set(key, { n: 0 }, hour)));
	const ctx = {};
	await Promise.all(['u1', 'u2'].map((key) => store.get(key, hour, { ctx })));
	const before = statements();
	await Promise.all([
		store.set('u1', { n: 1 }, hour, { ctx, changed: true }),
		store.set('u2', { n: 1 }, hour, { ctx, changed: true }),
		store.set('n1', { n: 1 }, hour),
		store.set('n2', { n: 1 }, hour),
		store.destroy('d1', {}),
		store.destroy('d2', {}),
	]);
	t.is(statements() - before, 3, 'an UPDATE, an upsert and a DELETE for six writes');
	const rows = await sessionRows(database);
	t.deepEqual(rows.map((row) => [row.key, row.data]).sort(), ['u1', 'u2', 'n1', 'n2'].map((key) => [digestKey(key), { n: 1 }]).sort());
});

test('keys koa-session made in a request are inserted in one statement; a batch that meets a stored key runs again as one upsert, and every write lands', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	let before = statements();
	await Promise.all(['a', 'b', 'c'].map((key) => store.set(key, { n: 1 }, hour, { ctx: {} })));
	t.is(statements() - before, 1, 'three new keys, one INSERT');
	// A request that sets a key it did not load, which is stored after all (an app calling `set`
	// itself): the INSERT fails as a whole on the unique key, and the upsert writes both.
	before = statements();
	await Promise.all([store.set('a', { n: 2 }, hour, { ctx: {} }), store.set('d', { n: 2 }, hour, { ctx: {} })]);
	t.is(statements() - before, 2, 'the INSERT that met `a`, then one upsert');
	const rows = await sessionRows(database);
	t.deepEqual(rows.map((row) => [row.key, row.data]).sort(), [['a', { n: 2 }], ['b', { n: 1 }], ['c', { n: 1 }], ['d', { n: 2 }]]
		.map(([key, data]) => [digestKey(key as string), data]).sort());
});

test('writes of one key in one turn apply in the order asked, in rounds; the other keys share the first round\'s statement', async (t) => {
	const database = await createDatabase(t);
	const { prisma, statements } = countingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	const before = statements();
	await Promise.all([
		store.set('twice', { n: 1 }, hour),
		store.set('a', { n: 1 }, hour),
		store.set('twice', { n: 2 }, hour),
		store.set('b', { n: 1 }, hour),
		store.set('twice', { n: 3 }, hour),
	]);
	t.is(statements() - before, 3, 'an upsert of a, b and the first write of `twice`, then one for each later write of `twice`');
	const rows = await sessionRows(database);
	t.deepEqual(rows.map((row) => [row.key, row.data]).sort(), [['twice', { n: 3 }], ['a', { n: 1 }], ['b', { n: 1 }]]
		.map(([key, data]) => [digestKey(key as string), data]).sort());
});

test('with preparedStatements (the default) the store\'s statements are prepared under their name and a digest of their text, without they are not', async (t) => {
	const database = await createDatabase(t);
	for (const preparedStatements of [true, false]) {
		const { url, parses } = await recordParses(t, database.url);
		const store = new PgStore({ connectionString: url, cleanupInterval: 0, ...preparedStatements ? {} : { preparedStatements } });
		t.teardown(() => store.close());
		await store.set('k', { n: 1 }, hour);
		const ctx = {};
		await store.get('k', hour, { ctx });
		await store.set('k', { n: 2 }, hour, { ctx, changed: true });
		await store.destroy('k', {});
		// Unprepared, they run as unnamed calls of the session functions (test/session-functions.test.ts).
		const sent = parses.filter((parse) => parse.text.includes('http_sessions') || parse.text.includes('FROM public."koa_pgstore_'));
		const shapes = sent.map((parse) => parse.name.replace(/_[0-9a-f]{12}$/, '_<digest>') || parse.text.replace(/^SELECT \* FROM public\."(koa_pgstore_[a-z_]+)_[0-9a-f]{12}".*$/, 'unnamed call of $1'));
		t.deepEqual(shapes, preparedStatements
			? ['koa_pgstore_upsert_<digest>', 'koa_pgstore_selectLive_<digest>', 'koa_pgstore_updateLive_<digest>', 'koa_pgstore_delete_<digest>']
			: ['unnamed call of koa_pgstore_upsert', 'unnamed call of koa_pgstore_select_live', 'unnamed call of koa_pgstore_update_live', 'unnamed call of koa_pgstore_delete']);
	}
});

// The deadlocks PostgreSQL detected in `database`, once the backends of the connections named
// `applicationName` have exited. A backend adds its deadlocks to the statistics when it flushes
// them: at the latest as it exits, before it leaves pg_stat_activity.
async function deadlocksAfterExit(database: TestDatabase, applicationName: string): Promise<number> {
	await until(async () => (await backends(database, applicationName)).connected === 0);
	const [row] = await database.query<{ deadlocks: number }>('SELECT deadlocks::int AS deadlocks FROM pg_stat_database WHERE datname = current_database()');
	return row?.deadlocks ?? Number.NaN;
}

async function backends(database: TestDatabase, applicationName: string): Promise<{ connected: number; waitingForLock: number }> {
	const [row] = await database.query<{ connected: number; waitingForLock: number }>(
		`SELECT count(*)::int AS connected, (count(*) FILTER (WHERE wait_event_type = 'Lock'))::int AS "waitingForLock"
		FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, [applicationName]);
	return row ?? { connected: 0, waitingForLock: 0 };
}

async function until(condition: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (!(await condition())) {
		if (Date.now() > deadline) {
			throw new Error('condition not met in time');
		}
		await new Promise((resolve) => setTimeout(resolve, 10));
	}
}

test('coalesced saves of the same sessions from two instances, in opposite orders, never deadlock', async (t) => {
	const database = await createDatabase(t);
	// Other sessions, as in a table in use: PostgreSQL then finds the rows a save names by their
	// key, one after the other, rather than reading the whole table in an order of its own.
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		SELECT 'other-' || n, '{}', now(), now(), now() + interval '1 hour' FROM generate_series(1, 100000) AS n`);
	await database.query('ANALYZE http_sessions');
	// The store runs a statement that met a deadlock again, so every save would succeed even with
	// deadlocks: PostgreSQL's count of them is what tells. The stores' connections carry a name,
	// to know when they are gone and have reported their statistics.
	const applicationName = 'pgstore-deadlock-test';
	const url = new URL(database.url);
	url.searchParams.set('application_name', applicationName);
	const [store, other] = [0, 1].map(() => new PgStore({ connectionString: url.toString(), cleanupInterval: 0 })) as [PgStore, PgStore];
	t.teardown(() => Promise.all([store.close(), other.close()]));
	const keys = Array.from({ length: 40 }, (_, index) => `k${index}`);
	const middle = 'k20';
	await Promise.all(keys.map((key) => store.set(key, { n: 0 }, hour)));
	const [first, second] = [{}, {}];
	await Promise.all(keys.map((key) => store.get(key, hour, { ctx: first })));
	await Promise.all(keys.map((key) => other.get(key, hour, { ctx: second })));

	// A transaction of the test's own holds the middle session of each batch until both
	// instances' statements are under way and wait, each holding the rows it took first: the
	// moment two statements that take rows in opposite orders deadlock.
	const holder = new pg.Client({ connectionString: database.url });
	await holder.connect();
	t.teardown(() => holder.end());
	const saveBoth = async (hold: string, heldKey: string, saves: () => Promise<unknown>[]) => {
		await holder.query('BEGIN');
		await holder.query(hold, [digestKey(heldKey)]);
		const saving = Promise.allSettled(saves());
		await until(async () => (await backends(database, applicationName)).waitingForLock === 2);
		await holder.query('ROLLBACK');
		const results = await saving;
		return results.filter((result) => result.status === 'rejected').map((result) => String((result as PromiseRejectedResult).reason));
	};
	// Saves of loaded sessions skip a row another transaction holds (SKIP LOCKED) and try it again
	// later: both instances' other saves land while the middle row is held, none waits for a lock.
	await holder.query('BEGIN');
	await holder.query('SELECT 1 FROM http_sessions WHERE key = $1 FOR UPDATE', [digestKey(middle)]);
	const saves = [
		...keys.map((key) => ({ key, saving: store.set(key, { n: 1, by: 'first' }, hour, { ctx: first, changed: true }) })),
		...[...keys].reverse().map((key) => ({ key, saving: other.set(key, { n: 1, by: 'second' }, hour, { ctx: second, changed: true }) })),
	];
	await Promise.all(saves.filter((save) => save.key !== middle).map((save) => save.saving));
	t.is((await backends(database, applicationName)).waitingForLock, 0, 'no statement waited for the held row');
	await holder.query('ROLLBACK');
	await Promise.all(saves.map((save) => save.saving));
	t.deepEqual(await saveBoth(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) VALUES ($1, '{}', now(), now(), now())`, `new-${middle}`, () => [
		...keys.map((key) => store.set(`new-${key}`, { n: 1, by: 'first' }, hour)),
		...[...keys].reverse().map((key) => other.set(`new-${key}`, { n: 1, by: 'second' }, hour)),
	]), [], 'saves of new sessions');
	t.deepEqual(await database.query(`SELECT count(*)::int AS sessions, (count(*) FILTER (WHERE data->>'n' = '1'))::int AS saved
		FROM http_sessions WHERE key NOT LIKE 'other-%'`), [{ sessions: 80, saved: 80 }], 'every save landed');

	await Promise.all([store.close(), other.close()]);
	t.is(await deadlocksAfterExit(database, applicationName), 0);
});
