// `npm run bench`: koa-pgstore against a hand-written `pg` store (the baseline), koa-redis (the
// store most Koa apps use) and an in-process Map store (the ceiling of any external store:
// koa-session's own cost), through one Koa app under HTTP load, in interleaved rounds, at each
// connection count; then the noisy-neighbour workload (bench/noisy.ts: users' saves while a tenth
// of the clients send hostile ones); then the two-tabs workload (lost field updates when two
// requests of one session save at once); then a cleanup sweep of 1,000,000 expired rows among
// 100,000 live ones. Prints Markdown tables: each store against the `pg` store, the Map ceiling and
// koa-redis, with the spread of the per-round ratios, and each app server's RSS. With the defaults
// on 2 cores, before the noisy-neighbour workload: 7.6 minutes at a load average of 16 (the sweep
// alone took 98 s), less on a quiet machine. The noisy-neighbour workload adds one cell per store,
// connection count and phase (12 by default) of BENCH_NOISY_SECONDS plus a second's lead of the
// attackers and the wait for the cell's requests to finish. A cell of the interleaved rounds takes
// BENCH_SECONDS and up to a second more (ANALYZE and the statistics queries around it; a second at
// a load average of 20), and each store adds a warm-up cell of 1 s per workload.
// The noisy-neighbour workload alone:
//   BENCH_WORKLOADS=noisy BENCH_TABS_SESSIONS=0 BENCH_EXPIRED_ROWS=0 BENCH_STORES=koa-pgstore,pg npm run bench
// This checkout against an older one (its dist/ built there), beside koa-redis, read/write/new only:
//   BENCH_BASELINE=../old BENCH_STORES=koa-pgstore,koa-pgstore-prisma,koa-redis,map,pg BENCH_WORKLOADS=read,write,new \
//   BENCH_TABS_SESSIONS=0 BENCH_EXPIRED_ROWS=0 npm run bench
// Compare ratios measured in one run, never req/s across runs; app and PostgreSQL CPU per request
// (from /proc, Linux) depend much less on what else the machine runs than req/s do.
//
// Environment (lists are comma-separated):
//   BENCH_SECONDS         seconds per measurement (default 3)
//   BENCH_ROUNDS          interleaved rounds; each cell reports the median, the ratio tables also the
//                         lowest and highest round (default 3)
//   BENCH_CONNECTIONS     connection counts, each workload runs at each (default "8,32")
//   BENCH_STORES          stores to run (default "koa-pgstore,pg,map"), among:
//                           koa-pgstore          the store on its own client (`connectionString`), from dist/
//                           koa-pgstore-prisma   the store on the app's Prisma client (`prisma`): the package's
//                                                generated PrismaClient on @prisma/adapter-pg, pool max 10 as the
//                                                store's own (bench/server.ts)
//                           pg                   a hand-written one-statement store on `pg` (bench/naive-pg-store.ts)
//                           pg-prepared          the floor of a PostgreSQL store: one prepared single-row statement
//                                                per operation, a plain UPDATE for a session just read (same file)
//                           koa-redis            koa-redis on a throwaway redis-server without persistence, started
//                                                and stopped by the bench; skipped with a note when redis-server is
//                                                not on PATH or koa-redis is not installed
//                           map                  an in-process Map (bench/map-store.ts), the ceiling
//                           cookie               koa-session's cookie-only sessions
//                           koa-pgstore-baseline, koa-pgstore-prisma-baseline: see BENCH_BASELINE
//   BENCH_BASELINE        a checkout of another (older) commit with its node_modules, where `npm run build` has
//                         run: adds koa-pgstore-baseline after koa-pgstore (its dist/index.js, same options) and
//                         koa-pgstore-prisma-baseline after koa-pgstore-prisma (its store on the same app client as
//                         koa-pgstore-prisma), in the same interleaved rounds. Naming either in BENCH_STORES runs
//                         just those named. The older build must accept the options bench/server.ts passes
//                         (`preparedStatements` and `touchAfter`: any commit since c1ee433)
//   BENCH_PREPARED        koa-pgstore with prepared statements: "1" (default, as the store's default
//                         `preparedStatements: true`), "0", or "1,0" for both side by side in one run,
//                         with a table of their ratio
//   BENCH_WORKLOADS       HTTP workloads (default "read,write,new,rolling,noisy"); "noisy" is the
//                         noisy-neighbour workload, run after the others with the variables below
//   BENCH_NOISY_SECONDS   seconds the users are measured per noisy cell (default 5)
//   BENCH_NOISY_ROUNDS    interleaved rounds of the noisy cells; each reports the median (default 1)
//   BENCH_NOISY_PHASES    phases (default "control,numbers,hot"; also "quiet": users without attackers)
//   BENCH_NOISY_STORES    stores, among those of BENCH_STORES (default: koa-pgstore and pg, those of them
//                         BENCH_STORES runs; koa-pgstore names both BENCH_PREPARED variants; also "map" and the
//                         other kinds by their names)
//   BENCH_NOISY_BYTES     bytes of each attack body, string in control, `[1e308,…]` in numbers (default 1000000)
//   BENCH_NOISY_HOT_LOOPS loops saving a counter into the hot session beside the attacker clients (default 150)
//   BENCH_TABS_SESSIONS   sessions of the two-tabs workload, 0 skips it (default 200)
//   BENCH_TABS_ROUNDS     pairs of concurrent requests per session (default 5)
//   BENCH_EXPIRED_ROWS    expired rows for the cleanup sweep, 0 skips it (default 1000000)
//   BENCH_LIVE_ROWS       live rows beside them (default 100000)
//   BENCH_TOUCH_AFTER     koa-pgstore's `touchAfter` in ms (default 60000; read by bench/server.ts)
//   BENCH_PIN_POSTGRES    "1": PostgreSQL on a CPU of its own, the app servers and the load generator on the
//                         others (Linux, taskset), so that ratios to the Map ceiling leave out PostgreSQL's
//                         share of the machine (default "0": all on the same CPUs); redis-server too, on PostgreSQL's
//   BENCH_FILLFACTOR      the session table's fillfactor, set before the run (default: PostgreSQL's, 100)
//   BENCH_SOURCE          "dist" (default: `npm run build` first, then the compiled package) or "src" (through tsx)
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { PgStore } from '../src/index.js';
import {
	buildPackage, koaRedisUnavailable, listFromEnv, median, processCpuMicros, processMemory, requestsWith, sessionCookies,
	startAppServer, startDatabase, startRedis, type AppServer, type ProcessMemory,
} from './harness.js';
import { pgStoresTable } from './naive-pg-store.js';
import { attackersAmong, noisyPhases, runNoisyNeighbours, type NoisyPhase } from './noisy.js';
import { inPostgres, isBaseline, storeKinds, type StoreKind } from './protocol.js';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 3);
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
const connectionCounts = listFromEnv('BENCH_CONNECTIONS', '8,32').map(Number);
const expiredRows = Number(process.env['BENCH_EXPIRED_ROWS'] ?? 1_000_000);
const liveRows = Number(process.env['BENCH_LIVE_ROWS'] ?? 100_000);
const tabSessions = Number(process.env['BENCH_TABS_SESSIONS'] ?? 200);
const tabRounds = Number(process.env['BENCH_TABS_ROUNDS'] ?? 5);
const allWorkloads = ['read', 'write', 'new', 'rolling'] as const;
type Workload = typeof allWorkloads[number];
const selectedWorkloads = listFromEnv('BENCH_WORKLOADS', [...allWorkloads, 'noisy'].join(','));
const workloads = selectedWorkloads.filter((name) => name !== 'noisy') as Workload[];
const noisy = selectedWorkloads.includes('noisy');
const noisySeconds = Number(process.env['BENCH_NOISY_SECONDS'] ?? 5);
const noisyRounds = Number(process.env['BENCH_NOISY_ROUNDS'] ?? 1);
const noisyBytes = Number(process.env['BENCH_NOISY_BYTES'] ?? 1_000_000);
const noisyHotLoops = Number(process.env['BENCH_NOISY_HOT_LOOPS'] ?? 150);
const noisyPhasesRun = listFromEnv('BENCH_NOISY_PHASES', 'control,numbers,hot') as NoisyPhase[];
const noisyStoresChosen = process.env['BENCH_NOISY_STORES'] !== undefined;
const noisyStores = listFromEnv('BENCH_NOISY_STORES', 'koa-pgstore,pg');
const prepared = listFromEnv('BENCH_PREPARED', '1');
const baselineDirectory = process.env['BENCH_BASELINE'] ? resolve(process.env['BENCH_BASELINE']) : undefined;
const storeNames = listFromEnv('BENCH_STORES', 'koa-pgstore,pg,map');
const koaRedisMissing = storeNames.includes('koa-redis') ? koaRedisUnavailable() : undefined;
if (koaRedisMissing !== undefined) {
	console.log(`koa-redis skipped: ${koaRedisMissing}`);
}
// BENCH_BASELINE runs the older build beside each koa-pgstore kind it has, unless BENCH_STORES
// names the baseline kinds it wants.
const baselineNamed = storeNames.some((name) => name.endsWith('-baseline'));
const baselineOf: Readonly<Record<string, StoreKind>> = { 'koa-pgstore': 'koa-pgstore-baseline', 'koa-pgstore-prisma': 'koa-pgstore-prisma-baseline' };
const kinds: StoreKind[] = storeNames.flatMap((name): StoreKind[] => {
	if (name === 'koa-redis' && koaRedisMissing !== undefined) {
		return [];
	}
	const variants = name === 'koa-pgstore'
		? prepared.map((flag): StoreKind => (flag === '1' ? 'koa-pgstore' : 'koa-pgstore-unprepared'))
		: [name as StoreKind];
	const baseline = baselineOf[name];
	return baselineDirectory !== undefined && !baselineNamed && baseline !== undefined ? [...variants, baseline] : variants;
});
// BENCH_STORES and BENCH_NOISY_STORES name both BENCH_PREPARED variants `koa-pgstore`.
const storeNameOf = (kind: StoreKind) => (kind === 'koa-pgstore-unprepared' ? 'koa-pgstore' : kind);

