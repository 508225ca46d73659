import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { DatabaseError, PgStore } from '../src/index.js';
import { runScript } from './helpers/child-process.js';
import { createDatabase } from './helpers/database.js';
import { CookieJar, request } from './helpers/http.js';
import { needsPgBouncer, startPgBouncer } from './helpers/pgbouncer.js';

// Real PgBouncer in transaction pooling mode, with fewer server connections than the app
// processes have client connections, so that processes share server connections as they do in
// production. Statements prepared on a server connection stay there for whoever gets it next.
const bouncerTest = needsPgBouncer(test);
const hour = 3_600_000;

/** Starts test/helpers/session-app.ts as a process of its own; killed when the test ends. */
async function startAppProcess(t: ExecutionContext, env: Record<string, string>): Promise<string> {
	const child = spawn(process.execPath, ['--import=tsx', 'test/helpers/session-app.ts'], {
		env: { ...process.env, ...env },
		stdio: ['ignore', 'pipe', 'inherit'],
	});
	t.teardown(() => new Promise<void>((resolve) => {
		if (child.exitCode !== null) {
			resolve();
			return;
		}
		child.once('exit', () => resolve());
		child.kill('SIGTERM');
	}));
	const first = await createInterface({ input: child.stdout })[Symbol.asyncIterator]().next();
	if (first.done === true) {
		throw new Error('the app process exited before listening');
	}
	return `http://127.0.0.1:${String(first.value).trim()}`;
}

bouncerTest('sessions created in one process are read, updated, regenerated and destroyed in others, behind PgBouncer', async (t) => {
	const database = await createDatabase(t);
	const bouncer = await startPgBouncer(t, database.url, { poolSize: 2 });
	const apps = await Promise.all([1, 2, 3].map(() => startAppProcess(t, { DATABASE_URL: bouncer.url })));
	const [a, b, c] = apps as [string, string, string];
	const pids = new Set<unknown>();
	const visit = async (app: string, path: string, jar: CookieJar) => {
		const response = await request(`${app}${path}`, jar);
		t.is(response.status, 200, JSON.stringify(response.body));
		pids.add((response.body as { pid?: number }).pid);
		return (response.body as { session?: Record<string, unknown> }).session;
	};

	const jar = new CookieJar();
	t.like(await visit(a, '/login?user=ada', jar), { user: 'ada' });
	t.like(await visit(b, '/', jar), { user: 'ada' });
	t.like(await visit(c, '/visit', jar), { user: 'ada', views: 1 });
	t.like(await visit(a, '/visit', jar), { user: 'ada', views: 2 });
	// regenerate() in one process moves the data to a new key and ends the old one for all of them.
	const before = jar.clone();
	t.like(await visit(b, '/login?user=grace', jar), { user: 'grace', views: 2 });
	t.notDeepEqual(jar.cookies.get('sid'), before.cookies.get('sid'));
	t.deepEqual(await visit(c, '/', before), {}, 'the session before regenerate() is gone in another process');
	t.like(await visit(c, '/visit', jar), { user: 'grace', views: 3 });
	await visit(a, '/logout', jar);
	t.deepEqual(await visit(b, '/', jar), {});
	t.is(pids.size, 3, 'three processes served the requests');

	// Many visitors at once, each signing in at one process and coming back at the next two.
	const visitors = await Promise.all(Array.from({ length: 60 }, async (_, index) => {
		const visitor = new CookieJar();
		const user = `user-${index}`;
		await visit(apps[index % 3] ?? a, `/login?user=${user}`, visitor);
		const second = await visit(apps[(index + 1) % 3] ?? a, '/visit', visitor);
		const third = await visit(apps[(index + 2) % 3] ?? a, '/visit', visitor);
		return second?.['user'] === user && third?.['user'] === user && third['views'] === 2;
	}));
	t.deepEqual(new Set(visitors), new Set([true]));
	t.deepEqual(await database.query('SELECT count(*)::int AS n FROM http_sessions'), [{ n: 60 }]);
});

