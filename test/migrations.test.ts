import { createHash } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { SchemaMismatchError } from '../src/base/errors.js';
import { PgStore } from '../src/index.js';
import { ownedDriver } from '../src/driver/owned-driver.js';
import { applyMigrations } from '../src/maintenance/migrations.js';
import { readSessionTable } from '../src/sql/session-table.js';
import { createOwnedClient } from '../src/driver/prisma-client.js';
import { createDatabase, migrationFiles, type TestDatabase } from './helpers/database.js';

// What prisma/schema.prisma says, as PostgreSQL reports it.
const expectedColumns = [
	{ column_name: 'id', data_type: 'bigint', is_nullable: 'NO', datetime_precision: null },
	{ column_name: 'key', data_type: 'text', is_nullable: 'NO', datetime_precision: null },
	{ column_name: 'data', data_type: 'jsonb', is_nullable: 'NO', datetime_precision: null },
	{ column_name: 'created_on', data_type: 'timestamp with time zone', is_nullable: 'NO', datetime_precision: 3 },
	{ column_name: 'modified_on', data_type: 'timestamp with time zone', is_nullable: 'NO', datetime_precision: 3 },
	{ column_name: 'expires_on', data_type: 'timestamp with time zone', is_nullable: 'NO', datetime_precision: 3 },
	{ column_name: 'subject', data_type: 'text', is_nullable: 'YES', datetime_precision: null },
];

async function describeTable(database: TestDatabase) {
	const columns = await database.query(
		`SELECT column_name, data_type, is_nullable, datetime_precision FROM information_schema.columns
		 WHERE table_schema = 'public' AND table_name = 'http_sessions' ORDER BY ordinal_position`,
	);
	const indexes = await database.query(
		`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'http_sessions' ORDER BY indexname`,
	);
	const [identity] = await database.query(`SELECT pg_get_serial_sequence('http_sessions', 'id') IS NOT NULL AS autoincrement`);
	return { columns, indexes, identity };
}

const expectedIndexes = [
	{ indexname: 'http_sessions_expires_on_idx', indexdef: 'CREATE INDEX http_sessions_expires_on_idx ON public.http_sessions USING btree (expires_on)' },
	{ indexname: 'http_sessions_key_key', indexdef: 'CREATE UNIQUE INDEX http_sessions_key_key ON public.http_sessions USING btree (key)' },
	{ indexname: 'http_sessions_pkey', indexdef: 'CREATE UNIQUE INDEX http_sessions_pkey ON public.http_sessions USING btree (id)' },
	{ indexname: 'http_sessions_subject_idx', indexdef: 'CREATE INDEX http_sessions_subject_idx ON public.http_sessions USING btree (subject)' },
];

test('the shipped migration creates the table the Prisma schema describes', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const migrations = await migrationFiles();
	t.true(migrations.length > 0);
	for (const migration of migrations) {
		await database.query(migration.sql);
	}
	const { columns, indexes, identity } = await describeTable(database);
	t.deepEqual(columns, expectedColumns);
	t.deepEqual(indexes, expectedIndexes);
	t.deepEqual(identity, { autoincrement: true });
});

test('the migration SQL is idempotent, as ensureSchema and migrate deploy may both run', async (t) => {
	const database = await createDatabase(t);
	for (const migration of await migrationFiles()) {
		await t.notThrowsAsync(database.query(migration.sql));
	}
	t.deepEqual((await describeTable(database)).columns, expectedColumns);
});