for (const [name, value] of Object.entries({ seconds, rounds, expiredRows, liveRows, tabSessions, tabRounds, noisyHotLoops })) {
	if (!Number.isInteger(value) || value < 0) {
		throw new TypeError(`Expected ${name} to be an integer >= 0, got ${value}`);
	}
}
if (connectionCounts.length === 0 || connectionCounts.some((count) => !Number.isInteger(count) || count < 1)) {
	throw new TypeError(`Expected BENCH_CONNECTIONS to be a list of integers >= 1, got ${process.env['BENCH_CONNECTIONS']}`);
}
for (const flag of prepared) {
	if (flag !== '0' && flag !== '1') {
		throw new TypeError(`Expected BENCH_PREPARED to be "1", "0" or "1,0", got ${process.env['BENCH_PREPARED']}`);
	}
}
for (const kind of kinds) {
	if (!storeKinds.includes(kind)) {
		throw new TypeError(`Expected BENCH_STORES to name stores among ${storeKinds.filter((name) => name !== 'koa-pgstore-unprepared').join(', ')}, got ${kind}`);
	}
	if (isBaseline(kind) && baselineDirectory === undefined) {
		throw new TypeError(`Expected BENCH_BASELINE, the checkout of an older build, for ${kind} in BENCH_STORES`);
	}
}
if (baselineDirectory !== undefined && !existsSync(join(baselineDirectory, 'dist', 'index.js'))) {
	throw new TypeError(`Expected BENCH_BASELINE to be a checkout with node_modules and a built dist/ (\`npm ci && npm run build\` there), got ${baselineDirectory}: it has no dist/index.js`);
}
for (const workload of workloads) {
	if (!allWorkloads.includes(workload)) {
		throw new TypeError(`Expected BENCH_WORKLOADS to name workloads among ${allWorkloads.join(', ')}, noisy, got ${workload}`);
	}
}
const noisyKinds = noisy ? kinds.filter((kind) => noisyStores.includes(storeNameOf(kind))) : [];
if (noisy) {
	for (const [name, value] of Object.entries({ noisySeconds, noisyRounds })) {
		if (!Number.isInteger(value) || value < 1) {
			throw new TypeError(`Expected ${name} to be an integer >= 1, got ${value}`);
		}
	}
	// bench/server.ts reads bodies up to 16 MiB.
	if (!Number.isInteger(noisyBytes) || noisyBytes < 16 || noisyBytes > 8_000_000) {
		throw new TypeError(`Expected BENCH_NOISY_BYTES to be an integer from 16 to 8000000, got ${process.env['BENCH_NOISY_BYTES']}`);
	}
	if (noisyPhasesRun.length === 0 || noisyPhasesRun.some((phase) => !noisyPhases.includes(phase))) {
		throw new TypeError(`Expected BENCH_NOISY_PHASES to name phases among ${noisyPhases.join(', ')}, got ${process.env['BENCH_NOISY_PHASES']}`);
	}
	for (const name of noisyStoresChosen ? noisyStores : []) {
		if (name === 'koa-redis' && koaRedisMissing !== undefined) {
			continue;
		}
		if (name === 'cookie' || !kinds.some((kind) => storeNameOf(kind) === name)) {
			throw new TypeError(`Expected BENCH_NOISY_STORES to name stores of BENCH_STORES other than cookie, got ${name}`);
		}
	}
	if (connectionCounts.some((count) => count - attackersAmong(count) < 1)) {
		throw new TypeError(`Expected BENCH_CONNECTIONS of at least 2 for the noisy-neighbour workload (users and attackers), got ${process.env['BENCH_CONNECTIONS']}`);
	}
}

