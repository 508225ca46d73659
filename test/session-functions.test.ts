import { PrismaPg } from '@prisma/adapter-pg';
import { Prisma } from '@prisma/client/extension';
import test, { type ExecutionContext } from 'ava';
import { PrismaClient } from '../src/generated/prisma/client.js';
import { readFile } from 'node:fs/promises';
import { PgStore, sessionFunctionsMigration } from '../src/index.js';
import { PrismaClient as AppClient } from './fixtures/app-schema/generated/client.js';
import { functionsMigration, sessionFunctions } from '../src/sql/session-functions.js';
import { packageTable } from '../src/sql/session-table.js';
import { createDatabase, type TestDatabase } from './helpers/database.js';
import { needsPgBouncer, startPgBouncer } from './helpers/pgbouncer.js';

const hour = 3_600_000;
const sessionOf = (fields: Record<string, unknown>) => ({ ...fields, _expire: Date.now() + hour, _maxAge: hour });

/** A query extension, for any client, that adds the SQL of each raw statement sent through it to `sent`. */
function recordingRawSql(sent: string[]) {
	return Prisma.defineExtension({
		query: {
			async $allOperations({ operation, args, query }) {
				if (operation === '$queryRawUnsafe' && Array.isArray(args)) {
					sent.push(String(args[0]));
				}
				return query(args);
			},
		},
	});
}

/**
 * An app's Prisma client, `$extends`-ed with a query extension that records the SQL of every raw
 * statement the store sends through it (the way an app's logging or tracing would see it).
 */
function recordingClient(t: ExecutionContext, url: string, schema?: string): { prisma: PrismaClient; sent: string[] } {
	const base = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }, schema === undefined ? undefined : { schema }) });
	t.teardown(() => base.$disconnect());
	const sent: string[] = [];
	const prisma = base.$extends(recordingRawSql(sent));
	return { prisma: prisma as unknown as PrismaClient, sent };
}