test('ensureSchema creates the table and records the migration exactly as Prisma does', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const store = new PgStore({ connectionString: database.url });
	t.teardown(() => store.close());
	const migrations = await migrationFiles();

	t.deepEqual(await store.ensureSchema(), migrations.map((migration) => migration.name));
	const { columns, indexes } = await describeTable(database);
	t.deepEqual(columns, expectedColumns);
	t.deepEqual(indexes, expectedIndexes);
	const recorded = await database.query(
		`SELECT migration_name, checksum, finished_at IS NOT NULL AS finished, rolled_back_at, applied_steps_count, logs
		 FROM _prisma_migrations ORDER BY migration_name`,
	);
	t.deepEqual(recorded, migrations.map((migration) => ({
		migration_name: migration.name,
		checksum: createHash('sha256').update(migration.sql).digest('hex'),
		finished: true,
		rolled_back_at: null,
		applied_steps_count: 1,
		logs: null,
	})));
	const [idShape] = await database.query(`SELECT bool_and(id ~ '^[0-9a-f-]{36}$') AS uuid FROM _prisma_migrations`);
	t.deepEqual(idShape, { uuid: true });

	t.deepEqual(await store.ensureSchema(), [], 'a second call applies nothing');
	await store.set('k', { n: 1 }, 60_000);
	t.deepEqual(await store.get('k', 60_000, {}), { n: 1 });
});

test('after `prisma migrate deploy` ensureSchema applies nothing, and the reverse', async (t) => {
	// What migrate deploy leaves behind: the SQL applied and a finished row per migration.
	const deployed = await createDatabase(t, { migrate: false });
	const first = new PgStore({ connectionString: deployed.url });
	t.teardown(() => first.close());
	await first.ensureSchema();
	const recordedBefore = await deployed.query('SELECT id, finished_at FROM _prisma_migrations ORDER BY id');
	const second = new PgStore({ connectionString: deployed.url });
	t.teardown(() => second.close());
	t.deepEqual(await second.ensureSchema(), []);
	t.deepEqual(await deployed.query('SELECT id, finished_at FROM _prisma_migrations ORDER BY id'), recordedBefore);

	// A database whose table was made by hand from migration.sql, never recorded: the catalog
	// shows everything is there, so nothing is applied and no migration history is started.
	const byHand = await createDatabase(t);
	await byHand.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		VALUES ('digest', '{"kept":true}', now(), now(), now() + interval '1 hour')`);
	const store = new PgStore({ connectionString: byHand.url });
	t.teardown(() => store.close());
	t.deepEqual(await store.ensureSchema(), []);
	t.deepEqual(await byHand.query(`SELECT to_regclass('_prisma_migrations') AS found`), [{ found: null }]);
	t.deepEqual(await byHand.query('SELECT data FROM http_sessions'), [{ data: { kept: true } }], 'existing sessions survive');

	// One made by hand from the first migration only gets the rest, and both are recorded.
	const older = await createDatabase(t, { migrate: false });
	const [init] = await migrationFiles();
	await older.query(init?.sql ?? '');
	const upgrading = new PgStore({ connectionString: older.url });
	t.teardown(() => upgrading.close());
	t.is((await upgrading.ensureSchema()).length, (await migrationFiles()).length);
	t.deepEqual((await describeTable(older)).columns, expectedColumns);
});

test('instances starting together apply each migration once', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const stores = Array.from({ length: 8 }, () => new PgStore({ connectionString: database.url, pool: { max: 2 } }));
	t.teardown(() => Promise.all(stores.map((store) => store.close())));
	const applied = await Promise.all(stores.map((store) => store.ensureSchema()));
	t.is(applied.flat().length, (await migrationFiles()).length);
	const [count] = await database.query('SELECT count(*)::int AS n FROM _prisma_migrations');
	t.deepEqual(count, { n: (await migrationFiles()).length });
});

/** A login role of the test's own that may only read and write the session table. */
async function tableUserUrl(t: ExecutionContext, database: TestDatabase): Promise<string> {
	const role = `app_${database.name.slice(-8)}`;
	await database.query(`CREATE ROLE ${role} LOGIN PASSWORD 'app'`);
	// Roles belong to the whole server: drop it again (teardowns run last-registered first, after the stores close).
	t.teardown(async () => {
		await database.query(`DROP OWNED BY ${role}`);
		await database.query(`DROP ROLE ${role}`);
	});
	await database.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
	await database.query(`REVOKE CREATE ON DATABASE ${database.name} FROM PUBLIC`);
	await database.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON http_sessions TO ${role}`);
	await database.query(`GRANT USAGE ON SEQUENCE http_sessions_id_seq TO ${role}`);
	const url = new URL(database.url);
	url.username = role;
	url.password = 'app';
	return url.toString();
}