const startedAt = performance.now();
buildPackage();
const database = await startDatabase({ statementStats: true, pinPostgres: process.env['BENCH_PIN_POSTGRES'] === '1' });
const db = database.pool;
const redis = kinds.includes('koa-redis') ? await startRedis() : undefined;
if (redis?.pid !== undefined) {
	database.pinBeside(redis.pid);
}

async function statementCounts(): Promise<{ statements: number; writes: number }> {
	const { rows: [row] } = await db.query<{ statements: string; writes: string }>(`
		SELECT coalesce(sum(calls), 0) AS statements,
		       coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*(insert|update|delete)' OR query ~* '^\\s*with .*(insert into|update|delete from) '), 0) AS writes
		FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench') AND query NOT ILIKE '%pg_stat_statements%'`);
	return { statements: Number(row?.statements ?? 0), writes: Number(row?.writes ?? 0) };
}

// Row updates of the session table so far, and how many were HOT (in place). Backends report
// them about once a second while busy, so a cell's share is close, not exact.
// The `pg` stores write a table of their own (bench/naive-pg-store.ts).
async function rowUpdates(kind: StoreKind): Promise<{ updates: number; hot: number }> {
	const { rows: [row] } = await db.query<{ updates: string; hot: string }>(
		'SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = $1', [kind.startsWith('pg') ? pgStoresTable : 'http_sessions']);
	return { updates: Number(row?.updates ?? 0), hot: Number(row?.hot ?? 0) };
}

