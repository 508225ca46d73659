import FakeTimers from '@sinonjs/fake-timers';
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { CleanupBlockedError, DatabaseError, PgStore } from '../src/index.js';
import type { TestDatabase } from './helpers/database.js';
import { countingClient } from './helpers/counting-client.js';
import { runScript } from './helpers/child-process.js';
import { createDatabase } from './helpers/database.js';
import { createStore } from './helpers/store.js';

async function insertSessions(database: TestDatabase, { expired, live }: { expired: number; live: number }) {
	await database.query(`
		INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		SELECT 'expired-' || n, '{}'::jsonb, now(), now(), now() - interval '1 minute' FROM generate_series(1, $1) AS n
		UNION ALL
		SELECT 'live-' || n, '{}'::jsonb, now(), now(), now() + interval '1 hour' FROM generate_series(1, $2) AS n`,
	[expired, live]);
}

async function countRows(database: TestDatabase) {
	const [row] = await database.query<{ expired: number; live: number }>(
		`SELECT count(*) FILTER (WHERE expires_on < now())::int AS expired, count(*) FILTER (WHERE expires_on >= now())::int AS live FROM http_sessions`,
	);
	return row;
}

// The advisory lock sweeps took before they stopped taking any (the bytes of "koapgst1"): an
// instance of an older release may still hold it, and so may anyone who wants sweeps to stop.
const formerSweepLockId = 0x6b6f_6170_6773_7431n;

/**
 * A transaction of the test's own (as the table's owner) holding the rows of the expired sessions
 * whose key matches `pattern` (`FOR UPDATE`), as a request or a stuck job would, until the test
 * commits it.
 */
async function rowHolder(t: ExecutionContext, database: TestDatabase, pattern: string): Promise<{ client: pg.Client; held: number }> {
	const client = new pg.Client({ connectionString: database.url });
	await client.connect();
	t.teardown(() => client.end());
	await client.query('BEGIN');
	const { rowCount } = await client.query('SELECT 1 FROM http_sessions WHERE key LIKE $1 FOR UPDATE', [pattern]);
	return { client, held: rowCount ?? 0 };
}

function until(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	return (async () => {
		while (!(await condition())) {
			if (Date.now() > deadline) {
				throw new Error('condition not met in time');
			}
			await new Promise((resolve) => setTimeout(resolve, 25));
		}
	})();
}

test('cleanup() deletes the expired sessions in batches and keeps the live ones', async (t) => {
	const { store, database } = await createStore(t);
	await insertSessions(database, { expired: 2_500, live: 10 });
	const called = performance.now();
	const report = await store.cleanup({ batchSize: 1_000 });
	const took = performance.now() - called;
	t.like(report, { deleted: 2_500, batches: 3, skipped: false });
	t.true(report.ms > 0 && report.ms <= took, `ms is how long the sweep took, within the ${took} ms of the call: got ${report.ms}`);
	t.deepEqual(await countRows(database), { expired: 0, live: 10 });
	t.like(await store.cleanup(), { deleted: 0, batches: 1 });
});

test('two stores sweeping one database at once delete each row once, and neither reports rows left', async (t) => {
	const { store, database } = await createStore(t);
	const other = new PgStore({ connectionString: database.url, cleanupInterval: 0 });
	t.teardown(() => other.close());
	await insertSessions(database, { expired: 5_000, live: 5 });
	const reports = await Promise.all([store.cleanup({ batchSize: 100 }), other.cleanup({ batchSize: 100 })]);
	t.is(reports[0].deleted + reports[1].deleted, 5_000);
	t.deepEqual(reports.map((report) => report.skipped), [false, false], 'each waited out the rows the other\'s batch held');
	t.deepEqual(await countRows(database), { expired: 0, live: 5 });
});