const isCall = (sql: string) => /^SELECT \* FROM public\."koa_pgstore_[a-z_]+_[0-9a-f]{12}"\(/.test(sql);
// The kinds of the functions called, in alphabetical order.
const calledKinds = (sent: readonly string[]) => [...new Set(sent.flatMap((sql) => /koa_pgstore_([a-z_]+)_[0-9a-f]{12}/.exec(sql)?.[1] ?? []))].sort();
const everyKind = ['delete', 'insert', 'select_live', 'update_live', 'upsert'];

// A request's whole life: a new session, a read, a save of a change, a save without `ctx` (an
// upsert), a logout.
async function lifeOfASession(t: ExecutionContext, store: PgStore, key: string): Promise<void> {
	await store.set(key, sessionOf({ user: 'ada' }), hour, { changed: true, ctx: {} });
	const ctx = {};
	const loaded = await store.get(key, hour, { ctx });
	t.like(loaded, { user: 'ada' });
	await store.set(key, sessionOf({ ...loaded, views: 1 }), hour, { changed: true, ctx });
	t.like(await store.get(key, hour, {}), { user: 'ada', views: 1 });
	await store.set(key, sessionOf({ user: 'grace' }), hour, { changed: true });
	t.like(await store.get(key, hour, {}), { user: 'grace' });
	await store.destroy(key, { ctx: {} });
	t.is(await store.get(key, hour, {}), undefined);
}

async function dropSessionFunctions(database: TestDatabase, only = 'koa_pgstore_%'): Promise<void> {
	await database.query(`DO $$ DECLARE f regprocedure; BEGIN
		FOR f IN SELECT oid FROM pg_proc WHERE proname LIKE '${only}' LOOP EXECUTE format('DROP FUNCTION %s', f); END LOOP; END $$`);
}

test('through an app\'s $extends-ed client, every statement of a session\'s life is a call of a session function, which the app\'s extension sees', async (t) => {
	const database = await createDatabase(t);
	const { prisma, sent } = recordingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	t.teardown(() => store.close());
	await lifeOfASession(t, store, 'k');
	await lifeOfASession(t, store, 'k2');
	const [lookup, ...statements] = sent;
	t.regex(lookup ?? '', /pg_catalog\.to_regprocedure/, 'the catalog is read first');
	t.is(sent.filter((sql) => sql.includes('pg_catalog.to_regprocedure')).length, 1, 'and once');
	t.deepEqual(statements.filter((sql) => !isCall(sql)), []);
	t.deepEqual(calledKinds(statements), everyKind);
	t.deepEqual((await store.status()).missingFunctions, []);
});

test('without the functions (a table an app\'s own migrations made) the store sends its plain statements, status() names them, and ensureSchema() of its own table brings them', async (t) => {
	const database = await createDatabase(t);
	await dropSessionFunctions(database);
	const { prisma, sent } = recordingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	t.teardown(() => store.close());
	await lifeOfASession(t, store, 'k');
	t.deepEqual(calledKinds(sent), [], 'no function was called');
	t.true(sent.some((sql) => sql.startsWith('WITH v AS (SELECT r.key, r.new_key')), 'the plain field-level update ran');
	const expected = sessionFunctions(packageTable, false).map((created) => created.name);
	t.deepEqual((await store.status()).missingFunctions, expected);

	t.true((await store.ensureSchema()).some((name) => name.endsWith('_session_functions')));
	t.deepEqual((await store.status()).missingFunctions, []);
	sent.length = 0;
	await lifeOfASession(t, store, 'k2');
	t.deepEqual(calledKinds(sent), everyKind, 'the store called them after ensureSchema()');
});

test('a function dropped while the store runs fails no request: its statement runs plain from then on', async (t) => {
	const database = await createDatabase(t);
	const { prisma, sent } = recordingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	t.teardown(() => store.close());
	await lifeOfASession(t, store, 'k');
	await dropSessionFunctions(database, 'koa_pgstore_update_live_%');
	sent.length = 0;
	await lifeOfASession(t, store, 'k2');
	t.deepEqual(calledKinds(sent), everyKind, 'the dropped one was tried once');
	sent.length = 0;
	await lifeOfASession(t, store, 'k3');
	t.deepEqual(calledKinds(sent), ['delete', 'insert', 'select_live', 'upsert'], 'and not again');
});

test('a function of the same name and arguments that another role made first is never called: the store sends its plain statement', async (t) => {
	const database = await createDatabase(t);
	const intruder = `intruder_${database.name.slice(-12)}`;
	await database.query(`CREATE ROLE ${intruder}`);
	t.teardown(async () => {
		await database.query(`DROP OWNED BY ${intruder} CASCADE; DROP ROLE ${intruder}`).catch(() => {});
	});
	// The names are no secret: a role that may create objects in the schema makes the read's first.
	const [read] = sessionFunctions(packageTable, false).filter((created) => created.kind === 'selectLive');
	await dropSessionFunctions(database, 'koa_pgstore_select_live_%');
	await database.query(`GRANT CREATE ON SCHEMA public TO ${intruder}; CREATE TABLE public.stolen (who text); GRANT INSERT ON public.stolen TO PUBLIC`);
	await database.query(`SET ROLE ${intruder}; CREATE FUNCTION public."${read?.name ?? ''}"(pg_catalog.text[], pg_catalog.float8)
		RETURNS TABLE ("key" text, "id" text, "json" text, "expiresOn" float8) LANGUAGE plpgsql
		AS $$ BEGIN INSERT INTO public.stolen VALUES (current_user); END $$; RESET ROLE`);
	const { prisma, sent } = recordingClient(t, database.url);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	t.teardown(() => store.close());
	await lifeOfASession(t, store, 'k');
	t.deepEqual(calledKinds(sent), ['delete', 'insert', 'update_live', 'upsert']);
	t.deepEqual(await database.query('SELECT who FROM public.stolen'), []);
	t.deepEqual((await store.status()).missingFunctions, [read?.name]);
});

test('two releases side by side: a newer release\'s migration leaves the older one\'s functions, and each store calls only its own', async (t) => {
	const database = await createDatabase(t);
	// An older release's field-level update: the same kind of function under another digest.
	const [older] = sessionFunctions(packageTable, false).filter((created) => created.kind === 'updateLive');
	const olderName = 'koa_pgstore_update_live_000000000000';
	await database.query((older?.definition() ?? '').replace(older?.name ?? '', olderName));
	await database.query(functionsMigration(packageTable));
	t.deepEqual(await database.query(`SELECT count(*)::int AS n FROM pg_proc WHERE proname = '${olderName}'`), [{ n: 1 }], 'the older function stays');
	const [pinned] = await database.query<{ config: string[] }>(`SELECT proconfig AS config FROM pg_proc WHERE proname = '${older?.name ?? ''}'`);
	t.deepEqual(pinned?.config, ['plan_cache_mode=force_generic_plan', 'search_path=pg_catalog, public, pg_temp']);

	// Stores with and without the `subject` option run different statements, so different
	// functions, on one table at once, as two releases' instances do.
	const plain = recordingClient(t, database.url);
	const withSubject = recordingClient(t, database.url);
	const stores = [
		new PgStore({ prisma: plain.prisma, cleanupInterval: 0 }),
		new PgStore({ prisma: withSubject.prisma, cleanupInterval: 0, subject: (session) => (typeof session['user'] === 'string' ? session['user'] : null) }),
	];
	t.teardown(() => Promise.all(stores.map((store) => store.close())));
	await Promise.all(stores.map((store, index) => lifeOfASession(t, store, `k${index}`)));
	const names = (sent: readonly string[]) => [...new Set(sent.flatMap((sql) => /koa_pgstore_[a-z_]+_[0-9a-f]{12}/.exec(sql)?.[0] ?? []))].sort();
	t.deepEqual(names(plain.sent), sessionFunctions(packageTable, false).map((created) => created.name).sort());
	t.deepEqual(names(withSubject.sent), sessionFunctions(packageTable, true).map((created) => created.name).sort());
	t.false(names(plain.sent).includes(olderName));
});

test('a store with the `schema` option calls the functions of its schema', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const owner = new PgStore({ connectionString: database.url, schema: 'web sessions', cleanupInterval: 0 });
	t.teardown(() => owner.close());
	await owner.ensureSchema();
	const { prisma, sent } = recordingClient(t, database.url, 'web sessions');
	const store = new PgStore({ prisma, schema: 'web sessions', cleanupInterval: 0 });
	t.teardown(() => store.close());
	await lifeOfASession(t, store, 'k');
	t.true(sent.slice(1).every((sql) => sql.startsWith('SELECT * FROM "web sessions"."koa_pgstore_')), sent.join('\n'));
	t.deepEqual(await database.query('SELECT count(*)::int AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = \'public\' AND proname LIKE \'koa_pgstore_%\''), [{ n: 0 }]);
});

