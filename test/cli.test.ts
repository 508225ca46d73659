import { spawn } from 'node:child_process';
import test from 'ava';
import { createDatabase, migrationFiles } from './helpers/database.js';

// Each start of the bin costs Node a good part of a second of CPU: the tests of this file starting
// theirs all at once on two cores made each take many times longer, past the bound below. Two
// run at a time; the bound counts from each one's start.
const running = new Set<Promise<unknown>>();
async function inTurn<T>(run: () => Promise<T>): Promise<T> {
	while (running.size >= 2) {
		await Promise.race(running);
	}
	const turn = run();
	const settled = turn.then(() => undefined, () => undefined);
	running.add(settled);
	void settled.then(() => running.delete(settled));
	return turn;
}

// The `koa-pgstore` bin as the package ships it (dist/, built by `npm test` when older than src/),
// as a scheduler would run it.
function cli(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; stdout: string; stderr: string }> {
	return inTurn(() => runCli(args, env));
}

async function runCli(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; stdout: string; stderr: string }> {
	const child = spawn(process.execPath, ['dist/cli.js', ...args], {
		env: { ...process.env, DATABASE_URL: undefined, ...env },
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let stdout = '';
	let stderr = '';
	child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
	child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
	const code = await new Promise<number | null>((resolve) => {
		const timer = setTimeout(() => { child.kill(); resolve(null); }, 40_000);
		// 'close', not 'exit': the output is read in full only once the streams close.
		child.on('close', (exitCode) => { clearTimeout(timer); resolve(exitCode); });
	});
	return { code, stdout: stdout.trim(), stderr: stderr.trim() };
}

// The advisory lock sweeps took before they stopped taking any (the bytes of "koapgst1"), as an
// instance of an older release, or anyone at all, may hold it.
const formerSweepLockId = 0x6b6f_6170_6773_7431n;

test('cleanup is not stopped by the advisory lock sweeps used to take: it deletes and exits 0', async (t) => {
	const database = await createDatabase(t);
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		VALUES ('expired', '{}', now(), now(), now() - interval '1 hour')`);
	const { default: pg } = await import('pg');
	const other = new pg.Client({ connectionString: database.url });
	await other.connect();
	t.teardown(() => other.end());
	await other.query('SELECT pg_advisory_lock($1)', [formerSweepLockId.toString()]);
	const { code, stdout } = await cli(['cleanup', '--lock-wait', '500'], { DATABASE_URL: database.url });
	t.is(code, 0);
	t.regex(stdout, /^Deleted 1 expired session/);
	t.deepEqual(await database.query('SELECT count(*)::int AS n FROM http_sessions'), [{ n: 0 }]);
});

test('cleanup exits 5, which the crontab line of earlier releases does not swallow, when expired rows stay held past --lock-wait', async (t) => {
	const database = await createDatabase(t);
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		SELECT 'expired-' || n, '{}'::jsonb, now(), now(), now() - interval '1 hour' FROM generate_series(1, 3) AS n`);
	const { default: pg } = await import('pg');
	const holder = new pg.Client({ connectionString: database.url });
	await holder.connect();
	t.teardown(() => holder.end());
	await holder.query('BEGIN');
	await holder.query(`SELECT 1 FROM http_sessions WHERE key = 'expired-1' FOR UPDATE`);
	const { code, stdout } = await cli(['cleanup', '--lock-wait', '300', '--json'], { DATABASE_URL: database.url });
	t.is(code, 5);
	t.like(JSON.parse(stdout), { deleted: 2, skipped: true });
	const text = await cli(['cleanup', '--lock-wait', '0'], { DATABASE_URL: database.url });
	t.is(text.code, 5);
	t.regex(text.stdout, /^Deleted 0 expired sessions, but others remain: other transactions held their rows past --lock-wait/);
	// What `… cleanup || [ $? -eq 3 ]` in a crontab does with that exit code.
	const { spawnSync } = await import('node:child_process');
	t.is(spawnSync('sh', ['-c', `(exit ${text.code}) || [ $? -eq 3 ]`]).status, 1, 'cron reports it');
	await holder.query('COMMIT');
	t.is((await cli(['cleanup', '--lock-wait', '0'], { DATABASE_URL: database.url })).code, 0);
});

test('migrate applies the missing migrations, then has nothing to do', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const first = await cli(['migrate', '--schema', 'sessions'], { DATABASE_URL: database.url });
	t.is(first.code, 0, first.stderr);
	t.is(first.stdout, `Applied ${(await migrationFiles()).map((migration) => migration.name).join(', ')}`);
	t.deepEqual(await database.query(`SELECT to_regclass('sessions.http_sessions') IS NOT NULL AS found`), [{ found: true }]);
	const again = await cli(['migrate', '--schema', 'sessions', '--json'], { DATABASE_URL: database.url });
	t.is(again.code, 0);
	t.deepEqual(JSON.parse(again.stdout), { applied: [] });
});

