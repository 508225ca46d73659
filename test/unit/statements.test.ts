import { PrismaPg } from '@prisma/adapter-pg';
import test from 'ava';
import { PrismaClient } from '../../src/generated/prisma/client.js';
import { readSessionTable } from '../../src/sql/session-table.js';
import { sweepStatements } from '../../src/sql/sweep-statements.js';
import { sessionStatements, type LiveWrite, type WholeWrite } from '../../src/sql/statements.js';
import { PrismaClient as AppClient } from '../fixtures/app-schema/generated/client.js';
import { everyStatement, unqualifiedNames } from '../helpers/sql-names.js';

// The generated SQL, snapshot by snapshot: a reviewer reads each statement whole, with the
// values its `$n` stand for. `test/unit/snapshots/statements.test.ts.md` is the readable form.

// Building a client connects to nothing; these tests run no SQL.
const adapter = () => new PrismaPg({ connectionString: 'postgresql://nobody@127.0.0.1:1/none' });
const packageClient = new PrismaClient({ adapter: adapter() });
const appClient = new AppClient({ adapter: adapter() });

// The app's renamed model with a `subject` field mapped to another column name.
const appModel: unknown = Reflect.get(Reflect.get(Reflect.get(appClient, '_runtimeDataModel') as object, 'models') as object, 'PGSession');
const appClientWithSubject = {
	_runtimeDataModel: {
		models: {
			PGSession: { ...appModel as object, fields: [...Reflect.get(appModel as object, 'fields') as object[], { name: 'subject', dbName: 'owner' }] },
		},
	},
};

const now = new Date('2026-12-01T10:00:00.000Z');
const expiresOn = new Date('2026-12-02T10:00:00.000Z');
const whole = (digest: string, subject: string | null | undefined): WholeWrite => ({ digest, json: `{"user":"${digest}"}`, now, expiresOn, subject });
const live = (digest: string, subject: string | null | undefined, replace = false, keepExpiry = false): LiveWrite => ({
	digest, replace, patch: `{"cart":"${digest}"}`, removed: '["coupon"]', now, expiresOn, keepExpiry, subject,
});

for (const [title, client, schema] of [
	['the package\'s own model (http_sessions, search_path)', packageClient, undefined],
	['the package\'s own model in the `schema` option\'s schema', packageClient, 'tenant'],
	['an app\'s model renamed with @@map and moved with @@schema', appClient, undefined],
] as const) {
	test(`statements without subject: ${title}`, (t) => {
		const statements = sessionStatements(readSessionTable(client, schema), false);
		t.is(statements.bySubject, undefined);
		t.snapshot(statements.selectLive({ digests: ['d1', 'd2'], now }), 'selectLive');
		t.snapshot(statements.updateLive([live('d1', undefined), live('d2', undefined, true), live('d3', undefined, false, true)], 4096), 'updateLive');
		t.snapshot(statements.upsert([whole('d1', undefined)], 4096), 'upsert');
		t.snapshot(statements.insert([whole('d1', undefined)], 4096), 'insert');
		t.snapshot(statements.delete([{ digest: 'd1', id: undefined }, { digest: 'd2', id: '42' }]), 'delete');
		t.snapshot(sweepStatements(readSessionTable(client, schema)).deleteExpired({ limit: 1000 }), 'deleteExpired');
	});
}

for (const [title, client] of [
	['the package\'s own model', packageClient],
	['an app\'s renamed model whose subject column is mapped', appClientWithSubject],
] as const) {
	test(`statements with subject: ${title}`, (t) => {
		const statements = sessionStatements(readSessionTable(client, undefined), true);
		t.snapshot(statements.updateLive([live('d1', 'ada'), live('d2', undefined)], 0), 'updateLive');
		t.snapshot(statements.upsert([whole('d1', 'ada'), whole('d2', null)], 0), 'upsert');
		t.snapshot(statements.insert([whole('d1', 'ada'), whole('d2', null)], 0), 'insert');
		t.snapshot(statements.bySubject?.deleteBatch({ subject: 'ada', keep: ['d1'], limit: 10_000, watch: ['d2'] }), 'deleteBatch');
		t.snapshot(statements.bySubject?.list({ subject: 'ada', now, limit: 51, candidates: 10_000 }), 'list');
		t.snapshot(statements.bySubject?.deleteOne({ subject: 'ada', id: '42' }), 'deleteOne');
	});
}

test('every statement has a name of its own, for preparing it', (t) => {
	const statements = sessionStatements(readSessionTable(packageClient, undefined), true);
	const subject = statements.bySubject;
	const built = [
		statements.selectLive({ digests: [], now }), statements.updateLive([], 0), statements.upsert([], 0), statements.insert([], 0), statements.delete([]),
		statements.tableStatus(), sweepStatements(readSessionTable(packageClient, undefined)).deleteExpired({ limit: 1 }),
		subject?.deleteBatch({ subject: 'ada', keep: [], limit: 1, watch: [] }), subject?.list({ subject: 'ada', now, limit: 1, candidates: 1 }),
		subject?.deleteOne({ subject: 'ada', id: '1' }),
	];
	t.deepEqual(built.map((statement) => statement?.name).sort(), [
		'deleteBatchOfSubject', 'deleteOneOfSubject', 'delete', 'sweepExpired', 'tableStatus', 'insert', 'listOfSubject', 'selectLive', 'updateLive', 'upsert',
	].sort());
});

test('no statement resolves an operator, function or type through search_path: each is named with pg_catalog', (t) => {
	for (const [client, withSubject] of [[packageClient, true], [packageClient, false], [appClientWithSubject, true]] as const) {
		for (const statement of everyStatement(sessionStatements(readSessionTable(client, 'tenant'), withSubject), sweepStatements(readSessionTable(client, 'tenant')))) {
			t.deepEqual(unqualifiedNames(statement.text), [], statement.name);
		}
	}
});

test('the search_path check finds what is not named with pg_catalog', (t) => {
	t.deepEqual(unqualifiedNames('SELECT to_timestamp($1 / 1000), "a" = 1, x::text FROM t AS r(k pg_catalog.text) WHERE k = ANY($2)'), [
		'operator /', 'operator =', 'operator =', 'function to_timestamp', 'type text',
	]);
	t.deepEqual(unqualifiedNames('UPDATE t SET "a" = pg_catalog.now(), "b" = 1 WHERE "c" OPERATOR(pg_catalog.=) pg_catalog.count(*)::pg_catalog.int4'), []);
});

test('a subject option on a model without the subject field names the migration to apply', (t) => {
	t.throws(() => sessionStatements(readSessionTable(appClient, undefined), true), { instanceOf: TypeError, message: /…_session_subject/ });
});
