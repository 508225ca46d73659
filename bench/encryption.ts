// `npx tsx bench/encryption.ts`: the cost of `encryptionKeys`. Two app servers on one database,
// each its own process, the same Koa app and a session of five fields (user id, e-mail, CSRF
// token, cart, language), one with encryption off and one with it on; read (`/`), write (one
// field changed, `/write`) and new (five fields, no cookie, `/new`) under autocannon, in
// interleaved rounds. Prints req/s and app CPU µs per request of each, and their ratios, measured
// in one run (compare those, never req/s across runs). About 90 s with the defaults.
//
// Environment: BENCH_SECONDS (default 3), BENCH_ROUNDS (default 3), BENCH_CONNECTIONS (default
// 16), BENCH_SOURCE ("dist", the default: `npm run build` first; or "src" through tsx).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import Koa from 'koa';
import session from 'koa-session';
import { serveUntilTerminated } from '../scripts/serve-until-terminated.js';
import { buildPackage, median, processCpuMicros, requestsWith, sessionCookies, startDatabase } from './harness.js';

const workloads = ['read', 'write', 'new'] as const;
type Workload = typeof workloads[number];
const modes = ['off', 'on'] as const;
type Mode = typeof modes[number];

if (process.argv[2] === 'serve') {
	await serve(process.argv[3] === 'on');
} else {
	await run();
}

async function serve(encrypted: boolean): Promise<void> {
	const { PgStore } = (process.env['BENCH_SOURCE'] === 'src'
		? await import('../src/index.js')
		: await import('../dist/index.js' as string)) as typeof import('../src/index.js');
	const store = new PgStore({
		connectionString: process.env['BENCH_DATABASE_URL'] ?? '',
		cleanupInterval: 0,
		...encrypted ? { encryptionKeys: ['a benchmark data secret of at least 32 bytes', 'an older benchmark data secret of 32 bytes'] } : {},
	});
	const app = new Koa();
	app.keys = ['a benchmark secret of at least thirty-two bytes'];
	app.use(session({ store, maxAge: 3_600_000 }, app));
	app.use((ctx) => {
		const current = ctx.session;
		if (current === null) {
			return;
		}
		if (ctx.path === '/write') {
			current['views'] = Number(current['views'] ?? 0) + 1;
		}
		if (ctx.path === '/new' || current['userId'] === undefined) {
			Object.assign(current, {
				userId: 'user-4711',
				email: 'alice@example.com',
				csrf: 'q7YbS2nGx4Vd1cF0pLk9ZwRj',
				cart: [{ sku: 'A-100', quantity: 2 }, { sku: 'B-200', quantity: 1 }],
				lang: 'en',
			});
		}
		ctx.body = { views: current['views'] ?? 0 };
	});
	await serveUntilTerminated(app, store);
}

async function run(): Promise<void> {
	const seconds = Number(process.env['BENCH_SECONDS'] ?? 3);
	const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
	const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 16);
	buildPackage();
	const database = await startDatabase({ statementStats: true });
	const servers = new Map<Mode, { child: ChildProcess; port: number }>();
	for (const mode of modes) {
		const child = spawn(process.execPath, ['--import=tsx', 'bench/encryption.ts', 'serve', mode], {
			env: { ...process.env, BENCH_DATABASE_URL: database.url },
			stdio: ['ignore', 'pipe', 'inherit'],
		});
		const first = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next();
		if (first.done === true) {
			throw new Error(`The ${mode} server exited before listening`);
		}
		servers.set(mode, { child, port: Number(first.value) });
	}
	const cookies = new Map<Mode, string[]>();
	for (const [mode, { port }] of servers) {
		cookies.set(mode, await sessionCookies(port, 100));
	}
	const writeCount = async () => {
		const { rows: [row] } = await database.pool.query<{ writes: string }>(`SELECT coalesce(sum(calls), 0) AS writes FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench') AND query ~* '^\\s*(insert|update|delete|with)' AND query NOT ILIKE '%pg_stat_statements%'`);
		return Number(row?.writes ?? 0);
	};
	const measure = async (mode: Mode, workload: Workload, duration: number) => {
		const { child, port } = servers.get(mode)!;
		await database.pool.query('SELECT pg_stat_statements_reset()');
		const before = processCpuMicros(child.pid);
		const result = await autocannon({
			url: `http://127.0.0.1:${port}`,
			connections,
			duration,
			requests: requestsWith(workload === 'read' ? '/' : `/${workload}`, workload === 'new' ? undefined : cookies.get(mode)),
		});
		const after = processCpuMicros(child.pid);
		const writes = await writeCount();
		return {
			writes: writes / result.requests.total,
			requestsPerSecond: result.requests.average,
			appCpu: before === undefined || after === undefined ? Number.NaN : (after - before) / result.requests.total,
			errors: result.errors + result.non2xx,
		};
	};
	for (const workload of workloads) {
		for (const mode of modes) {
			await measure(mode, workload, 1);
		}
	}
	const results = new Map<string, Awaited<ReturnType<typeof measure>>[]>();
	for (let round = 0; round < rounds; round++) {
		for (const workload of workloads) {
			// Alternate which mode runs first, so neither always gets the warmer machine.
			for (const mode of round % 2 === 0 ? modes : [...modes].reverse()) {
				const key = `${workload}/${mode}`;
				results.set(key, [...results.get(key) ?? [], await measure(mode, workload, seconds)]);
			}
		}
	}
	console.log(`encryptionKeys off vs on — Node ${process.version}, PostgreSQL ${database.version}, ${connections} connections, `
		+ `${rounds} interleaved rounds of ${seconds} s, a session of 5 fields\n`);
	console.log('| workload | req/s off | req/s on | on ÷ off | app CPU µs/req off | on | on − off | writes/req off | on | errors |');
	console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
	for (const workload of workloads) {
		const of = (mode: Mode, pick: (m: Awaited<ReturnType<typeof measure>>) => number) => median((results.get(`${workload}/${mode}`) ?? []).map(pick));
		const [off, on] = modes.map((mode) => of(mode, (m) => m.requestsPerSecond));
		const [cpuOff, cpuOn] = modes.map((mode) => of(mode, (m) => m.appCpu));
		const [writesOff, writesOn] = modes.map((mode) => of(mode, (m) => m.writes));
		const errors = modes.reduce((sum, mode) => sum + (results.get(`${workload}/${mode}`) ?? []).reduce((total, m) => total + m.errors, 0), 0);
		console.log(`| ${workload} | ${off?.toFixed(0)} | ${on?.toFixed(0)} | ${((on ?? 0) / (off ?? 1)).toFixed(2)} `
			+ `| ${cpuOff?.toFixed(0)} | ${cpuOn?.toFixed(0)} | ${((cpuOn ?? 0) - (cpuOff ?? 0)) >= 0 ? '+' : ''}${((cpuOn ?? 0) - (cpuOff ?? 0)).toFixed(0)} | ${writesOff?.toFixed(2)} | ${writesOn?.toFixed(2)} | ${errors} |`);
	}
	for (const { child } of servers.values()) {
		child.kill('SIGTERM');
		await new Promise((resolve) => child.once('exit', resolve));
	}
	await database.close();
}
