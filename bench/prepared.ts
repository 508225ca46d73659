// What preparing the store's statements is worth, now that reads and writes are coalesced: the
// same Koa app with `preparedStatements: true` and `false`, under HTTP load, in interleaved rounds
// of one run (run: npx tsx bench/prepared.ts). Prints a Markdown table of req/s, p99 and the
// ratio prepared / unprepared, plus PostgreSQL's own time per statement (parse, plan, execute).
//
// Environment: BENCH_SECONDS (per measurement, default 3), BENCH_ROUNDS (default 3),
// BENCH_CONNECTIONS (default 8).
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import Koa from 'koa';
import session from 'koa-session';
import pg from 'pg';
import { PgStore } from '../src/index.js';
import { startPostgres } from '../scripts/embedded-postgres.js';
import { serveUntilTerminated } from './harness.js';

type Variant = 'prepared' | 'unprepared';
const variants: Variant[] = ['prepared', 'unprepared'];
const workloads = ['read', 'write', 'new'] as const;

if (process.argv[2] === 'serve') {
	// One app server per variant, in its own process so that the load generator and the app do
	// not share an event loop.
	const store = new PgStore({
		connectionString: process.env['BENCH_DATABASE_URL'] ?? '',
		cleanupInterval: 0,
		preparedStatements: process.argv[3] === 'prepared',
	});
	const app = new Koa();
	app.keys = ['a benchmark secret of at least thirty-two bytes'];
	app.use(session({ store, maxAge: 3_600_000 }, app));
	app.use((ctx) => {
		if (ctx.session === null) {
			return;
		}
		if (ctx.path === '/write') {
			ctx.session['views'] = Number(ctx.session['views'] ?? 0) + 1;
		} else if (ctx.path === '/new') {
			ctx.session['user'] = 'visitor';
		}
		ctx.body = { views: ctx.session['views'] ?? 0 };
	});
	await serveUntilTerminated(app, store);
} else {
	const seconds = Number(process.env['BENCH_SECONDS'] ?? 3);
	const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
	const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 8);

	const server = await startPostgres({
		postgresFlags: ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track_planning=on'],
	});
	const databaseUrl = server.url.replace(/\/postgres$/, '/bench');
	const admin = new pg.Client({ connectionString: server.url });
	await admin.connect();
	await admin.query('CREATE DATABASE bench');
	const db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
	await db.query('CREATE EXTENSION pg_stat_statements');
	for (const name of (await readdir('prisma/migrations', { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort()) {
		await db.query(await readFile(`prisma/migrations/${name}/migration.sql`, 'utf8'));
	}
	const { rows: [{ version } = { version: '?' }] } = await db.query<{ version: string }>("SELECT current_setting('server_version') AS version");

	const children: ChildProcess[] = [];
	const startApp = async (variant: Variant): Promise<number> => {
		const child = spawn(process.execPath, ['--import=tsx', fileURLToPath(import.meta.url), 'serve', variant], {
			env: { ...process.env, BENCH_DATABASE_URL: databaseUrl },
			stdio: ['ignore', 'pipe', 'inherit'],
		});
		children.push(child);
		const first = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next();
		return Number(first.value);
	};
	const ports = Object.fromEntries(await Promise.all(variants.map(async (variant) => [variant, await startApp(variant)] as const))) as Record<Variant, number>;
	const cookiesOf = async (port: number) => Promise.all(Array.from({ length: 100 }, async () => {
		const response = await fetch(`http://127.0.0.1:${port}/write`);
		return response.headers.getSetCookie().map((cookie) => cookie.split(';')[0]).join('; ');
	}));
	const cookies = Object.fromEntries(await Promise.all(variants.map(async (variant) => [variant, await cookiesOf(ports[variant])] as const))) as Record<Variant, string[]>;

	interface Measurement { requestsPerSecond: number; p99: number; errors: number; serverMicroseconds: number }
	const measure = async (variant: Variant, workload: typeof workloads[number], duration = seconds): Promise<Measurement> => {
		await db.query('SELECT pg_stat_statements_reset()');
		let next = 0;
		const sessionCookies = workload === 'new' ? undefined : cookies[variant];
		const result = await autocannon({
			url: `http://127.0.0.1:${ports[variant]}`,
			connections,
			duration,
			requests: [{
				method: 'GET',
				path: workload === 'read' ? '/' : `/${workload}`,
				setupRequest: (request) => sessionCookies === undefined
					? request
					: { ...request, headers: { ...request.headers, cookie: sessionCookies[next++ % sessionCookies.length] ?? '' } },
			}],
		});
		const { rows: [time] } = await db.query<{ microseconds: number | null }>(`
			SELECT 1000 * sum(total_plan_time + total_exec_time) / nullif(sum(calls), 0) AS microseconds
			FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench') AND query ~ 'http_sessions'`);
		return { requestsPerSecond: result.requests.average, p99: result.latency.p99, errors: result.errors + result.non2xx, serverMicroseconds: Number(time?.microseconds ?? Number.NaN) };
	};
	const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

	// Warm-up, unmeasured: JIT, Prisma's query compiler, pools, and the statements prepared on each connection.
	for (const workload of workloads) {
		for (const variant of variants) {
			await measure(variant, workload, 1);
		}
	}
	const results = new Map<string, Measurement[]>();
	for (let round = 0; round < rounds; round++) {
		for (const workload of workloads) {
			// Alternate which variant runs first, so that neither always meets warm caches.
			for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
				const key = `${workload}/${variant}`;
				results.set(key, [...results.get(key) ?? [], await measure(variant, workload)]);
			}
		}
	}

	console.log(`Prepared statements: ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, PostgreSQL ${version}, `
		+ `${connections} connections, ${rounds} interleaved rounds of ${seconds} s per cell (medians)\n`);
	console.log('| workload | prepared req/s | unprepared req/s | ratio | prepared p99 ms | unprepared p99 ms | PostgreSQL µs/statement prepared | unprepared | errors |');
	console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
	for (const workload of workloads) {
		const prepared = results.get(`${workload}/prepared`) ?? [];
		const unprepared = results.get(`${workload}/unprepared`) ?? [];
		const rps = (runs: Measurement[]) => median(runs.map((run) => run.requestsPerSecond));
		console.log(`| ${workload} | ${rps(prepared).toFixed(0)} | ${rps(unprepared).toFixed(0)} | ${(rps(prepared) / rps(unprepared)).toFixed(2)} `
			+ `| ${median(prepared.map((run) => run.p99)).toFixed(1)} | ${median(unprepared.map((run) => run.p99)).toFixed(1)} `
			+ `| ${median(prepared.map((run) => run.serverMicroseconds)).toFixed(0)} | ${median(unprepared.map((run) => run.serverMicroseconds)).toFixed(0)} `
			+ `| ${[...prepared, ...unprepared].reduce((sum, run) => sum + run.errors, 0)} |`);
	}

	for (const child of children) {
		child.kill('SIGTERM');
	}
	await Promise.all(children.map((child) => new Promise((resolve) => child.once('exit', resolve))));
	await db.end();
	await admin.end();
	await server.stop();
}
