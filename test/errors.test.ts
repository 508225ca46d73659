import { inspect } from 'node:util';
import { PrismaPg } from '@prisma/adapter-pg';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { DatabaseError, PgStore } from '../src/index.js';
import { digestKey } from '../src/codec/key-digest.js';
import { PrismaClient } from '../src/generated/prisma/client.js';
import type { TestDatabase } from './helpers/database.js';
import { createStore } from './helpers/store.js';

const hour = 3_600_000;
// Session data and a key whose digest must not reach any log.
const session = { uid: 'alice-the-user', csrf: 'csrf-token-4f1d9a' };
const key = 'session-key-of-alice';
const secrets = [session.uid, session.csrf, digestKey(key)];

/** Every string reachable from `value` through own properties, enumerable or not: what a logger that walks an error may print. */
function reachableStrings(value: unknown, seen = new Set<object>()): string[] {
	if (typeof value === 'string') {
		return [value];
	}
	if (typeof value !== 'object' || value === null || seen.has(value)) {
		return [];
	}
	seen.add(value);
	return Reflect.ownKeys(value).flatMap((name) => reachableStrings(Reflect.get(value, name), seen));
}

function assertNoSessionData(t: ExecutionContext, error: unknown, what: string) {
	const printed = [inspect(error, { depth: Infinity }), inspect(error, { depth: Infinity, showHidden: true }), ...reachableStrings(error)];
	for (const secret of secrets) {
		t.false(printed.some((text) => text.includes(secret)), `${what}: ${secret} is not in it`);
	}
}

function leaks(error: unknown): boolean {
	return reachableStrings(error).some((text) => secrets.some((secret) => text.includes(secret)));
}

// A Prisma client on the test's database, as an app would pass it (`prisma`), to see Prisma's
// error as PostgreSQL and the adapter left it.
function rawClient(t: ExecutionContext, database: TestDatabase): PrismaClient {
	const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) });
	t.teardown(() => prisma.$disconnect());
	return prisma;
}

// The store's statements reach PostgreSQL through node-postgres with its own client
// (`connectionString`), through Prisma with an app's (`prisma`): the errors differ, the rules not.
const clients = ['connectionString', 'prisma'] as const;
type Via = typeof clients[number];

async function storeVia(t: ExecutionContext, via: Via): Promise<{ store: PgStore; database: TestDatabase }> {
	const { store, database } = await createStore(t);
	if (via === 'connectionString') {
		return { store, database };
	}
	const appStore = new PgStore({ prisma: rawClient(t, database), cleanupInterval: 0 });
	t.teardown(() => appStore.close());
	return { store: appStore, database };
}

// The driver's own error for `sql`, unsanitized, as the store's statement would meet it.
async function originalError(t: ExecutionContext, via: Via, database: TestDatabase, sql: string, values: unknown[]): Promise<unknown> {
	if (via === 'prisma') {
		return t.throwsAsync(rawClient(t, database).$executeRawUnsafe(sql, ...values));
	}
	const client = new pg.Client({ connectionString: database.url });
	await client.connect();
	t.teardown(() => client.end());
	return t.throwsAsync(client.query(sql, values));
}

const insertSession = `INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) VALUES ($1, $2::jsonb, now(), now(), now() + interval '1 hour')`;