test('a login without any grant on the table cannot stop a sweep: it may hold any advisory lock, and no lock of the table or its rows', async (t) => {
	const errors: Error[] = [];
	const { store, database } = await createStore(t, { onError: (error) => { errors.push(error); } });
	await insertSessions(database, { expired: 5_000, live: 5 });
	// A role of the cluster with no grant on the table, as another app's role on a shared server.
	const role = `intruder_${randomBytes(4).toString('hex')}`;
	await database.query(`CREATE ROLE ${role} LOGIN PASSWORD 'intruder'`);
	t.teardown(() => database.query(`DROP ROLE IF EXISTS ${role}`));
	const url = new URL(database.url);
	url.username = role;
	url.password = 'intruder';
	const intruder = new pg.Client({ connectionString: url.toString() });
	await intruder.connect();
	t.teardown(() => intruder.end());
	// Everything it can take: the lock sweeps used to take, and locks derived from the table's
	// identity, held by its session and by an open transaction.
	const [{ oid = '' } = {}] = await database.query<{ oid: string }>(`SELECT 'http_sessions'::regclass::oid::text AS oid`);
	await intruder.query('SELECT pg_advisory_lock($1::bigint), pg_advisory_lock($2::bigint), pg_advisory_lock(0, $2::integer)', [formerSweepLockId.toString(), oid]);
	await intruder.query('BEGIN');
	await intruder.query('SELECT pg_advisory_xact_lock($1::bigint)', [formerSweepLockId.toString()]);
	for (const attempt of ['LOCK TABLE http_sessions IN SHARE UPDATE EXCLUSIVE MODE', 'SELECT 1 FROM http_sessions FOR UPDATE']) {
		await intruder.query('SAVEPOINT try');
		const error = await t.throwsAsync(intruder.query(attempt));
		t.is((error as { code?: string } | undefined)?.code, '42501', `${attempt}: permission denied`);
		await intruder.query('ROLLBACK TO SAVEPOINT try');
	}

	t.like(await store.cleanup({ batchSize: 1_000 }), { deleted: 5_000, skipped: false });
	await insertSessions(database, { expired: 50, live: 0 });
	const schedule = store.startCleanup({ interval: 50 });
	await until(async () => (await countRows(database))?.expired === 0);
	await schedule.stop();
	t.deepEqual(await countRows(database), { expired: 0, live: 5 });
	t.deepEqual(errors, []);
});

test('an awaited sweep waits for expired rows another transaction holds a moment, deletes them once released, and reports nothing left', async (t) => {
	const { store, database } = await createStore(t);
	await insertSessions(database, { expired: 30, live: 2 });
	const { client: holder, held } = await rowHolder(t, database, 'expired-1%');
	t.is(held, 11);
	const sweep = store.cleanup({ lockWait: 60_000 });
	// Once it has deleted every row it could, only the held ones remain: then they are released.
	await until(async () => (await countRows(database))?.expired === held);
	await holder.query('COMMIT');
	t.like(await sweep, { deleted: 30, skipped: false });
	t.deepEqual(await countRows(database), { expired: 0, live: 2 });
});

test('a sweep leaves the rows held past its lockWait, deletes every other, and says so; released, they are deleted', async (t) => {
	const { store, database } = await createStore(t);
	await insertSessions(database, { expired: 20, live: 0 });
	const { client: holder, held } = await rowHolder(t, database, 'expired-1%');
	t.like(await store.cleanup({ lockWait: 0 }), { deleted: 20 - held, batches: 1, skipped: true });
	t.like(await store.cleanup({ lockWait: 300 }), { deleted: 0, skipped: true });
	t.is((await countRows(database))?.expired, held);
	await holder.query('COMMIT');
	t.like(await store.cleanup({ lockWait: 0 }), { deleted: held, batches: 1, skipped: false });
});

