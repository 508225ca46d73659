import { readFile } from 'node:fs/promises';
import { PrismaPg } from '@prisma/adapter-pg';
import test from 'ava';
import { SchemaMismatchError } from '../src/base/errors.js';
import { PgStore } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { prismaDriver } from '../src/driver/prisma-driver.js';
import { applyMigrations } from '../src/maintenance/migrations.js';
import { readSessionTable } from '../src/sql/session-table.js';
import { PrismaClient } from './fixtures/app-schema/generated/client.js';
import { createDatabase } from './helpers/database.js';
import { CookieJar, request, startApp } from './helpers/http.js';

// The app's own Prisma owns the table: PGSession copied into its schema as auth.user_sessions.
async function appDatabase(t: Parameters<typeof createDatabase>[0]) {
	const database = await createDatabase(t, { migrate: false });
	await database.query(await readFile(new URL('fixtures/app-schema/migration.sql', import.meta.url), 'utf8'));
	const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) });
	t.teardown(() => prisma.$disconnect());
	return { database, prisma };
}

test('the store follows the app\'s schema: renamed table in a schema other than public', async (t) => {
	const { database, prisma } = await appDatabase(t);
	const store = new PgStore({ prisma });
	const { url } = await startApp(t, {
		session: { store },
		handler: (ctx) => {
			if (ctx.session) {
				ctx.session['user'] = 'ada';
				ctx.body = ctx.session.toJSON();
			}
		},
	});
	const jar = new CookieJar();
	t.deepEqual((await request(url, jar)).body, { user: 'ada' });
	const rows = await database.query('SELECT key, data FROM auth.user_sessions');
	t.is(rows.length, 1);
	t.is(rows[0]?.['key'], digestKey(jar.cookies.get('koa.sess') ?? ''));
	const [publicTable] = await database.query(`SELECT to_regclass('public.http_sessions') AS found`);
	t.deepEqual(publicTable, { found: null });
	t.like((await request(url, jar)).body, { user: 'ada' });
});

test('close() leaves a client the store was given connected', async (t) => {
	const { prisma } = await appDatabase(t);
	const store = new PgStore({ prisma });
	await store.set('k', { n: 1 }, 60_000);
	await store.close();
	await prisma.user.create({ data: { email: 'ada@example.com' } });
	t.is(await prisma.pGSession.count(), 1);
});

test('an $extends-ed client of the app is accepted as `prisma`, and the store works through it', async (t) => {
	const { database, prisma } = await appDatabase(t);
	const extended = prisma.$extends({ model: { user: { byEmail: (email: string) => prisma.user.findUnique({ where: { email } }) } } });
	// Compiles as written: the extended client's type fits the option without a cast.
	const store = new PgStore({ prisma: extended, cleanupInterval: 0 });
	await store.set('k', { n: 1 }, 60_000);
	t.deepEqual(await store.get('k', 60_000, {}), { n: 1 });
	const rows = await database.query('SELECT key FROM auth.user_sessions');
	t.deepEqual(rows, [{ key: digestKey('k') }]);
});

test('ensureSchema on the app\'s complete table touches nothing: no migration history, no http_sessions', async (t) => {
	const { database, prisma } = await appDatabase(t);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	t.deepEqual(await store.ensureSchema(), []);
	t.deepEqual(await database.query(
		`SELECT table_schema, table_name FROM information_schema.tables WHERE table_name IN ('http_sessions', '_prisma_migrations')`,
	), []);
});

test('an app-owned table that is missing gets a SchemaMismatchError, and nothing is created or recorded', async (t) => {
	// The app's own migration was never applied: only its schema exists.
	const database = await createDatabase(t, { migrate: false });
	await database.query('CREATE SCHEMA auth');
	const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) });
	t.teardown(() => prisma.$disconnect());
	const error = await t.throwsAsync(applyMigrations(readSessionTable(prisma, undefined), prismaDriver(prisma), undefined), { instanceOf: SchemaMismatchError });
	t.is(error?.code, 'ERR_PGSTORE_SCHEMA');
	t.is(error?.table, '"auth"."user_sessions"');
	t.regex(error?.message ?? '', /"auth"\."user_sessions" does not exist/);
	t.regex(error?.message ?? '', /your app's migrations own that table/);
	t.regex(error?.message ?? '', /prisma migrate dev/);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	await t.throwsAsync(store.ensureSchema(), { message: /user_sessions/ });
	t.deepEqual(await database.query(
		`SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`,
	), [], 'no http_sessions, no _prisma_migrations, in any schema');
});

test('an incomplete app-owned table is reported item by item: a json data column, no unique index on key', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	await database.query(`CREATE SCHEMA auth;
		CREATE TABLE auth.user_sessions (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, data JSON NOT NULL,
			created_on TIMESTAMPTZ(3) NOT NULL, modified_on TIMESTAMPTZ(3) NOT NULL, expires_on TIMESTAMPTZ(3) NOT NULL);
		CREATE INDEX user_sessions_key_idx ON auth.user_sessions (key)`);
	const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) });
	t.teardown(() => prisma.$disconnect());
	const error = await t.throwsAsync(applyMigrations(readSessionTable(prisma, undefined), prismaDriver(prisma), undefined), { instanceOf: SchemaMismatchError });
	t.deepEqual(error?.missing, ['column "data" of type jsonb (it is json)', 'a unique index on "key"']);
	await database.query('ALTER TABLE auth.user_sessions ALTER COLUMN data TYPE jsonb; CREATE UNIQUE INDEX ON auth.user_sessions (key)');
	t.deepEqual(await applyMigrations(readSessionTable(prisma, undefined), prismaDriver(prisma), undefined), []);
});