for (const via of clients) {
	// What each driver names its error, and the codes the store copies from it.
	const expected = via === 'prisma'
		? { name: 'PrismaClientKnownRequestError', code: 'P2010', prismaCode: 'P2010', driverErrorKind: 'postgres' }
		: { name: 'DatabaseError', code: '23514', prismaCode: undefined, driverErrorKind: undefined };

	test(`with ${via}: a check violation keeps its SQLSTATE and PostgreSQL's message naming the constraint, not the failing row it quoted`, async (t) => {
		const { store, database } = await storeVia(t, via);
		await database.query(`ALTER TABLE http_sessions ADD CONSTRAINT uid_allowed CHECK (data->>'uid' <> '${session.uid}')`);
		// What the driver hands over: PostgreSQL's `Failing row contains (…, {"uid": …})`.
		const original = await originalError(t, via, database, insertSession, [digestKey(key), JSON.stringify(session)]);
		t.true(leaks(original), 'the unsanitized error does carry the row');

		const error = await t.throwsAsync(store.set(key, session, hour), { instanceOf: DatabaseError });
		t.is(error?.sqlState, '23514');
		t.like(error?.cause, {
			name: expected.name,
			message: 'new row for relation "http_sessions" violates check constraint "uid_allowed"',
			code: expected.code,
			sqlState: '23514',
		});
		t.true(error?.cause instanceof Error, 'loggers print it as an error');
		const printed = inspect(error, { depth: Infinity });
		t.true(printed.includes('SQLSTATE 23514'));
		t.true(printed.includes('violates check constraint "uid_allowed"'));
		assertNoSessionData(t, error, 'the DatabaseError');
		t.is(JSON.stringify(error), JSON.stringify({
			name: 'DatabaseError', code: 'ERR_PGSTORE_DATABASE', operation: 'set', sqlState: '23514', prismaCode: expected.prismaCode, driverErrorKind: expected.driverErrorKind,
		}));
	});

	test(`with ${via}: a unique violation keeps the index and the table, not the duplicated value`, async (t) => {
		const { store, database } = await storeVia(t, via);
		await database.query(`CREATE UNIQUE INDEX uid_unique ON http_sessions ((data->>'uid'))`);
		await store.set('another-key', session, hour);
		const error = await t.throwsAsync(store.set(key, session, hour), { instanceOf: DatabaseError });
		t.is(error?.sqlState, '23505');
		t.is(error?.driverErrorKind, via === 'prisma' ? 'UniqueConstraintViolation' : undefined);
		t.like(error?.cause, {
			message: 'duplicate key value violates unique constraint "uid_unique"',
			sqlState: '23505',
			constraint: 'uid_unique',
			table: 'http_sessions',
		});
		assertNoSessionData(t, error, 'the DatabaseError');
	});

	test(`with ${via}: the detail and hint a trigger fills with row data stay out of the error`, async (t) => {
		const { store, database } = await storeVia(t, via);
		await database.query(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'refused by policy' USING DETAIL = NEW.data::text, HINT = NEW.key; END $$`);
		await database.query('CREATE TRIGGER refuse BEFORE INSERT ON http_sessions FOR EACH ROW EXECUTE FUNCTION refuse()');
		const original = await originalError(t, via, database, insertSession, [digestKey(key), JSON.stringify(session)]);
		t.true(leaks(original), 'the unsanitized error does carry detail and hint');

		const error = await t.throwsAsync(store.set(key, session, hour), { instanceOf: DatabaseError });
		t.is(error?.sqlState, 'P0001');
		t.is(error?.cause.message, 'refused by policy');
		assertNoSessionData(t, error, 'the DatabaseError');
		const { name, message, code, sqlState, constraint, table, column } = new DatabaseError('set', original).cause;
		t.like(error?.cause, { name, message, code, sqlState, constraint, table, column }, 'what the store reports for the driver\'s error');
	});
}

test('a socket error\'s code is never taken for a SQLSTATE, even with five letters', (t) => {
	const socketError = Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' });
	const error = new DatabaseError('set', socketError);
	t.is(error.sqlState, undefined);
	t.is(error.cause.code, 'EPIPE');
	t.false(error.message.includes('SQLSTATE'), error.message);
});

test('an invalid JSON error from node-postgres loses its `where` (JSON data, line 1: …) and its detail', async (t) => {
	const { database } = await createStore(t);
	const client = new pg.Client({ connectionString: database.url });
	await client.connect();
	t.teardown(() => client.end());
	// A JSON text cut short: PostgreSQL quotes it back in `where`.
	const truncated = JSON.stringify(session).slice(0, -3);
	const original = await t.throwsAsync(client.query('SELECT $1::jsonb', [truncated]));
	t.true(leaks(original), `\`where\` quotes the input: ${String(Reflect.get(original ?? {}, 'where'))}`);

	const error = new DatabaseError('get', original);
	t.is(error.sqlState, '22P02');
	t.like(error.cause, { message: 'invalid input syntax for type json', code: '22P02', sqlState: '22P02' });
	assertNoSessionData(t, error, 'the DatabaseError');

	// The same through Prisma: its adapter keeps the primary message only.
	const throughPrisma = await t.throwsAsync(rawClient(t, database).$queryRawUnsafe('SELECT $1::jsonb AS data', truncated));
	const wrapped = new DatabaseError('get', throughPrisma);
	t.like(wrapped, { sqlState: '22P02', prismaCode: 'P2010', driverErrorKind: 'InvalidInputValue' });
	t.is(wrapped.cause.message, 'invalid input syntax for type json');
	assertNoSessionData(t, wrapped, 'the DatabaseError');
});

for (const via of clients) {
	test(`with ${via}: a missing table is named; a server that does not answer gives the driver's own message, without the password`, async (t) => {
		const { store, database } = await storeVia(t, via);
		await database.query('DROP TABLE http_sessions');
		const missing = await t.throwsAsync(store.get(key, hour, {}), { instanceOf: DatabaseError });
		t.like(missing?.cause, { sqlState: '42P01', message: 'relation "http_sessions" does not exist' });
		t.is(missing?.failure, undefined, 'the server answered');

		const url = 'postgresql://nobody:secret@127.0.0.1:1/none';
		const unreachable = via === 'prisma'
			? new PgStore({ prisma: new PrismaClient({ adapter: new PrismaPg({ connectionString: url, connectionTimeoutMillis: 2_000 }) }), cleanupInterval: 0 })
			: new PgStore({ connectionString: url, pool: { connectionTimeoutMillis: 2_000 }, cleanupInterval: 0 });
		t.teardown(() => unreachable.close());
		const error = await t.throwsAsync(unreachable.get(key, hour, {}), { instanceOf: DatabaseError });
		t.is(error?.failure, 'connection-lost');
		t.is(error?.sqlState, undefined);
		if (via === 'prisma') {
			t.like(error?.cause, { code: error?.prismaCode, sqlState: undefined });
			t.true(error?.cause.message.includes('Can\'t reach database server at 127.0.0.1:1'), error?.cause.message);
		} else {
			t.like(error?.cause, { code: 'ECONNREFUSED', sqlState: undefined });
			t.true(error?.cause.message.includes('ECONNREFUSED 127.0.0.1:1'), error?.cause.message);
		}
		t.false(inspect(error, { depth: Infinity }).includes('secret'), 'no password');
	});
}
