// What bench/run.ts and bench/profile.ts share: a throwaway PostgreSQL with the session table,
// the benchmark app servers (child processes), session cookies and autocannon requests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import { createInterface } from 'node:readline';
import type autocannon from 'autocannon';
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../scripts/embedded-postgres.js';
import type { ServerPorts, StoreKind } from './protocol.js';

/**
 * Builds dist/ (`npm run build`), which bench/server.ts imports unless BENCH_SOURCE=src, so that
 * the benchmark measures the code as published, from the src/ of this checkout.
 */
export function buildPackage(): void {
	if (process.env['BENCH_SOURCE'] === 'src') {
		return;
	}
	const build = spawnSync('npm', ['run', 'build'], { stdio: ['ignore', 'ignore', 'inherit'] });
	if (build.status !== 0) {
		throw new Error(`\`npm run build\` failed (exit ${build.status ?? build.signal}); BENCH_SOURCE=src runs src/ through tsx instead`);
	}
}

export interface BenchDatabase {
	readonly server: PostgresServer;
	/** The `bench` database, with this package's migrations applied. */
	readonly url: string;
	/** A small pool on it, for the harness' own queries. */
	readonly pool: pg.Pool;
	readonly version: string;
	/** Which CPUs PostgreSQL and the app run on. */
	readonly placement: string;
	/** CPU time all of PostgreSQL's processes have used so far, in µs (Linux only). */
	cpuMicros(): number | undefined;
	close(): Promise<void>;
}

// Clock ticks per second of /proc's CPU times: 100 on every Linux this runs on (getconf CLK_TCK).
const clockTicks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

interface ProcessStat { ppid: number; cpuMicros: number; childrenCpuMicros: number }

function processStat(pid: number | string): ProcessStat | undefined {
	let stat: string;
	try {
		stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
	} catch {
		// Not Linux, or the process just exited: no figure rather than a wrong one.
		return undefined;
	}
	// Fields after the command name, which is in parentheses and may hold spaces: state is [0].
	const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
	const micros = (ticks: number | undefined) => ((ticks ?? 0) * 1_000_000) / clockTicks;
	return {
		ppid: fields[1] ?? 0,
		cpuMicros: micros(fields[11]) + micros(fields[12]),
		childrenCpuMicros: micros(fields[13]) + micros(fields[14]),
	};
}

/**
 * CPU time (user + system, all threads) process `pid` has used so far, in µs, read from /proc:
 * unlike req/s it barely depends on what else runs on the machine. `undefined` off Linux.
 */
export function processCpuMicros(pid: number | undefined): number | undefined {
	return pid === undefined ? undefined : processStat(pid)?.cpuMicros;
}

/** CPU time of a process, its live children and its children that exited, in µs. */
function processTreeCpuMicros(pid: number): number | undefined {
	const parent = processStat(pid);
	if (parent === undefined) {
		return undefined;
	}
	let total = parent.cpuMicros + parent.childrenCpuMicros;
	for (const entry of readdirSync('/proc')) {
		if (/^\d+$/.test(entry)) {
			const child = processStat(entry);
			if (child?.ppid === pid) {
				total += child.cpuMicros;
			}
		}
	}
	return total;
}

/**
 * Gives PostgreSQL a CPU of its own (Linux, `taskset`): the postmaster and its processes go to the
 * last CPU, this process to the others, and with it the app servers it starts afterwards. Backends
 * the postmaster forks later inherit its CPU. With the database off the app's cores, a store's
 * ratio to the Map ceiling shows what the store costs the app, not what PostgreSQL's CPU costs
 * the machine.
 * @returns Where each runs, for the report.
 */
function pinPostgres(postmaster: number): string {
	const cpus = os.cpus().length;
	if (cpus < 2) {
		throw new Error('BENCH_PIN_POSTGRES needs at least 2 CPUs');
	}
	const database = String(cpus - 1);
	const app = cpus === 2 ? '0' : `0-${cpus - 2}`;
	const pin = (cpu: string, pid: number) => {
		const result = spawnSync('taskset', ['--all-tasks', '--cpu-list', '--pid', cpu, String(pid)], { encoding: 'utf8' });
		if (result.status !== 0) {
			throw new Error(`taskset failed for pid ${pid}: ${result.error?.message ?? result.stderr}`);
		}
	};
	pin(database, postmaster);
	for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
		if (processStat(entry)?.ppid === postmaster) {
			pin(database, Number(entry));
		}
	}
	pin(app, process.pid);
	return `PostgreSQL on CPU ${database}, the app servers and the load generator on CPU ${app}`;
}