interface Measurement {
	requestsPerSecond: number; p50: number; p99: number; requests: number; statements: number; writes: number; errors: number;
	/** µs of CPU per request of the app server's process, and of all PostgreSQL's, redis-server's for koa-redis (NaN off Linux). */
	appCpu: number; databaseCpu: number;
	/** Share of the session table's row updates that were HOT (NaN: none). */
	hot: number;
}

async function measure(server: AppServer, workload: Workload, connections: number, duration = seconds): Promise<Measurement> {
	// The new-session cells add ~100,000 rows within seconds, far faster than autovacuum analyzes a
	// table (it looks once a minute). A prepared statement's generic plan, made while the table had
	// a few pages, scans the whole table (EXPLAIN: a 12-row UPDATE read 1,541 pages by sequential
	// scan instead of 11 index lookups) until an ANALYZE invalidates it. Each cell starts from
	// current statistics, as a table autovacuum keeps up with does.
	await db.query(`ANALYZE http_sessions, ${pgStoresTable}`);
	await db.query('SELECT pg_stat_statements_reset()');
	const databaseCpuMicros = () => (server.kind === 'koa-redis' ? redis?.cpuMicros() : database.cpuMicros());
	const appBefore = processCpuMicros(server.child.pid);
	const databaseBefore = databaseCpuMicros();
	const updatesBefore = await rowUpdates(server.kind);
	const result = await autocannon({
		url: `http://127.0.0.1:${workload === 'rolling' ? server.ports.rolling : server.ports.plain}`,
		connections,
		duration,
		requests: requestsWith(pathOf(workload), workload === 'new' ? undefined : cookies.get(server.kind)),
	});
	const appAfter = processCpuMicros(server.child.pid);
	const databaseAfter = databaseCpuMicros();
	const counts = await statementCounts();
	const updatesAfter = await rowUpdates(server.kind);
	const perRequest = (before: number | undefined, after: number | undefined) => (before === undefined || after === undefined
		? Number.NaN
		: (after - before) / result.requests.total);
	return {
		requestsPerSecond: result.requests.average,
		p50: result.latency.p50,
		p99: result.latency.p99,
		requests: result.requests.total,
		statements: counts.statements / result.requests.total,
		writes: counts.writes / result.requests.total,
		errors: result.errors + result.non2xx,
		appCpu: perRequest(appBefore, appAfter),
		databaseCpu: perRequest(databaseBefore, databaseAfter),
		hot: (updatesAfter.hot - updatesBefore.hot) / (updatesAfter.updates - updatesBefore.updates),
	};
}

const cpu = os.cpus();
const load = () => os.loadavg().map((value) => value.toFixed(1)).join(' ');
console.log(`koa-pgstore benchmark — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, PostgreSQL ${database.version}, `
	+ `${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, load average at start ${load()}`);