test('status shows migrations, live and expired sessions and the table size; exits 4 only while the table lacks what a store needs', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const missing = await cli(['status'], { DATABASE_URL: database.url });
	t.is(missing.code, 4);
	t.regex(missing.stdout, /Table complete: no, it lacks the table itself \("http_sessions" does not exist\)/);

	const [init] = await migrationFiles();
	await database.query(init?.sql ?? '');
	// The first release's table serves a store without the `subject` option: complete, with the
	// `subject` column's migration pending.
	const older = await cli(['status', '--json'], { DATABASE_URL: database.url });
	t.is(older.code, 0);
	t.like(JSON.parse(older.stdout), { exists: true, missing: [], applied: [], pending: (await migrationFiles()).map((migration) => migration.name), live: 0, expired: 0 });

	t.is((await cli(['migrate'], { DATABASE_URL: database.url })).code, 0);
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		VALUES ('a', '{}', now(), now(), now() + interval '1 hour'), ('b', '{}', now(), now(), now() - interval '1 hour'),
		       ('c', '{}', now(), now(), now() - interval '1 hour')`);
	const { code, stdout } = await cli(['status', '--json'], { DATABASE_URL: database.url });
	t.is(code, 0);
	const status = JSON.parse(stdout) as Record<string, unknown>;
	t.like(status, { table: '"http_sessions"', missing: [], pending: [], live: 1, expired: 2 });
	t.deepEqual(status['applied'], (await migrationFiles()).map((migration) => migration.name));
	t.true(Number(status['bytes']) > 0);
	const text = await cli(['status'], { DATABASE_URL: database.url });
	t.regex(text.stdout, /Live sessions: 1\nExpired sessions: 2\nSize: [\d.]+ kB/);
});

test('--help, usage errors and a missing DATABASE_URL have exit codes of their own', async (t) => {
	const helpText = await cli(['--help'], {});
	t.is(helpText.code, 0);
	t.regex(helpText.stdout, /Usage: koa-pgstore <command>/);
	t.regex(helpText.stdout, /5 {2}cleanup: expired sessions remain that other transactions held past --lock-wait/);
	t.notRegex(helpText.stdout, /^ {2}3 /m, 'exit code 3 is no longer returned');
	const unknown = await cli(['vacuum'], { DATABASE_URL: 'postgresql://127.0.0.1:1/none' });
	t.is(unknown.code, 2);
	t.regex(unknown.stderr, /unknown command or argument: vacuum/);
	const noUrl = await cli(['cleanup'], {});
	t.is(noUrl.code, 2);
	t.regex(noUrl.stderr, /DATABASE_URL is not set/);
	const badBatch = await cli(['cleanup', '--batch-size', 'many'], { DATABASE_URL: 'postgresql://127.0.0.1:1/none' });
	t.is(badBatch.code, 2);
});

test('an unreachable database exits 1 with the reason', async (t) => {
	const { code, stderr } = await cli(['cleanup'], { DATABASE_URL: 'postgresql://postgres:postgres@127.0.0.1:1/none' });
	t.is(code, 1);
	t.regex(stderr, /cleanup failed: .*connection-lost/);
});