test('ensureSchema succeeds for a role that may only use the table, without reading _prisma_migrations', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const owner = new PgStore({ connectionString: database.url });
	t.teardown(() => owner.close());
	await owner.ensureSchema();
	const url = await tableUserUrl(t, database);
	await database.query('REVOKE ALL ON _prisma_migrations FROM PUBLIC');
	const app = new PgStore({ connectionString: url, subject: (session) => session['userId'] as string });
	t.teardown(() => app.close());
	t.deepEqual(await app.ensureSchema(), []);
	await app.set('k', { n: 1, userId: 'ada' }, 60_000);
	t.deepEqual(await app.get('k', 60_000, {}), { n: 1, userId: 'ada' });
	// The role really may not read the history: what ensureSchema() used to fail on.
	const [denied] = await database.query(`SELECT has_table_privilege($1, '_prisma_migrations', 'SELECT') AS allowed`, [new URL(url).username]);
	t.deepEqual(denied, { allowed: false });
});

test('a role that may not migrate gets a SchemaMismatchError naming the missing column, its migration and the command', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	// What the previous release left: the first migration only, no `subject` column.
	const [init] = await migrationFiles();
	await database.query(init?.sql ?? '');
	const url = await tableUserUrl(t, database);
	const { client, pool, close } = createOwnedClient(url, {}, undefined, () => {});
	t.teardown(close);
	const error = await t.throwsAsync(applyMigrations(readSessionTable(client, undefined), ownedDriver(pool, false), undefined, { subject: true }), { instanceOf: SchemaMismatchError });
	t.is(error?.code, 'ERR_PGSTORE_SCHEMA');
	t.is(error?.table, '"http_sessions"');
	t.deepEqual(error?.missing, ['column "subject"', 'its session functions (9 of 9 missing)']);
	t.regex(error?.message ?? '', /lacks column "subject", its session functions \(9 of 9 missing\) \(this package's migrations `20261122010000_session_subject` and `20261206000000_session_functions`\)/);
	t.regex(error?.message ?? '', /prisma migrate deploy --config node_modules\/koa-pgstore\/prisma\.config\.ts/);
	t.regex(error?.message ?? '', /ensureSchema\(\)/);
	// Through the store: it rejects at ensureSchema(), before any request.
	const store = new PgStore({ connectionString: url, cleanupInterval: 0, subject: (session) => session['userId'] as string });
	t.teardown(() => store.close());
	await t.throwsAsync(store.ensureSchema(), { message: /subject/ });
	t.deepEqual(await database.query(`SELECT to_regclass('_prisma_migrations') AS found`), [{ found: null }]);
});

test('ensureSchema waits for another migrator longer than the statement bounds of requests and sweeps', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	// Statements of requests may take 400 ms here, those of sweeps ten times that.
	const store = new PgStore({ connectionString: database.url, cleanupInterval: 0, pool: { query_timeout: 400 } });
	t.teardown(() => store.close());
	const { default: pg } = await import('pg');
	const migrator = new pg.Client({ connectionString: database.url });
	await migrator.connect();
	t.teardown(() => migrator.end());
	// `prisma migrate`'s advisory lock, as a deploy running elsewhere holds it.
	await migrator.query('SELECT pg_advisory_lock(72707369)');
	const applying = store.ensureSchema();
	await new Promise((resolve) => setTimeout(resolve, 5_000));
	await migrator.query('SELECT pg_advisory_unlock(72707369)');
	t.deepEqual(await applying, (await migrationFiles()).map((migration) => migration.name));
});
