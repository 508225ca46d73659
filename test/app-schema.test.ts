import { readFile } from 'node:fs/promises';
import { PrismaPg } from '@prisma/adapter-pg';
import test from 'ava';
import { PgStore } from '../src/index.js';
import { digestKey } from '../src/key-digest.js';
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