test('scheduled sweeps that leave held rows again and again are reported to onError; a sweep that clears them ends the reports', async (t) => {
	const reported: { error: Error; source: string }[] = [];
	let onReport = () => {};
	const { store, database } = await createStore(t, {
		onError: (error, { source }) => {
			reported.push({ error, source });
			onReport();
		},
	});
	await insertSessions(database, { expired: 20, live: 1 });
	const { client: holder, held } = await rowHolder(t, database, 'expired-1%');
	const schedule = store.startCleanup({ interval: 50, lockWait: 0 });
	t.teardown(() => schedule.stop());
	await new Promise<void>((resolve) => { onReport = resolve; });
	t.true(reported[0]?.error instanceof CleanupBlockedError);
	t.like(reported[0], { source: 'cleanup', error: { code: 'ERR_PGSTORE_CLEANUP_BLOCKED', sweeps: 2 } });
	t.regex(reported[0]?.error.message ?? '', /pg_stat_activity/);
	t.is((await countRows(database))?.expired, held, 'every row not held was deleted');

	await holder.query('COMMIT');
	await until(async () => (await countRows(database))?.expired === 0);
	const reportsWhenCleared = reported.length;
	// A sweep that found nothing held has run once the table is clear and the next tick came.
	await insertSessions(database, { expired: 1, live: 0 });
	await until(async () => (await countRows(database))?.expired === 0);
	await schedule.stop();
	t.is(reported.length, reportsWhenCleared, 'no report once nothing is held');
	t.deepEqual(reported.map(({ error }) => [error.name, (error as CleanupBlockedError).sweeps]), reported.map((_, index) => ['CleanupBlockedError', index + 2]));
});

test('scheduled sweeps of two stores at once, each holding rows the other skips, report nothing', async (t) => {
	const errors: Error[] = [];
	const { store, database } = await createStore(t, { onError: (error) => { errors.push(error); } });
	const other = new PgStore({ connectionString: database.url, cleanupInterval: 0, onError: (error) => { errors.push(error); } });
	t.teardown(() => other.close());
	await insertSessions(database, { expired: 3_000, live: 1 });
	const schedules = [store.startCleanup({ interval: 20, batchSize: 50, pause: 0 }), other.startCleanup({ interval: 20, batchSize: 50, pause: 0 })];
	await until(async () => (await countRows(database))?.expired === 0);
	await Promise.all(schedules.map((schedule) => schedule.stop()));
	t.deepEqual(errors, []);
});

test('sweeps go by PostgreSQL\'s clock: a session live by the database\'s time survives an app clock that runs ahead', async (t) => {
	const database = await createDatabase(t);
	await insertSessions(database, { expired: 3, live: 4 });
	// An app server whose clock runs two hours ahead.
	const script = `
		const realNow = Date.now;
		Date.now = () => realNow() + 2 * 3_600_000;
		const RealDate = Date;
		globalThis.Date = class extends RealDate { constructor(...args) { super(...(args.length === 0 ? [Date.now()] : args)); } };
		globalThis.Date.now = Date.now;
		const { PgStore } = await import('koa-pgstore');
		const store = new PgStore({ connectionString: process.env.URL, cleanupInterval: 0 });
		console.log(JSON.stringify(await store.cleanup()));
		await store.close();
	`;
	const { code, output } = await runScript(script, { URL: database.url }, 60_000);
	t.is(code, 0);
	t.like(JSON.parse(output) as object, { deleted: 3 });
	t.is((await countRows(database))?.live, 4);
});

test('a one-off script that awaits cleanup() deletes every expired row before it exits', async (t) => {
	const database = await createDatabase(t);
	await insertSessions(database, { expired: 8_000, live: 5 });
	const script = `
		import { PgStore } from 'koa-pgstore';
		const store = new PgStore({ connectionString: process.env.URL, cleanupInterval: 0 });
		const report = await store.cleanup({ batchSize: 1_000, pause: 100 });
		console.log(JSON.stringify(report));
		await store.close();
	`;
	const { code, output } = await runScript(script, { URL: database.url }, 60_000);
	t.is(code, 0, 'the process exited on its own, once done');
	t.like(JSON.parse(output) as object, { deleted: 8_000, batches: 9, skipped: false });
	t.like(await countRows(database), { expired: 0, live: 5 });
});