test('a table an app\'s migrations own (@@map, @@schema) gets its functions from sessionFunctionsMigration(), in its schema, and the store calls them', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	await database.query(await readFile(new URL('fixtures/app-schema/migration.sql', import.meta.url), 'utf8'));
	const base = new AppClient({ adapter: new PrismaPg({ connectionString: database.url }) });
	t.teardown(() => base.$disconnect());
	const sent: string[] = [];
	const prisma = base.$extends(recordingRawSql(sent));
	const migration = sessionFunctionsMigration(prisma);
	t.notRegex(migration, /subject/, 'the model has no subject field: no functions for it');
	await database.query(migration);
	await database.query(migration); // idempotent
	const configs = await database.query<{ config: string[] }>(`SELECT DISTINCT proconfig AS config FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'auth' AND proname LIKE 'koa_pgstore_%'`);
	t.deepEqual(configs, [{ config: ['plan_cache_mode=force_generic_plan', 'search_path=pg_catalog, auth, pg_temp'] }]);
	const store = new PgStore({ prisma, cleanupInterval: 0 });
	t.teardown(() => store.close());
	await lifeOfASession(t, store, 'k');
	t.deepEqual(sent.slice(1).filter((sql) => !sql.startsWith('SELECT * FROM auth."koa_pgstore_')), []);
	t.deepEqual((await store.status()).missingFunctions, []);
});

test('the store\'s own client with preparedStatements: false calls the session functions; prepared, it sends its statements', async (t) => {
	// Function calls are counted for the database's connections (flushed when they close).
	const calls = async (preparedStatements: boolean) => {
		const database = await createDatabase(t);
		await database.query(`ALTER DATABASE ${database.name} SET track_functions = 'pl'`);
		const store = new PgStore({ connectionString: database.url, cleanupInterval: 0, preparedStatements });
		await lifeOfASession(t, store, 'k');
		await store.close();
		for (let tries = 0; ; tries++) {
			const rows = await database.query<{ name: string }>(`SELECT funcname AS name FROM pg_stat_user_functions WHERE funcname LIKE 'koa_pgstore_%' ORDER BY funcname`);
			if (rows.length > 0 || tries === 20) {
				return rows.map((row) => /koa_pgstore_([a-z_]+)_/.exec(row.name)?.[1]).sort();
			}
			await new Promise((resolve) => setTimeout(resolve, 100));
		}
	};
	t.deepEqual(await calls(false), everyKind);
	t.deepEqual(await calls(true), []);
});

const bouncerTest = needsPgBouncer(test);

bouncerTest('behind PgBouncer in transaction mode, two app clients sharing two server connections call the session functions without an error', async (t) => {
	const database = await createDatabase(t);
	const bouncer = await startPgBouncer(t, database.url, { poolSize: 2 });
	const clients = [recordingClient(t, bouncer.url), recordingClient(t, bouncer.url)];
	const stores = clients.map(({ prisma }) => new PgStore({ prisma, cleanupInterval: 0 }));
	t.teardown(() => Promise.all(stores.map((store) => store.close())));
	await Promise.all(stores.flatMap((store, index) => Array.from({ length: 20 }, (_, session) => lifeOfASession(t, store, `k${index}-${session}`))));
	for (const { sent } of clients) {
		t.deepEqual(calledKinds(sent), everyKind);
	}
	t.deepEqual(await database.query('SELECT count(*)::int AS n FROM http_sessions'), [{ n: 0 }]);
});
