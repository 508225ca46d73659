// What bench/run.ts and bench/profile.ts share: a throwaway PostgreSQL with the session table,
// a throwaway redis-server for koa-redis, the benchmark app servers (child processes), what
// their processes use (CPU, RSS), session cookies and autocannon requests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type autocannon from 'autocannon';
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../scripts/embedded-postgres.js';
import { pgStoresTable } from './naive-pg-store.js';
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
	/** Puts another server (redis-server) on PostgreSQL's CPU when PostgreSQL has one of its own; else nothing. */
	pinBeside(pid: number): void;
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

/** What a process holds in memory, in KiB, from /proc/<pid>/status. */
export interface ProcessMemory {
	/** Resident set size now (VmRSS). */
	readonly rss: number;
	/** The highest resident set size so far (VmHWM). */
	readonly peak: number;
}

/** `undefined` off Linux, or once the process has exited. */
export function processMemory(pid: number | undefined): ProcessMemory | undefined {
	if (pid === undefined) {
		return undefined;
	}
	let status: string;
	try {
		status = readFileSync(`/proc/${pid}/status`, 'utf8');
	} catch {
		return undefined; // As processStat: no figure rather than a wrong one.
	}
	const field = (name: string) => Number(new RegExp(`^${name}:\\s*(\\d+) kB$`, 'm').exec(status)?.[1] ?? Number.NaN);
	return { rss: field('VmRSS'), peak: field('VmHWM') };
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
 * @returns Where each runs, for the report, and how to pin another process beside PostgreSQL.
 */
function pinPostgres(postmaster: number): { placement: string; pinBeside(pid: number): void } {
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
	return {
		placement: `PostgreSQL on CPU ${database} (redis-server too, when koa-redis runs), the app servers and the load generator on CPU ${app}`,
		pinBeside: (pid) => pin(database, pid),
	};
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
	await pool.query(`CREATE TABLE ${pgStoresTable} (LIKE http_sessions INCLUDING ALL)`);
	if (process.env['BENCH_FILLFACTOR'] !== undefined) {
		for (const table of ['http_sessions', pgStoresTable]) {
			await pool.query(`ALTER TABLE ${table} SET (fillfactor = ${Number(process.env['BENCH_FILLFACTOR'])})`);
		}
	}
	const { rows: [row] } = await pool.query<{ version: string; pid: number }>("SELECT current_setting('server_version') AS version, pg_backend_pid() AS pid");
	// Every backend is a child of the postmaster.
	const postmaster = row === undefined ? undefined : processStat(row.pid)?.ppid;
	const pinned = options.pinPostgres === true && postmaster !== undefined ? pinPostgres(postmaster) : undefined;
	return {
		server,
		placement: pinned?.placement ?? 'PostgreSQL on the same CPUs',
		pinBeside: (pid) => pinned?.pinBeside(pid),
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

/**
 * Why the koa-redis kind cannot run here, or `undefined` when it can: it needs `redis-server` on
 * PATH and the koa-redis package (a devDependency).
 */
export function koaRedisUnavailable(): string | undefined {
	if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error !== undefined) {
		return '`redis-server` is not on PATH (Debian: apt-get install redis-server)';
	}
	try {
		createRequire(import.meta.url).resolve('koa-redis');
	} catch (error) {
		if ((error as { code?: unknown }).code !== 'MODULE_NOT_FOUND') {
			throw error;
		}
		return 'koa-redis is not installed (npm install --save-dev koa-redis)';
	}
	return undefined;
}

export interface RedisServer {
	readonly port: number;
	readonly pid: number | undefined;
	/** `redis-server --version`'s version. */
	readonly version: string;
	/** CPU time the server has used so far, in µs (Linux only). */
	cpuMicros(): number | undefined;
	stop(): Promise<void>;
}

/** A port of 127.0.0.1 nothing listens on: redis-server's `--port 0` means no TCP at all, not any port. */
async function freePort(): Promise<number> {
	const probe = net.createServer();
	await new Promise<void>((resolve, reject) => {
		probe.once('error', reject);
		probe.listen(0, '127.0.0.1', resolve);
	});
	const { port } = probe.address() as net.AddressInfo;
	await new Promise<void>((resolve) => probe.close(() => resolve()));
	return port;
}

/**
 * A throwaway redis-server for koa-redis, on 127.0.0.1 at a free port, without persistence (no
 * snapshots, no append-only file: like the throwaway PostgreSQL's `fsync=off`, no write waits for
 * the disk), its working directory a temporary one that stop() removes.
 */
export async function startRedis(): Promise<RedisServer> {
	const port = await freePort();
	const directory = await mkdtemp(join(os.tmpdir(), 'koa-pgstore-bench-redis-'));
	const child = spawn('redis-server', [
		'--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', directory,
	], { stdio: ['ignore', 'pipe', 'inherit'] });
	// A run that throws must not leave the server behind.
	const killOnExit = () => child.kill('SIGKILL');
	process.once('exit', killOnExit);
	const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
	// Its log goes to stdout; read to the end, so that the pipe never fills and blocks it.
	let log = '';
	let ready = false;
	let timer: NodeJS.Timeout | undefined;
	try {
		await new Promise<void>((resolve, reject) => {
			timer = setTimeout(() => reject(new Error(`redis-server did not accept connections within 10 s:\n${log}`)), 10_000);
			child.stdout!.setEncoding('utf8');
			child.stdout!.on('data', (chunk: string) => {
				if (!ready) {
					log += chunk;
					if (log.includes('Ready to accept connections')) {
						ready = true;
						resolve();
					}
				}
			});
			child.once('error', reject);
			child.once('exit', (code, signal) => reject(new Error(`redis-server exited (${code ?? signal}) before accepting connections:\n${log}`)));
		});
	} catch (error) {
		// A process that never started may not emit 'exit'.
		if (child.pid !== undefined) {
			child.kill('SIGKILL');
			await exited;
		}
		await rm(directory, { recursive: true, force: true });
		throw error;
	} finally {
		clearTimeout(timer);
	}
	const version = /v=(\S+)/.exec(spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? '?';
	return {
		port,
		pid: child.pid,
		version,
		cpuMicros: () => processCpuMicros(child.pid),
		async stop() {
			process.off('exit', killOnExit);
			if (child.exitCode === null && child.signalCode === null) {
				child.kill('SIGTERM');
			}
			await exited;
			await rm(directory, { recursive: true, force: true });
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