test('cleanup() pauses between batches, and an abort cuts the pause short', async (t) => {
	const { store, database } = await createStore(t);
	await insertSessions(database, { expired: 25, live: 0 });
	const paused = await store.cleanup({ batchSize: 10, pause: 150 });
	t.like(paused, { deleted: 25, batches: 3 });
	t.true(paused.ms >= 300, `two pauses of 150 ms, took ${paused.ms} ms`);
	await insertSessions(database, { expired: 30, live: 0 });
	const controller = new AbortController();
	const started = performance.now();
	const aborted = store.cleanup({ batchSize: 10, pause: 60_000, signal: controller.signal });
	setTimeout(() => controller.abort(), 200);
	t.like(await aborted, { deleted: 10, batches: 1 });
	t.true(performance.now() - started < 30_000, "the abort cut the 60 s pause short");
});

test('cleanup() stops between batches when its signal aborts', async (t) => {
	const { store, database } = await createStore(t);
	await insertSessions(database, { expired: 300, live: 0 });
	t.like(await store.cleanup({ batchSize: 100, signal: AbortSignal.abort() }), { deleted: 0, batches: 0 });
	t.is((await countRows(database))?.expired, 300);
});

test('cleanupInterval sweeps in the background; close() stops it', async (t) => {
	const { store, database } = await createStore(t, { cleanupInterval: 50 });
	await insertSessions(database, { expired: 20, live: 3 });
	await until(async () => (await countRows(database))?.expired === 0);
	t.is((await countRows(database))?.live, 3);
	await store.close();
	await insertSessions(database, { expired: 5, live: 0 });
	await new Promise((resolve) => setTimeout(resolve, 300));
	t.is((await countRows(database))?.expired, 5, 'no sweep after close()');
});

// Serial, so that its fake clock replaces the timers of this process while no other test runs.
// The clock only moves when the test says: every sweep is in flight when the stores close, and
// the hundred transactions wait for the client's connections as long as they need, however
// slow the machine (Prisma's maxWait runs on this clock too).
test.serial('100 stores close in parallel while their scheduled sweeps are in flight; close() waits for them, and none sweeps again', async (t) => {
	const database = await createDatabase(t);
	await insertSessions(database, { expired: 50, live: 0 });
	const { prisma, transactions, transactionsOpen } = countingClient(t, database.url);
	const errors: Error[] = [];
	const interval = 60_000;
	const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'], shouldClearNativeTimers: true });
	try {
		const stores = Array.from({ length: 100 }, () => new PgStore({ prisma, cleanupInterval: interval, onError: (error) => { errors.push(error); } }));
		t.teardown(() => Promise.all(stores.map((store) => store.close())));
		// Each schedule's first turn comes within one interval; a sweep's first try at the lock is
		// a transaction, started at once.
		clock.tick(interval);
		t.is(transactions(), 100, 'every schedule started a sweep');
		await Promise.all(stores.map((store) => store.close()));
		t.is(transactionsOpen(), 0, 'close() waited for the sweeps in flight');
		// (Had it not, the sweeps end before the clock moves on: a schedule left running then
		// starts new ones.)
		for (const deadline = performance.now() + 30_000; transactionsOpen() > 0 && performance.now() < deadline;) {
			await delay(5);
		}
		await delay(0);
		clock.tick(10 * interval);
		t.is(transactions(), 100, 'no sweep after close()');
	} finally {
		clock.uninstall();
	}
	t.is((await countRows(database))?.expired, 0, 'the sweeps ran, each deleting what no other held');
	t.deepEqual(errors, []);
});

// Serial, so that its fake clock replaces the timers of this process while no other test runs.
test.serial('cleanupInterval: 0 (and startCleanup({ interval: 0 })) starts no sweep, however long the store runs; the default starts one within its interval', async (t) => {
	const database = await createDatabase(t);
	await insertSessions(database, { expired: 5, live: 0 });
	// Each batch of a sweep is a transaction: a sweep that starts calls $transaction at once.
	const off = countingClient(t, database.url);
	const byDefault = countingClient(t, database.url);
	const fiveMinutes = 300_000; // cleanupInterval's documented default
	const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'], shouldClearNativeTimers: true });
	let stores: [PgStore, PgStore];
	let timersOfZero: number;
	try {
		stores = [new PgStore({ prisma: off.prisma, cleanupInterval: 0 }), new PgStore({ prisma: byDefault.prisma })];
		const timers = clock.countTimers();
		const zero = stores[0].startCleanup({ interval: 0 });
		timersOfZero = clock.countTimers() - timers;
		// Stopped before the clock moves: a timer of interval 0 would fire without end.
		await zero.stop();
		clock.tick(10 * fiveMinutes);
	} finally {
		clock.uninstall();
	}
	t.teardown(() => Promise.all(stores.map((store) => store.close())));
	t.is(timersOfZero, 0, 'startCleanup({ interval: 0 }) set no timer');
	t.is(off.transactions(), 0, 'no sweep in ten default intervals');
	t.is(byDefault.transactions(), 1, 'where the default interval started one (the next ticks found it running)');
	await Promise.all(stores.map((store) => store.close()));
	t.is((await countRows(database))?.expired, 0, 'and that sweep ran on the database');
});