export async function startDatabase(options: { statementStats?: boolean; pinPostgres?: boolean } = {}): Promise<BenchDatabase> {
	const server = await startPostgres({
		postgresFlags: options.statementStats === true
			? ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all']
			: [],
	});
	const admin = new pg.Client({ connectionString: server.url });
	await admin.connect();
	await admin.query('CREATE DATABASE bench');
	await admin.end();
	const url = server.url.replace(/\/postgres$/, '/bench');
	const pool = new pg.Pool({ connectionString: url, max: 2 });
	// pg-pool's end() resolves before its clients' sockets have closed; PostgreSQL stopping right
	// after then ends them (57P01) and an idle client reports that on the pool. Only then is it
	// expected.
	pool.on('error', (error) => {
		if (!pool.ending) {
			throw error;
		}
	});
	if (options.statementStats === true) {
		await pool.query('CREATE EXTENSION pg_stat_statements');
	}
	const migrations = (await readdir('prisma/migrations', { withFileTypes: true }))
		.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
	for (const name of migrations) {
		await pool.query(await readFile(`prisma/migrations/${name}/migration.sql`, 'utf8'));
	}
	if (process.env['BENCH_FILLFACTOR'] !== undefined) {
		await pool.query(`ALTER TABLE http_sessions SET (fillfactor = ${Number(process.env['BENCH_FILLFACTOR'])})`);
	}
	const { rows: [row] } = await pool.query<{ version: string; pid: number }>("SELECT current_setting('server_version') AS version, pg_backend_pid() AS pid");
	// Every backend is a child of the postmaster.
	const postmaster = row === undefined ? undefined : processStat(row.pid)?.ppid;
	const placement = options.pinPostgres === true && postmaster !== undefined ? pinPostgres(postmaster) : 'PostgreSQL on the same CPUs';
	return {
		server,
		placement,
		url,
		pool,
		version: row?.version ?? '?',
		cpuMicros: () => (postmaster === undefined ? undefined : processTreeCpuMicros(postmaster)),
		async close() {
			await pool.end();
			await server.stop();
		},
	};
}

export interface AppServer {
	readonly kind: StoreKind;
	readonly ports: ServerPorts;
	readonly child: ChildProcess;
	stop(): Promise<void>;
}

/**
 * Starts bench/server.ts for one store in a child process, so that the load generator and the
 * app do not share an event loop (nor a CPU profile).
 * @param ipc Opens an IPC channel (bench/profile.ts drives the child's profiler through it).
 */
export async function startAppServer(kind: StoreKind, databaseUrl: string, options: { ipc?: boolean; env?: Record<string, string> } = {}): Promise<AppServer> {
	const child = spawn(process.execPath, ['--import=tsx', 'bench/server.ts', kind], {
		env: { ...process.env, ...options.env, BENCH_DATABASE_URL: databaseUrl },
		stdio: ['ignore', 'pipe', 'inherit', ...options.ipc === true ? ['ipc' as const] : []],
	});
	const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
	const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
	const first = await lines.next();
	if (first.done === true) {
		throw new Error(`The ${kind} benchmark server exited before listening`);
	}
	return {
		kind,
		ports: JSON.parse(first.value) as ServerPorts,
		child,
		async stop() {
			if (child.exitCode === null && child.signalCode === null) {
				child.kill('SIGTERM');
			}
			await exited;
		},
	};
}

/** `count` new sessions of the app on `port` (each made by a GET of `/write`), as Cookie headers. */
export async function sessionCookies(port: number, count: number): Promise<string[]> {
	return Promise.all(Array.from({ length: count }, async () => {
		const response = await fetch(`http://127.0.0.1:${port}/write`);
		await response.arrayBuffer();
		return response.headers.getSetCookie().map((cookie) => cookie.split(';')[0]).join('; ');
	}));
}

/** GETs of `path`, each with the next of `cookies` (a session per cookie), or with none. */
export function requestsWith(path: string, cookies: readonly string[] | undefined): autocannon.Request[] {
	let next = 0;
	return [{
		method: 'GET',
		path,
		setupRequest: (request) => cookies === undefined
			? request
			: { ...request, headers: { ...request.headers, cookie: cookies[next++ % cookies.length] ?? '' } },
	}];
}

export const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

/** A comma-separated environment variable, e.g. `BENCH_CONNECTIONS=8,32`. */
export function listFromEnv(name: string, fallback: string): string[] {
	return (process.env[name] ?? fallback).split(',').map((item) => item.trim()).filter((item) => item !== '');
}
