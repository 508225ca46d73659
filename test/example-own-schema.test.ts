import { readFile } from 'node:fs/promises';
import test, { type ExecutionContext } from 'ava';
import { digestKey } from '../src/codec/key-digest.js';
import { applyMigrationSqlIfMissing, createClient, createOwnSchemaApp } from '../examples/own-schema/app.js';
import { createDatabase } from './helpers/database.js';
import { serve, startExample } from './helpers/example.js';
import { CookieJar, request } from './helpers/http.js';

const secret = 'the own-schema example test secret: 32+ bytes';

// A database migrated by the app's own migration, as `prisma migrate deploy` would run its SQL.
async function appDatabase(t: ExecutionContext) {
	const database = await createDatabase(t, { migrate: false });
	await database.query(await readFile(new URL('../examples/own-schema/prisma/migrations/20261201000000_init/migration.sql', import.meta.url), 'utf8'));
	const prisma = createClient(database.url);
	t.teardown(() => prisma.$disconnect());
	return { database, prisma };
}

function form(fields: Record<string, string>): RequestInit {
	return { method: 'POST', body: new URLSearchParams(fields), redirect: 'manual' };
}

test('sessions go to the app\'s own user_sessions table through its $extends-ed client, with the user as subject', async (t) => {
	const { database, prisma } = await appDatabase(t);
	const { app, store } = createOwnSchemaApp(prisma, secret);
	t.teardown(() => store.close());
	const url = await serve(t, app);
	const jar = new CookieJar();

	t.is((await request(`${url}/sign-in`, jar, form({ email: 'Ada@example.com', name: 'Ada' }))).status, 303);
	const [user] = await database.query<{ id: number; email: string }>('SELECT id, email FROM "User"');
	t.is(user?.email, 'ada@example.com');
	const rows = await database.query<{ key: string; subject: string | null }>('SELECT key, subject FROM user_sessions');
	t.deepEqual(rows, [{ key: digestKey(jar.cookies.get('sid') ?? ''), subject: String(user?.id) }]);
	const [packageTable] = await database.query('SELECT to_regclass(\'http_sessions\') AS found');
	t.deepEqual(packageTable, { found: null }, 'nothing of the package\'s own table');

	// The page reads the user through the extension's computed field, and counts sessions with the
	// generated pGSession delegate.
	t.regex(String((await request(`${url}/`, jar)).body), /Hello, Ada<\/h1>[^]*You have 1 session in/);

	t.is((await request(`${url}/sign-out`, jar, form({}))).status, 303);
	t.deepEqual(await database.query('SELECT key FROM user_sessions'), []);
	t.regex(String((await request(`${url}/`, jar)).body), /<h1>Sign in<\/h1>/);
});

test('cleanup and sign-out-everywhere run through the extended client on the renamed table', async (t) => {
	const { database, prisma } = await appDatabase(t);
	const { app, store } = createOwnSchemaApp(prisma, secret);
	t.teardown(() => store.close());
	const url = await serve(t, app);
	const laptop = new CookieJar();
	const phone = new CookieJar();
	await request(`${url}/sign-in`, laptop, form({ email: 'ada@example.com' }));
	await request(`${url}/sign-in`, phone, form({ email: 'ada@example.com' }));
	await database.query(`INSERT INTO user_sessions (key, data, created_on, modified_on, expires_on)
		VALUES ('expired', '{}', now() - interval '2 days', now() - interval '2 days', now() - interval '1 day')`);

	t.like(await store.cleanup(), { deleted: 1, skipped: false });
	const [user] = await database.query<{ id: number }>('SELECT id FROM "User"');
	t.is(await store.destroyAll(String(user?.id)), 2);
	t.deepEqual(await database.query('SELECT key FROM user_sessions'), []);
	await store.close();
	t.is(await prisma.user.count(), 1, 'close() left the app\'s client connected');
});

test('the offline stand-in for `prisma migrate deploy` applies the app\'s migration once', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const prisma = createClient(database.url);
	t.teardown(() => prisma.$disconnect());
	t.true(await applyMigrationSqlIfMissing(prisma));
	t.false(await applyMigrationSqlIfMissing(prisma));
	const columns = await database.query<{ column_name: string; data_type: string }>(`SELECT column_name, data_type
		FROM information_schema.columns WHERE table_name = 'user_sessions' ORDER BY ordinal_position`);
	t.deepEqual(columns.map((column) => `${column.column_name} ${column.data_type}`), [
		'id bigint', 'key text', 'data jsonb', 'created_on timestamp with time zone', 'modified_on timestamp with time zone',
		'expires_on timestamp with time zone', 'subject text',
	]);
});

test('`npm run example:own-schema` sets up an empty database and serves the app, and stops on SIGTERM', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const example = await startExample(t, 'examples/own-schema/server.ts', { DATABASE_URL: database.url });
	t.regex(example.output(), /Applied prisma\/migrations\//);
	const jar = new CookieJar();
	t.is((await request(`${example.url}/sign-in`, jar, form({ email: 'grace@example.com', name: 'Grace' }))).status, 303);
	t.regex(String((await request(`${example.url}/`, jar)).body), /Hello, Grace/);
	t.is(await example.stop(), 0, example.output());
});