test('startCleanup(): a failed sweep reaches onError and the next one succeeds', async (t) => {
	const { store, database } = await createStore(t);
	await insertSessions(database, { expired: 7, live: 0 });
	await database.query('ALTER TABLE http_sessions RENAME TO http_sessions_away');
	const errors: { error: Error; source: string }[] = [];
	const cleanup = store.startCleanup({
		interval: 50,
		onError: (error, { source }) => { errors.push({ error, source }); },
	});
	t.teardown(() => cleanup.stop());
	await until(async () => errors.length > 0);
	t.true(errors[0]?.error instanceof DatabaseError);
	t.is(errors[0]?.source, 'cleanup');
	t.is((errors[0]?.error as DatabaseError).operation, 'cleanup');
	await database.query('ALTER TABLE http_sessions_away RENAME TO http_sessions');
	await until(async () => (await countRows(database))?.expired === 0);
	await cleanup.stop();
	t.is((await countRows(database))?.expired, 0, 'a later sweep of the same schedule deleted them');
});

test('startCleanup() validates its options', async (t) => {
	const { store } = await createStore(t);
	for (const [options, message] of [
		[{ interval: -1 }, /`interval` to be an integer >= 0, got -1/],
		[{ interval: Number.NaN }, /`interval`.*got NaN/],
		[{ interval: '5m' }, /`interval`.*got "5m"/],
		[{ batchSize: 0 }, /`batchSize` to be an integer >= 1, got 0/],
		[{ pause: -1 }, /`pause` to be an integer >= 0, got -1/],
		[{ lockWait: 1.5 }, /`lockWait` to be an integer >= 0, got 1.5/],
		[{ signal: {} }, /`signal` to be an AbortSignal/],
		[{ onError: 1 }, /`onError` to be a function/],
	] as const) {
		// @ts-expect-error: deliberately wrong options
		t.throws(() => store.startCleanup(options), { instanceOf: TypeError, message });
	}
	t.throws(() => new PgStore({ connectionString: 'postgresql://x/y', cleanupInterval: -5 }), { instanceOf: TypeError, message: /`cleanupInterval`/ });
	await t.throwsAsync(store.cleanup({ batchSize: 1.5 }), { instanceOf: TypeError, message: /`batchSize`/ });
	await t.notThrowsAsync(store.startCleanup({ interval: 0 }).stop(), 'interval 0 is accepted (it starts nothing: see the cleanupInterval: 0 test)');
});

test('a process whose store runs cleanup schedules exits once it has nothing else to do', async (t) => {
	const database = await createDatabase(t);
	// Hourly schedules: a timer of theirs that held the process would hold it for many minutes.
	// The first sweep of one comes at once (its repeating timer is then set), of the other in half
	// an hour (its first timer waits).
	const script = `
		import { PgStore } from 'koa-pgstore';
		const random = Math.random;
		Math.random = () => 0;
		const store = new PgStore({ connectionString: process.env.URL, cleanupInterval: 3_600_000 });
		Math.random = () => 0.5;
		store.startCleanup({ interval: 3_600_000 });
		Math.random = random;
		await store.set('k', { n: 1 }, 60_000);
		console.log('done');
	`;
	const { code, output } = await runScript(script, { URL: database.url });
	t.is(code, 0, 'the process exited on its own');
	t.is(output, 'done');
});
