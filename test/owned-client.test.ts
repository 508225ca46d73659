import test from 'ava';
import { PgStore } from '../src/index.js';
import { runScript } from './helpers/child-process.js';
import { createDatabase } from './helpers/database.js';

test('the schema option puts the table and its migration record in that PostgreSQL schema', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const store = new PgStore({ connectionString: database.url, schema: 'web sessions' });
	t.teardown(() => store.close());
	t.deepEqual(await store.ensureSchema(), ['20261122000000_init', '20261122010000_session_subject', '20261206000000_session_functions']);
	await store.set('k', { n: 1 }, 60_000);
	t.deepEqual(await store.get('k', 60_000, {}), { n: 1 });
	const tables = await database.query(
		`SELECT table_schema, table_name FROM information_schema.tables
		 WHERE table_name IN ('http_sessions', '_prisma_migrations') ORDER BY table_name`,
	);
	t.deepEqual(tables, [
		{ table_schema: 'web sessions', table_name: '_prisma_migrations' },
		{ table_schema: 'web sessions', table_name: 'http_sessions' },
	]);
	t.deepEqual(await database.query('SELECT count(*)::int AS n FROM "web sessions".http_sessions'), [{ n: 1 }]);
});

test('a ?schema= parameter in the connection string chooses the schema, as in Prisma', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const url = new URL(database.url);
	url.searchParams.set('schema', 'auth');
	const store = new PgStore({ connectionString: url.toString() });
	t.teardown(() => store.close());
	await store.ensureSchema();
	await store.set('k', { n: 1 }, 60_000);
	t.deepEqual(await database.query('SELECT count(*)::int AS n FROM auth.http_sessions'), [{ n: 1 }]);
});

test('an idle store that owns its client does not keep the process alive', async (t) => {
	const database = await createDatabase(t);
	// The child uses the store, then has nothing left to do: it must exit without close().
	const script = `
		import { PgStore } from 'koa-pgstore';
		const store = new PgStore({ connectionString: process.env.URL, pool: { idleTimeoutMillis: 60_000 } });
		await store.set('k', { n: 1 }, 60_000);
		console.log(JSON.stringify(await store.get('k', 60_000, {})));
	`;
	const { code, output } = await runScript(script, { URL: database.url });
	t.is(code, 0, 'the process exited on its own');
	t.is(output, '{"n":1}');
});