// What one app process does before it exits: bursts of writes and reads, counting errors.
const burst = `
	import { PgStore } from 'koa-pgstore';
	const store = new PgStore({
		connectionString: process.env.URL,
		cleanupInterval: 0,
		pool: { max: 4 },
		...process.env.PREPARED ? { preparedStatements: process.env.PREPARED === '1' } : {},
	});
	const errors = {};
	let operations = 0;
	const run = async (operation) => {
		operations += 1;
		try { await operation(); } catch (error) { errors[error.sqlState ?? error.failure ?? error.name] = (errors[error.sqlState ?? error.failure ?? error.name] ?? 0) + 1; }
	};
	for (let round = 0; round < 10; round++) {
		await Promise.all(Array.from({ length: 10 }, async (_, index) => {
			const key = process.env.RUN + '-' + round + '-' + index;
			await run(() => store.set(key, { round }, 60_000));
			await run(() => store.get(key, 60_000, {}));
			await run(() => store.destroy(key));
		}));
		// Let each burst go out as statements of its own turn of the event loop.
		await new Promise((resolve) => setTimeout(resolve, 5));
	}
	await store.close();
	console.log(JSON.stringify({ operations, errors }));
`;

// Each run is a new process on the server connections PgBouncer kept from the one before, then
// two processes at once share the two server connections.
for (const prepared of ['default', '0'] as const) {
	const title = prepared === 'default'
		? 'with the defaults (preparedStatements) an app restart and two processes behind one PgBouncer cause no errors: the first refused named statement runs again unnamed'
		: 'with preparedStatements: false an app restart and two processes behind one PgBouncer cause no errors, and nothing is refused';
	bouncerTest(title, async (t) => {
		const database = await createDatabase(t);
		const bouncer = await startPgBouncer(t, database.url, { poolSize: 2 });
		const env = { URL: bouncer.url, NODE_DEBUG: 'koa-pgstore', ...prepared === '0' ? { PREPARED: '0' } : {} };
		const runs = [];
		for (const run of ['first', 'second']) {
			runs.push(await runScript(burst, { ...env, RUN: run }, 45_000));
		}
		runs.push(...await Promise.all(['third', 'fourth'].map((run) => runScript(burst, { ...env, RUN: run }, 45_000))));
		for (const [index, { code, output, errorOutput }] of runs.entries()) {
			if (code !== 0) {
				t.fail(`run ${index + 1} exited with ${String(code)} (null: killed after 45 s): ${errorOutput.slice(-2000)}`);
				continue;
			}
			t.deepEqual(JSON.parse(output), { operations: 300, errors: {} }, `run ${index + 1}`);
		}
		// The restarted process meets the statements the first one prepared on the server connections.
		const refused = runs.map(({ errorOutput }) => /named statement refused \(SQLSTATE (26000|42P05)\)/.test(errorOutput));
		t.deepEqual(refused.slice(1), prepared === 'default' ? [true, true, true] : [false, false, false]);
	});
}

bouncerTest('the schema option and ?schema= work through PgBouncer: no startup parameter it refuses', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const bouncer = await startPgBouncer(t, database.url, { poolSize: 2 });
	const store = new PgStore({ connectionString: bouncer.url, schema: 'web sessions', cleanupInterval: 0 });
	t.teardown(() => store.close());
	t.deepEqual(await store.ensureSchema(), ['20261122000000_init', '20261122010000_session_subject', '20261206000000_session_functions']);
	await store.set('k', { n: 1 }, hour);
	t.deepEqual(await store.get('k', hour, {}), { n: 1 });
	t.deepEqual(await database.query('SELECT count(*)::int AS n FROM "web sessions".http_sessions'), [{ n: 1 }]);
	t.like(await store.cleanup(), { deleted: 0, skipped: false });
	// SET LOCAL in ensureSchema()'s transaction did not leak to the server connections (both of
	// them, by two statements at once) that other clients get next.
	const other = new pg.Pool({ connectionString: bouncer.url, max: 2 });
	t.teardown(() => other.end());
	const paths = await Promise.all([1, 2].map(() => other.query<{ path: string }>(`SELECT current_setting('search_path') AS path, pg_sleep(0.2)::text`)));
	t.deepEqual(paths.map((result) => result.rows[0]?.path), ['"$user", public', '"$user", public']);

	const url = new URL(bouncer.url);
	url.searchParams.set('schema', 'auth');
	const fromUrl = new PgStore({ connectionString: url.toString(), cleanupInterval: 0 });
	t.teardown(() => fromUrl.close());
	await fromUrl.ensureSchema();
	await fromUrl.set('k', { n: 2 }, hour);
	t.deepEqual(await database.query('SELECT data FROM auth.http_sessions'), [{ data: { n: 2 } }]);
});

