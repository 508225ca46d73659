import test from 'ava';
import pg from 'pg';
import { digestKey } from '../src/codec/key-digest.js';
import { packageTable } from '../src/sql/session-table.js';
import { sessionStatements } from '../src/sql/statements.js';
import type { Statement } from '../src/sql/text.js';
import { createDatabase } from './helpers/database.js';

// A prepared statement is planned anew on every run while PostgreSQL judges a plan made for the
// run's own values (a custom plan) cheaper than the plan it would keep (the generic plan). For a
// read of `key = ANY($1)` on a table of many rows it always did: the custom plan knows the array
// holds one to three digests, the generic one assumes ten, and planning cost about as much as
// running the read (bench/NOTES.md). These tests prepare the text of each request statement of the
// store's own client as a named statement, as it sends them, run it ten times on a table of 100,000 sessions with the batch sizes of a
// lightly loaded app, and read from pg_prepared_statements how often PostgreSQL planned it.

const hour = 3_600_000;
const runs = 10;
// PostgreSQL makes custom plans for the first five runs of any prepared statement, then chooses.
const firstCustomPlans = 5;

test('every request statement of the store\'s own client keeps one generic plan on a table of many sessions', async (t) => {
	const database = await createDatabase(t);
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		SELECT pg_catalog.md5(i::text), '{"views":1}', now(), now(), now() + interval '1 hour' FROM generate_series(1, 100000) AS i`);
	await database.query('ANALYZE http_sessions');
	const statements = sessionStatements(packageTable, false);
	const client = new pg.Client({ connectionString: database.url });
	await client.connect();
	t.teardown(() => client.end());

	const digests = (run: number) => Array.from({ length: 1 + (run % 3) }, (_, i) => digestKey(`session-${run}-${i}`));
	const now = () => new Date();
	const kinds: Record<string, (run: number) => Statement> = {
		selectLive: (run) => statements.selectLive({ digests: digests(run), now: now() }),
		delete: (run) => statements.delete(digests(run).map((digest, i) => ({ digest, id: i === 0 ? String(run + 1) : undefined }))),
		updateLive: (run) => statements.updateLive(digests(run).map((digest) => ({
			digest, replace: false, patch: `{"views":${run}}`, removed: '[]', now: now(), expiresOn: new Date(Date.now() + hour), keepExpiry: true, subject: undefined,
		})), 4096),
		insert: (run) => statements.insert(digests(run).map((digest) => ({
			digest: `${digest}-new`, json: '{"views":1}', now: now(), expiresOn: new Date(Date.now() + hour), subject: undefined,
		})), 4096),
	};
	for (const [kind, statementOf] of Object.entries(kinds)) {
		for (let run = 0; run < runs; run++) {
			const { name, text, values } = statementOf(run);
			await client.query({ name, text, values: [...values] });
		}
		const [plans] = (await client.query<{ generic: number; custom: number }>(
			'SELECT generic_plans::int AS generic, custom_plans::int AS custom FROM pg_prepared_statements WHERE name = $1',
			[statementOf(0).name],
		)).rows;
		t.is(plans?.custom, firstCustomPlans, `${kind}: planned for its values on its first ${firstCustomPlans} runs only`);
		t.is(plans?.generic, runs - firstCustomPlans, `${kind}: then ran its generic plan`);
	}
});