console.log(`${connectionCounts.join(' and ')} connections, ${rounds} interleaved rounds of ${seconds} s per cell; `
	+ `the app server of each store is its own process, the load generator another, PostgreSQL on the same machine (${database.placement}); `
	+ `koa-pgstore from ${process.env['BENCH_SOURCE'] === 'src' ? 'src/ through tsx' : 'dist/ (compiled by tsc)'}`);
if (kinds.some((kind) => kind.startsWith('koa-pgstore-prisma'))) {
	console.log(`koa-pgstore-prisma: the store given the app's client, this package's generated PrismaClient (from ${process.env['BENCH_SOURCE'] === 'src' ? 'src/' : 'dist/'}) `
		+ 'on @prisma/adapter-pg with a pool of 10, as the store\'s own');
}
if (baselineDirectory !== undefined) {
	// Only a checkout's own .git: git would otherwise name the commit of a repository around the folder.
	const commit = existsSync(join(baselineDirectory, '.git'))
		? spawnSync('git', ['-C', baselineDirectory, 'log', '-1', '--format=%h %ad %s', '--date=short'], { encoding: 'utf8' })
		: undefined;
	console.log(`*-baseline: koa-pgstore from ${baselineDirectory}/dist/${commit?.status === 0 ? `, commit ${commit.stdout.trim()}` : ''}`);
}
if (redis !== undefined) {
	const { version } = JSON.parse(readFileSync('node_modules/koa-redis/package.json', 'utf8')) as { version?: string };
	console.log(`koa-redis ${version ?? '?'} on redis-server ${redis.version}, 127.0.0.1, without persistence`);
}
console.log();

const servers = new Map<StoreKind, AppServer>();
// The 100 sessions each store's read, write and rolling workloads cycle through.
const cookies = new Map<StoreKind, string[]>();
const pathOf = (workload: Workload) => (workload === 'write' ? '/write' : workload === 'new' ? '/new' : '/');
// Every server gets both: a server reads only what its kind needs.
const serverEnv: Record<string, string> = {
	...redis === undefined ? {} : { BENCH_REDIS_PORT: String(redis.port) },
	...baselineDirectory === undefined ? {} : { BENCH_BASELINE: baselineDirectory },
};
for (const kind of kinds) {
	servers.set(kind, await startAppServer(kind, database.url, { env: serverEnv }));
}
for (const kind of kinds) {
	cookies.set(kind, await sessionCookies(servers.get(kind)!.ports.plain, 100));
}

// Warm-up, unmeasured: JIT, Prisma's query compiler, connection pools.
for (const workload of workloads) {
	for (const kind of kinds) {
		await measure(servers.get(kind)!, workload, Math.max(...connectionCounts), 1);
	}
}

const results = new Map<string, Measurement[]>();
const cell = (workload: Workload, connections: number, kind: StoreKind) => `${workload}/${connections}/${kind}`;
for (let round = 0; round < (process.env['BENCH_ONLY_CLEANUP'] ? 0 : rounds); round++) {
	for (const connections of connectionCounts) {
		for (const workload of workloads) {
			// Rotate the order so that no store always runs first (warm caches) or last.
			const order = kinds.map((_, index) => kinds[(index + round) % kinds.length]!);
			for (const kind of order) {
				const measurement = await measure(servers.get(kind)!, workload, connections);
				const key = cell(workload, connections, kind);
				results.set(key, [...results.get(key) ?? [], measurement]);
			}
		}
	}
}
// Each app server's memory once all have served the same requests; the noisy-neighbour workload
// (megabyte bodies), two tabs and the sweep come to some stores only.
const memoryAfterRounds = new Map(kinds.map((kind) => [kind, processMemory(servers.get(kind)!.child.pid)]));
const redisMemoryAfterRounds = processMemory(redis?.pid);
const requestsPerSecond = (workload: Workload, connections: number, kind: StoreKind) => median((results.get(cell(workload, connections, kind)) ?? []).map((m) => m.requestsPerSecond));
const ratio = (value: number, reference: number) => (Number.isFinite(value) && Number.isFinite(reference) ? `${(value / reference).toFixed(2)}` : '—');

const medianOf = (workload: Workload, connections: number, kind: StoreKind, pick: (m: Measurement) => number) => median((results.get(cell(workload, connections, kind)) ?? []).map(pick));
const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : '—');

