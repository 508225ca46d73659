// `npm run bench`: koa-pgstore against a hand-written `pg` store (the baseline) and cookie-only
// koa-session (the ceiling), through one Koa app under HTTP load, in interleaved rounds; then a
// cleanup sweep of 1,000,000 expired rows among 100,000 live ones. Prints Markdown tables.
//
// Environment: BENCH_SECONDS (per measurement, default 3), BENCH_ROUNDS (default 3),
// BENCH_CONNECTIONS (default 8), BENCH_EXPIRED_ROWS (default 1000000), BENCH_LIVE_ROWS (default 100000).
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import pg from 'pg';
import { PgStore } from '../src/index.js';
import { startPostgres } from '../scripts/embedded-postgres.js';
import type { StoreKind } from './server.js';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 3);
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 8);
const expiredRows = Number(process.env['BENCH_EXPIRED_ROWS'] ?? 1_000_000);
const liveRows = Number(process.env['BENCH_LIVE_ROWS'] ?? 100_000);
const kinds: StoreKind[] = ['koa-pgstore', 'pg', 'cookie'];
const workloads = ['read', 'write', 'new', 'rolling'] as const;

const server = await startPostgres({ postgresFlags: ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all'] });
const admin = new pg.Client({ connectionString: server.url });
await admin.connect();
await admin.query('CREATE DATABASE bench');
const databaseUrl = server.url.replace(/\/postgres$/, '/bench');
const db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
await db.query('CREATE EXTENSION pg_stat_statements');
for (const name of (await readdir('prisma/migrations', { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort()) {
	await db.query(await readFile(`prisma/migrations/${name}/migration.sql`, 'utf8'));
}
const { rows: [{ version } = { version: '?' }] } = await db.query<{ version: string }>("SELECT current_setting('server_version') AS version");

const children: ChildProcess[] = [];
async function startServer(kind: StoreKind): Promise<{ plain: number; rolling: number }> {
	const child = spawn(process.execPath, ['--import=tsx', 'bench/server.ts', kind], {
		env: { ...process.env, BENCH_DATABASE_URL: databaseUrl },
		stdio: ['ignore', 'pipe', 'inherit'],
	});
	children.push(child);
	const [line] = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next().then((result) => [result.value as string]);
	return JSON.parse(line ?? '{}');
}

async function sessionCookies(port: number, count: number): Promise<string[]> {
	return Promise.all(Array.from({ length: count }, async () => {
		const response = await fetch(`http://127.0.0.1:${port}/write`);
		return response.headers.getSetCookie().map((cookie) => cookie.split(';')[0]).join('; ');
	}));
}

async function statementCounts(): Promise<{ statements: number; writes: number }> {
	const { rows: [row] } = await db.query<{ statements: string; writes: string }>(`
		SELECT coalesce(sum(calls), 0) AS statements,
		       coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*(insert|update|delete)'), 0) AS writes
		FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench') AND query NOT ILIKE '%pg_stat_statements%'`);
	return { statements: Number(row?.statements ?? 0), writes: Number(row?.writes ?? 0) };
}

// GETs of `path`, each with the next of `cookies` (a session per cookie), or with none.
function requestsWith(path: string, cookies: string[] | undefined): autocannon.Request[] {
	let next = 0;
	return [{
		method: 'GET',
		path,
		setupRequest: (request) => cookies === undefined
			? request
			: { ...request, headers: { ...request.headers, cookie: cookies[next++ % cookies.length] ?? '' } },
	}];
}

interface Measurement { requestsPerSecond: number; p50: number; p99: number; requests: number; statements: number; writes: number; errors: number }

async function measure(port: number, path: string, cookies: string[] | undefined, duration = seconds): Promise<Measurement> {
	await db.query('SELECT pg_stat_statements_reset()');
	const result = await autocannon({ url: `http://127.0.0.1:${port}`, connections, duration, requests: requestsWith(path, cookies) });
	const counts = await statementCounts();
	return {
		requestsPerSecond: result.requests.average,
		p50: result.latency.p50,
		p99: result.latency.p99,
		requests: result.requests.total,
		statements: counts.statements / result.requests.total,
		writes: counts.writes / result.requests.total,
		errors: result.errors + result.non2xx,
	};
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

console.log(`koa-pgstore benchmark — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, PostgreSQL ${version}, `
	+ `${connections} connections, ${rounds} interleaved rounds of ${seconds} s per cell\n`);

const ports = Object.fromEntries(await Promise.all(kinds.map(async (kind) => [kind, await startServer(kind)] as const))) as Record<StoreKind, { plain: number; rolling: number }>;
const cookies = Object.fromEntries(await Promise.all(kinds.map(async (kind) => [kind, await sessionCookies(ports[kind].plain, 100)] as const))) as Record<StoreKind, string[]>;

// Warm-up, unmeasured: JIT, Prisma's query compiler, connection pools.
for (const workload of workloads) {
	for (const kind of kinds) {
		const port = workload === 'rolling' ? ports[kind].rolling : ports[kind].plain;
		await measure(port, workload === 'write' ? '/write' : workload === 'new' ? '/new' : '/', workload === 'new' ? undefined : cookies[kind], 1);
	}
}

const results = new Map<string, Measurement[]>();
for (let round = 0; round < (process.env['BENCH_ONLY_CLEANUP'] ? 0 : rounds); round++) {
	for (const workload of workloads) {
		// Rotate the order so that no store always runs first (warm caches) or last.
		const order = kinds.map((_, index) => kinds[(index + round) % kinds.length]!);
		for (const kind of order) {
			const port = workload === 'rolling' ? ports[kind].rolling : ports[kind].plain;
			const path = workload === 'write' ? '/write' : workload === 'new' ? '/new' : '/';
			const measurement = await measure(port, path, workload === 'new' ? undefined : cookies[kind]);
			const key = `${workload}/${kind}`;
			results.set(key, [...results.get(key) ?? [], measurement]);
		}
	}
}

console.log('| workload | store | req/s | p50 ms | p99 ms | × pg baseline | statements/req | writes/req | errors |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const workload of workloads) {
	const baseline = median((results.get(`${workload}/pg`) ?? []).map((m) => m.requestsPerSecond));
	for (const kind of kinds) {
		const runs = results.get(`${workload}/${kind}`) ?? [];
		const rps = median(runs.map((m) => m.requestsPerSecond));
		console.log(`| ${workload} | ${kind} | ${rps.toFixed(0)} | ${median(runs.map((m) => m.p50)).toFixed(1)} | ${median(runs.map((m) => m.p99)).toFixed(1)} | ${(rps / baseline).toFixed(2)} | ${kind === 'cookie' ? '—' : median(runs.map((m) => m.statements)).toFixed(2)} | ${kind === 'cookie' ? '—' : median(runs.map((m) => m.writes)).toFixed(2)} | ${runs.reduce((sum, m) => sum + m.errors, 0)} |`);
	}
}

// Cleanup: expired rows among live ones, swept while the app serves reads.
console.log(`\nCleanup: ${expiredRows.toLocaleString('en')} expired rows among ${liveRows.toLocaleString('en')} live ones, batches of 1000`);
await db.query(`
	INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
	SELECT md5('expired' || n), '{"_expire": 0}'::jsonb, now(), now(), now() - interval '1 hour' FROM generate_series(1, $1) AS n
	UNION ALL
	SELECT md5('live' || n), '{"views": 1}'::jsonb, now(), now(), now() + interval '1 day' FROM generate_series(1, $2) AS n`,
[expiredRows, liveRows]);
await db.query('VACUUM ANALYZE http_sessions');
const readsWithout = await measure(ports['koa-pgstore'].plain, '/', cookies['koa-pgstore']);
const sweeper = new PgStore({ connectionString: databaseUrl, cleanupInterval: 0 });
await db.query('SELECT pg_stat_statements_reset()');
// Reads run for exactly as long as the sweep does.
let readLoad: autocannon.Instance | undefined;
const readsDone = new Promise<autocannon.Result>((resolve, reject) => {
	readLoad = autocannon({
		url: `http://127.0.0.1:${ports['koa-pgstore'].plain}`,
		connections,
		duration: 3_600,
		requests: requestsWith('/', cookies['koa-pgstore']),
	}, (error, result) => (error ? reject(error) : resolve(result)));
});
const report = await sweeper.cleanup({ batchSize: 1000 }).finally(() => readLoad?.stop());
const readsDuring = await readsDone;
const { rows: [longest] } = await db.query<{ max_ms: number; calls: string }>(
	`SELECT max(max_exec_time) AS max_ms, sum(calls) AS calls FROM pg_stat_statements WHERE query ~* '^\\s*delete'`,
);
console.log('| sweep s | rows deleted | rows/s | batches | longest DELETE ms | read p99 ms without | read p99 ms during | ratio | read req/s without | during |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
console.log(`| ${(report.ms / 1000).toFixed(1)} | ${report.deleted} | ${(report.deleted / (report.ms / 1000)).toFixed(0)} | ${report.batches} | ${Number(longest?.max_ms ?? 0).toFixed(1)} | ${readsWithout.p99} | ${readsDuring.latency.p99} | ${(readsDuring.latency.p99 / readsWithout.p99).toFixed(2)} | ${readsWithout.requestsPerSecond.toFixed(0)} | ${readsDuring.requests.average.toFixed(0)} |`);

await sweeper.close();
for (const child of children) {
	child.kill('SIGTERM');
}
await Promise.all(children.map((child) => new Promise((resolve) => child.once('exit', resolve))));
await db.end();
await admin.end();
await server.stop();