bouncerTest('a PgBouncer restart (all server connections new) is survived by the next requests', async (t) => {
	const database = await createDatabase(t);
	const bouncer = await startPgBouncer(t, database.url, { poolSize: 2 });
	const store = new PgStore({ connectionString: bouncer.url, cleanupInterval: 0, onError: () => {} });
	t.teardown(() => store.close());
	await store.set('k', { n: 1 }, hour);
	await bouncer.restart();
	// The pooled connections died with the old process: a request on one of them may fail once,
	// as connection-lost, never hang.
	const first = await store.get('k', hour, {}).catch((error: unknown) => error);
	if (first instanceof DatabaseError) {
		t.is(first.failure, 'connection-lost');
	} else {
		t.deepEqual(first, { n: 1 });
	}
	t.deepEqual(await store.get('k', hour, {}), { n: 1 });
});

bouncerTest('a sign-out everywhere in one process ends the sessions whose requests are in flight in others, and they stay ended', async (t) => {
	const database = await createDatabase(t);
	const bouncer = await startPgBouncer(t, database.url, { poolSize: 2 });
	const [a, b, c] = await Promise.all([1, 2, 3].map(() => startAppProcess(t, { DATABASE_URL: bouncer.url, GATE_URL: database.url }))) as [string, string, string];
	const laptop = new CookieJar();
	const phone = new CookieJar();
	await request(`${b}/login?user=ada`, laptop);
	await request(`${c}/login?user=ada`, phone);
	const gate = new pg.Client({ connectionString: database.url });
	await gate.connect();
	t.teardown(() => gate.end());
	await gate.query('SELECT pg_advisory_lock(4242)');
	const inFlight = [request(`${b}/slow`, laptop.clone()), request(`${c}/slow`, phone.clone())];
	// Both requests have loaded their sessions and wait at the gate.
	for (let waiting = 0; waiting < 2;) {
		await new Promise((resolve) => setTimeout(resolve, 50));
		const [row] = await database.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
		waiting = row?.n ?? 0;
	}
	t.like((await request(`${a}/sign-out-everywhere?user=ada`, new CookieJar())).body, { ended: 2 });
	await gate.query('SELECT pg_advisory_unlock(4242)');
	t.deepEqual((await Promise.all(inFlight)).map((response) => response.status), [200, 200]);
	t.deepEqual(await database.query('SELECT key FROM http_sessions'), [], 'no save() brought a session back');
	t.like((await request(`${a}/`, laptop)).body, { session: {} });
});

bouncerTest('every process runs the cleanup schedule behind PgBouncer: all expired rows go, no live row is lost', async (t) => {
	const database = await createDatabase(t);
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		SELECT 'expired-' || n, '{}'::jsonb, now(), now(), now() - interval '1 minute' FROM generate_series(1, 5000) AS n
		UNION ALL SELECT 'live-' || n, '{}'::jsonb, now(), now(), now() + interval '1 hour' FROM generate_series(1, 200) AS n`);
	const bouncer = await startPgBouncer(t, database.url, { poolSize: 2 });
	await Promise.all([1, 2, 3].map(() => startAppProcess(t, { DATABASE_URL: bouncer.url, PGSTORE_CLEANUP_INTERVAL: '300' })));
	const deadline = Date.now() + 30_000;
	let counts: { expired: number; live: number } | undefined;
	do {
		await new Promise((resolve) => setTimeout(resolve, 200));
		[counts] = await database.query<{ expired: number; live: number }>(
			`SELECT count(*) FILTER (WHERE expires_on < now())::int AS expired, count(*) FILTER (WHERE expires_on >= now())::int AS live FROM http_sessions`);
	} while ((counts?.expired ?? 1) > 0 && Date.now() < deadline);
	t.deepEqual(counts, { expired: 0, live: 200 });
});