if (results.size > 0) {
	console.log(`Database CPU: all of PostgreSQL's processes${redis === undefined ? '' : ', redis-server\'s for koa-redis'}`);
	console.log('| workload | connections | store | req/s | p50 ms | p99 ms | × pg baseline | × Map ceiling | app CPU µs/req | database CPU µs/req | statements/req | writes/req | HOT updates % | errors |');
	console.log('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
	for (const workload of workloads) {
		for (const connections of connectionCounts) {
			const baseline = requestsPerSecond(workload, connections, 'pg');
			const ceiling = requestsPerSecond(workload, connections, 'map');
			for (const kind of kinds) {
				const runs = results.get(cell(workload, connections, kind)) ?? [];
				const rps = median(runs.map((m) => m.requestsPerSecond));
				const inDatabase = inPostgres(kind);
				const of = (pick: (m: Measurement) => number) => median(runs.map(pick));
				console.log(`| ${workload} | ${connections} | ${kind} | ${rps.toFixed(0)} | ${of((m) => m.p50).toFixed(1)} | ${of((m) => m.p99).toFixed(1)} `
					+ `| ${ratio(rps, baseline)} | ${ratio(rps, ceiling)} | ${fixed(of((m) => m.appCpu), 0)} | ${inDatabase || kind === 'koa-redis' ? fixed(of((m) => m.databaseCpu), 0) : '—'} `
					+ `| ${inDatabase ? of((m) => m.statements).toFixed(2) : '—'} | ${inDatabase ? of((m) => m.writes).toFixed(2) : '—'} | ${inDatabase && Number.isFinite(of((m) => m.hot)) ? (100 * of((m) => m.hot)).toFixed(0) : '—'} | ${runs.reduce((sum, m) => sum + m.errors, 0)} |`);
			}
		}
	}
	const ours = kinds.filter((kind) => kind.startsWith('koa-pgstore'));
	if (ours.length > 0 && (kinds.includes('pg') || kinds.includes('map'))) {
		console.log('\nkoa-pgstore in short: req/s as a multiple of the Map-store ceiling and of the `pg` baseline; '
			+ 'app CPU µs/req above the Map store (the Node cost of the store, much less sensitive to machine load than req/s)');
		console.log(`| workload | connections | ${ours.map((kind) => `${kind} × Map | ${kind} × pg | ${kind} app CPU above Map`).join(' | ')} |`);
		console.log(`| --- | ---: | ${ours.map(() => '---: | ---: | ---:').join(' | ')} |`);
		for (const workload of workloads) {
			for (const connections of connectionCounts) {
				const cells = ours.map((kind) => {
					const rps = requestsPerSecond(workload, connections, kind);
					const above = medianOf(workload, connections, kind, (m) => m.appCpu) - medianOf(workload, connections, 'map', (m) => m.appCpu);
					return `${ratio(rps, requestsPerSecond(workload, connections, 'map'))} | ${ratio(rps, requestsPerSecond(workload, connections, 'pg'))} | ${Number.isFinite(above) ? `${above >= 0 ? '+' : ''}${above.toFixed(0)} µs` : '—'}`;
				});
				console.log(`| ${workload} | ${connections} | ${cells.join(' | ')} |`);
			}
		}
	}
	// Each round's ratio pairs two cells of the same round, minutes apart at most: the spread across
	// rounds shows how far machine noise moves a ratio, so a gap between two stores smaller than
	// their spreads is not one.
	const roundRatios = (workload: Workload, connections: number, kind: StoreKind, reference: StoreKind) => {
		const references = results.get(cell(workload, connections, reference)) ?? [];
		return (results.get(cell(workload, connections, kind)) ?? [])
			.map((m, round) => m.requestsPerSecond / (references[round]?.requestsPerSecond ?? Number.NaN))
			.filter(Number.isFinite);
	};
	const withSpread = (ratios: readonly number[]) => (ratios.length === 0
		? '—'
		: `${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`);
	const columns = workloads.flatMap((workload) => connectionCounts.map((connections) => ({ workload, connections })));
	for (const [reference, name] of [['map', 'the Map ceiling\'s'], ['koa-redis', 'koa-redis\'s']] as const) {
		if (!kinds.includes(reference)) {
			continue;
		}
		console.log(`\nReq/s as a fraction of ${name}: each store's req/s over ${reference}'s in the same round, the median of ${rounds} round${rounds === 1 ? '' : 's'} `
			+ 'and (in parentheses) the lowest and highest round; columns are workload and connections');
		console.log(`| store | ${columns.map(({ workload, connections }) => `${workload} ${connections}`).join(' | ')} |`);
		console.log(`| --- | ${columns.map(() => '---:').join(' | ')} |`);
		for (const kind of kinds.filter((other) => other !== reference)) {
			console.log(`| ${kind} | ${columns.map(({ workload, connections }) => withSpread(roundRatios(workload, connections, kind, reference))).join(' | ')} |`);
		}
	}
	if (kinds.includes('koa-pgstore') && kinds.includes('koa-pgstore-unprepared')) {
		console.log('\nPrepared statements: koa-pgstore with `preparedStatements: true` (default) against `false`, same run');
		console.log('| workload | connections | prepared req/s | unprepared req/s | prepared ÷ unprepared | PostgreSQL CPU µs/req prepared | unprepared |');
		console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
		for (const workload of workloads) {
			for (const connections of connectionCounts) {
				const on = requestsPerSecond(workload, connections, 'koa-pgstore');
				const off = requestsPerSecond(workload, connections, 'koa-pgstore-unprepared');
				console.log(`| ${workload} | ${connections} | ${on.toFixed(0)} | ${off.toFixed(0)} | ${ratio(on, off)} `
					+ `| ${fixed(medianOf(workload, connections, 'koa-pgstore', (m) => m.databaseCpu), 0)} | ${fixed(medianOf(workload, connections, 'koa-pgstore-unprepared', (m) => m.databaseCpu), 0)} |`);
			}
		}
	}
}

if (noisyKinds.length > 0) {
	await runNoisyNeighbours({
		servers,
		kinds: noisyKinds,
		connectionCounts,
		phases: noisyPhasesRun,
		seconds: noisySeconds,
		rounds: noisyRounds,
		bytes: noisyBytes,
		hotLoops: noisyHotLoops,
		pool: db,
	});
}

// Two tabs: each pair of requests of one session loads it, changes a field of its own (`a` or
// `b`) and saves; bench/server.ts makes both load before either saves. Afterwards every session
// should count `a` and `b` once per pair; whatever is missing was erased by the other tab.
interface TabsResult { lostA: number; lostB: number; unpaired: number; errors: number; ms: number }

async function twoTabs(port: number, pairsInFlight: number): Promise<TabsResult> {
	const sessions = await sessionCookies(port, tabSessions);
	const result: TabsResult = { lostA: 0, lostB: 0, unpaired: 0, errors: 0, ms: 0 };
	let firstError: unknown;
	const tab = async (cookie: string, side: 'a' | 'b', pair: string) => {
		try {
			const response = await fetch(`http://127.0.0.1:${port}/tab?side=${side}&pair=${pair}`, { headers: { cookie } });
			const body = await response.json() as { paired?: boolean };
			if (!response.ok) {
				result.errors += 1;
			} else if (body.paired !== true) {
				result.unpaired += 1;
			}
		} catch (error) {
			result.errors += 1;
			firstError ??= error;
		}
	};
	const started = performance.now();
	let next = 0;
	await Promise.all(Array.from({ length: pairsInFlight }, async () => {
		for (let index = next++; index < sessions.length; index = next++) {
			const cookie = sessions[index]!;
			for (let round = 0; round < tabRounds; round++) {
				await Promise.all([tab(cookie, 'a', `${index}.${round}`), tab(cookie, 'b', `${index}.${round}`)]);
			}
		}
	}));
	result.ms = performance.now() - started;
	for (const cookie of sessions) {
		const response = await fetch(`http://127.0.0.1:${port}/tabs`, { headers: { cookie } });
		const { a, b } = await response.json() as { a: number; b: number };
		result.lostA += tabRounds - a;
		result.lostB += tabRounds - b;
	}
	if (firstError !== undefined) {
		console.error('two tabs: first failed request:', firstError);
	}
	return result;
}

const tabKinds = kinds.filter((kind) => kind !== 'cookie');
if (tabSessions > 0 && tabRounds > 0 && tabKinds.length > 0) {
	const pairsInFlight = Math.max(1, Math.floor(Math.max(...connectionCounts) / 2));
	console.log(`\nTwo tabs: ${tabSessions} sessions × ${tabRounds} pairs of concurrent requests (tab A increments \`a\`, tab B \`b\`; `
		+ `both load before either saves), ${pairsInFlight} pairs in flight. Expected per session: a = b = ${tabRounds}`);
	console.log('| store | field updates | lost `a` | lost `b` | lost | lost % | unpaired | errors | s |');
	console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
	for (const kind of tabKinds) {
		const tabs = await twoTabs(servers.get(kind)!.ports.plain, pairsInFlight);
		const updates = 2 * tabSessions * tabRounds;
		const lost = tabs.lostA + tabs.lostB;
		console.log(`| ${kind} | ${updates} | ${tabs.lostA} | ${tabs.lostB} | ${lost} | ${(100 * lost / updates).toFixed(1)} | ${tabs.unpaired} | ${tabs.errors} | ${(tabs.ms / 1000).toFixed(1)} |`);
	}
}

// Cleanup: expired rows among live ones, swept while the app serves reads.
const sweptKind = kinds.find((kind) => kind.startsWith('koa-pgstore'));
if (expiredRows > 0 && sweptKind !== undefined) {
	const connections = connectionCounts[0]!;
	const port = servers.get(sweptKind)!.ports.plain;
	console.log(`\nCleanup: ${expiredRows.toLocaleString('en')} expired rows among ${liveRows.toLocaleString('en')} live ones, batches of 1000, `
		+ `reads of ${sweptKind} at ${connections} connections`);
	await db.query(`
		INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		SELECT md5('expired' || n), '{"_expire": 0}'::jsonb, now(), now(), now() - interval '1 hour' FROM generate_series(1, $1) AS n
		UNION ALL
		SELECT md5('live' || n), '{"views": 1}'::jsonb, now(), now(), now() + interval '1 day' FROM generate_series(1, $2) AS n`,
	[expiredRows, liveRows]);
	await db.query('VACUUM ANALYZE http_sessions');
	const readsWithout = await measure(servers.get(sweptKind)!, 'read', connections);
	const sweeper = new PgStore({ connectionString: database.url, cleanupInterval: 0 });
	await db.query('SELECT pg_stat_statements_reset()');
	// Reads run for exactly as long as the sweep does.
	let readLoad: autocannon.Instance | undefined;
	const readsDone = new Promise<autocannon.Result>((resolve, reject) => {
		readLoad = autocannon({
			url: `http://127.0.0.1:${port}`,
			connections,
			duration: 3_600,
			requests: requestsWith('/', cookies.get(sweptKind)),
		}, (error, result) => (error ? reject(error) : resolve(result)));
	});
	const report = await sweeper.cleanup({ batchSize: 1000 }).finally(() => readLoad?.stop());
	const readsDuring = await readsDone;
	const { rows: [longest] } = await db.query<{ max_ms: number; calls: string }>(
		`SELECT max(max_exec_time) AS max_ms, sum(calls) AS calls FROM pg_stat_statements WHERE query ~* '^\\s*(delete|with deleted as)'`,
	);
	console.log('| sweep s | rows deleted | rows/s | batches | longest DELETE ms | read p99 ms without | read p99 ms during | ratio | read req/s without | during |');
	console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
	console.log(`| ${(report.ms / 1000).toFixed(1)} | ${report.deleted} | ${(report.deleted / (report.ms / 1000)).toFixed(0)} | ${report.batches} | ${Number(longest?.max_ms ?? 0).toFixed(1)} | ${readsWithout.p99} | ${readsDuring.latency.p99} | ${(readsDuring.latency.p99 / readsWithout.p99).toFixed(2)} | ${readsWithout.requestsPerSecond.toFixed(0)} | ${readsDuring.requests.average.toFixed(0)} |`);
	await sweeper.close();
}

// RSS counts shared pages (Node's binary, loaded libraries) in full in every process.
const mebibytes = (kibibytes: number | undefined) => (kibibytes === undefined || !Number.isFinite(kibibytes) ? '—' : (kibibytes / 1024).toFixed(0));
type MemoryRow = readonly [name: string, afterRounds: ProcessMemory | undefined, atEnd: ProcessMemory | undefined];
const memoryRows: MemoryRow[] = kinds.map((kind) => [`${kind} app server`, memoryAfterRounds.get(kind), processMemory(servers.get(kind)!.child.pid)]);
if (redis !== undefined) {
	memoryRows.push(['redis-server (koa-redis\'s database)', redisMemoryAfterRounds, processMemory(redis.pid)]);
}
console.log('\nMemory of each process (VmRSS and VmHWM of /proc/<pid>/status), MiB: after the interleaved rounds (each store served the same requests), at the end of the run, and its peak');
console.log('| process | RSS after the rounds | RSS at the end | peak RSS |');
console.log('| --- | ---: | ---: | ---: |');
for (const [name, afterRounds, atEnd] of memoryRows) {
	console.log(`| ${name} | ${mebibytes(afterRounds?.rss)} | ${mebibytes(atEnd?.rss)} | ${mebibytes(atEnd?.peak)} |`);
}

console.log(`\nLoad average at end ${load()}; total ${((performance.now() - startedAt) / 60_000).toFixed(1)} min`);
await Promise.all([...servers.values()].map((server) => server.stop()));
await redis?.stop();
await database.close();
