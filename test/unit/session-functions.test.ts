import { PrismaPg } from '@prisma/adapter-pg';
import test from 'ava';
import { PrismaClient } from '../../src/generated/prisma/client.js';
import { shippedMigrations } from '../../src/maintenance/migrations.js';
import { functionsMigration, sessionFunctions } from '../../src/sql/session-functions.js';
import { packageTable, readSessionTable, renamedTable } from '../../src/sql/session-table.js';
import { sessionStatements } from '../../src/sql/statements.js';
import { unqualifiedNames } from '../helpers/sql-names.js';

// Building a client connects to nothing; these tests run no SQL.
const packageClient = new PrismaClient({ adapter: new PrismaPg({ connectionString: 'postgresql://nobody@127.0.0.1:1/none' }) });

test('the newest shipped `…_session_functions` migration creates the functions of the statements as they are now', async (t) => {
	const shipped = (await shippedMigrations()).findLast((migration) => migration.name.endsWith('_session_functions'));
	t.truthy(shipped, 'a migration creates the session functions');
	// On failure: a statement changed. Ship its functions in a new migration folder, never by
	// editing a deployed one (instances of the older release still call theirs):
	// npx tsx scripts/session-functions-migration.ts > prisma/migrations/<timestamp>_session_functions/migration.sql
	t.is(shipped?.sql, functionsMigration(packageTable));
});

test('the client\'s own model reads as the table the migration made its functions for, in any schema', (t) => {
	for (const withSubject of [false, true]) {
		const names = (schema: string | undefined) => sessionFunctions(readSessionTable(packageClient, schema), withSubject).map((created) => created.name);
		t.deepEqual(names(undefined), sessionFunctions(packageTable, withSubject).map((created) => created.name));
		t.deepEqual(names('tenant'), names(undefined), 'a store with the `schema` option calls the functions its schema has');
	}
});

test('a function\'s name changes with its statement: two releases\' functions never share a name', (t) => {
	const names = (table: typeof packageTable, withSubject: boolean) => new Map(sessionFunctions(table, withSubject).map((created) => [created.kind, created.name]));
	const plain = names(packageTable, false);
	const withSubject = names(packageTable, true);
	const renamed = names(renamedTable(packageTable, 'web_sessions'), false);
	for (const kind of ['selectLive', 'updateLive', 'upsert', 'insert'] as const) {
		t.not(plain.get(kind), withSubject.get(kind), `${kind}: with and without subject`);
	}
	t.is(plain.get('delete'), withSubject.get('delete'), 'the delete does not depend on the subject column');
	for (const kind of plain.keys()) {
		t.not(plain.get(kind), renamed.get(kind), `${kind}: another table`);
		t.regex(plain.get(kind) ?? '', /^koa_pgstore_[a-z_]+_[0-9a-f]{12}$/);
	}
});

test('each function runs the very statement the store would send, and resolves nothing through the caller\'s search_path', (t) => {
	for (const withSubject of [false, true]) {
		const { texts } = sessionStatements(packageTable, withSubject);
		for (const created of sessionFunctions(packageTable, withSubject)) {
			t.true(created.definition().includes(`RETURN QUERY ${texts[created.kind]};`), created.kind);
			const body = created.definition().slice(created.definition().indexOf('RETURN QUERY '));
			t.deepEqual(unqualifiedNames(body), [], created.kind);
			t.regex(created.call('"public"'), /^SELECT \* FROM "public"\."koa_pgstore_[a-z_]+_[0-9a-f]{12}"\(\$1::pg_catalog\.[a-z0-9[\]]+, \$2::pg_catalog\.[a-z0-9[\]]+\)$/);
		}
	}
	// The migration pins every function's search_path: pg_catalog first, then the table's schema.
	t.regex(functionsMigration(packageTable), /ALTER FUNCTION %I\.%s SET search_path = pg_catalog, %I, pg_temp', pg_catalog\.current_schema\(\), signature, pg_catalog\.current_schema\(\)/);
});
