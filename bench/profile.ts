// Where a request's Node CPU goes beyond the Map store's: the app server's CPU per request with
// koa-pgstore and with the in-process Map store (the ceiling of any external store), for the
// same requests at the same concurrency, and a CPU profile of each split by package.
// Run: npx tsx bench/profile.ts
//
// Per workload and store: BENCH_PROFILE_PASSES unprofiled passes measure the server process'
// CPU (user + system, all its threads) per request, median reported; then one pass under the
// V8 sampling profiler gives the split. The profiler's sample times are wall-clock time of the
// main thread (on a loaded machine they include time the thread waited for a core, and the
// profiler slows what it samples), so each package's share of the samples is applied to the
// unprofiled CPU per request: µs/req of a package = its share × the store's process CPU/req.
//
// Self time of V8 builtins and native code without a script of their own (JSON.parse, Array
// methods, …) counts for the nearest calling function that has one: JSON.parse called by
// pg-types counts for pg. `(program)` is native time V8 could not attribute to any function,
// `GC` the garbage collector on the main thread.
//
// Environment (lists are comma-separated):
//   BENCH_PROFILE_REQUESTS     requests per pass (default 20000)
//   BENCH_PROFILE_CONNECTIONS  concurrent connections (default 32)
//   BENCH_PROFILE_PASSES       unprofiled passes per store and workload (default 3)
//   BENCH_PROFILE_INTERVAL     sampling interval in µs (default 100)
//   BENCH_PROFILE_STORES       stores to compare, the last is the reference (default "koa-pgstore,map")
//   BENCH_PROFILE_WORKLOADS    among read, write, new (default "read,write,new")
//   BENCH_PROFILE_TOP          functions listed per package (default 10)
//   BENCH_PROFILE_DIR          where the .cpuprofile files go (default a new directory in the OS temp dir)
//   BENCH_SOURCE               "dist" (default: `npm run build` first, then the compiled package) or "src" (through tsx)
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { buildPackage, listFromEnv, median, requestsWith, sessionCookies, startAppServer, startDatabase, type AppServer } from './harness.js';
import { storeKinds, type ProfileCommand, type ProfileReport, type StoreKind } from './protocol.js';

const requestCount = Number(process.env['BENCH_PROFILE_REQUESTS'] ?? 20_000);
const connections = Number(process.env['BENCH_PROFILE_CONNECTIONS'] ?? 32);
const passes = Number(process.env['BENCH_PROFILE_PASSES'] ?? 3);
const samplingInterval = Number(process.env['BENCH_PROFILE_INTERVAL'] ?? 100);
const top = Number(process.env['BENCH_PROFILE_TOP'] ?? 10);
const kinds = listFromEnv('BENCH_PROFILE_STORES', 'koa-pgstore,map') as StoreKind[];
const workloads = listFromEnv('BENCH_PROFILE_WORKLOADS', 'read,write,new') as ('read' | 'write' | 'new')[];
for (const [name, value] of Object.entries({ requestCount, connections, passes, samplingInterval, top })) {
	if (!Number.isInteger(value) || value < 1) {
		throw new TypeError(`Expected ${name} to be an integer >= 1, got ${value}`);
	}
}
if (kinds.length < 2 || kinds.some((kind) => !storeKinds.includes(kind) || kind === 'cookie')) {
	throw new TypeError(`Expected BENCH_PROFILE_STORES to list two or more external stores, the reference last, got ${kinds.join(',')}`);
}
if (workloads.some((workload) => !['read', 'write', 'new'].includes(workload))) {
	throw new TypeError(`Expected BENCH_PROFILE_WORKLOADS among read, write, new, got ${workloads.join(',')}`);
}
const reference = kinds.at(-1)!;
const profileDir = process.env['BENCH_PROFILE_DIR'] ?? await mkdtemp(path.join(os.tmpdir(), 'koa-pgstore-profiles-'));

// Chrome DevTools' .cpuprofile format, as V8's Profiler.stop returns it.
interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }
/** Written by bench/server.ts beside each profile: where a node's function is in its source (through source maps). */
type OriginalPositions = Record<string, { source: string; line: number; name?: string }>;

/** Sends a command to a server and waits for its answer of `answer` type. */
function command<T>(server: AppServer, message: ProfileCommand, answer: string): Promise<T> {
	return new Promise((resolve) => {
		const listener = (reply: { type: string }) => {
			if (reply.type === answer) {
				server.child.off('message', listener);
				resolve(reply as T);
			}
		};
		server.child.on('message', listener);
		server.child.send(message);
	});
}

interface Pass { cpuPerRequest: number; errors: number; profile?: string }

async function pass(server: AppServer, workload: string, cookies: string[], profilePath?: string): Promise<Pass> {
	const path = workload === 'write' ? '/write' : workload === 'new' ? '/new' : '/';
	await command(server, { type: 'start', ...profilePath === undefined ? {} : { samplingInterval } }, 'started');
	const result = await autocannon({
		url: `http://127.0.0.1:${server.ports.plain}`,
		connections,
		amount: requestCount,
		requests: requestsWith(path, workload === 'new' ? undefined : cookies),
	});
	const report = await command<ProfileReport>(server, { type: 'stop', ...profilePath === undefined ? {} : { profilePath } }, 'stopped');
	return {
		cpuPerRequest: report.cpuMicroseconds / result.requests.total,
		errors: result.errors + result.non2xx,
		...profilePath === undefined ? {} : { profile: profilePath },
	};
}

// This package's own code, from dist/ or src/ (BENCH_SOURCE).
const ownCode = 'koa-pgstore';

/** The package (or part of this repository) a script URL belongs to. */
function packageOf(url: string): string {
	if (url.startsWith('node:')) {
		return 'node internals';
	}
	if (url.startsWith('wasm://')) {
		return '@prisma/client query compiler (wasm)';
	}
	const modules = url.lastIndexOf('/node_modules/');
	if (modules >= 0) {
		const [scope = '', name = ''] = url.slice(modules + '/node_modules/'.length).split('/');
		const pkg = scope.startsWith('@') ? `${scope}/${name}` : scope;
		if (/^(pg|pg-.+|postgres-.+|pgpass)$/.test(pkg)) {
			return 'pg (pg, pg-pool, pg-protocol, pg-types)';
		}
		if (pkg === '@prisma/client') {
			return '@prisma/client runtime';
		}
		if (pkg === '@prisma/adapter-pg' || pkg === '@prisma/driver-adapter-utils') {
			return '@prisma/adapter-pg';
		}
		if (/^(koa|koa-compose|cookies|keygrip|http-errors|statuses|on-finished|accepts|type-is|content-type|content-disposition|mime-types|mime-db|negotiator|encodeurl|escape-html|vary|fresh|depd|delegates|destroy|ee-first|only|parseurl|http-assert|deep-equal|media-typer|tsscmp|inherits|setprototypeof|toidentifier)$/.test(pkg)) {
			return 'koa (+ cookies, keygrip, …)';
		}
		return pkg;
	}
	if (/\/(src|dist)\/generated\//.test(url)) {
		return '@prisma/client generated client';
	}
	if (/\/(src|dist)\//.test(url)) {
		return ownCode;
	}
	if (url.endsWith('/bench/map-store.ts')) {
		return 'Map store (bench/map-store.ts)';
	}
	if (url.includes('/bench/')) {
		return 'bench app';
	}
	return url === '' ? 'V8 / native, unattributed' : url;
}

const isPrisma = (pkg: string) => pkg.startsWith('@prisma/');

/** `name [original name] — package source:line`, the line in the original source where a source map tells it. */
function functionLabel(frame: CallFrame, original: OriginalPositions[string] | undefined, pkg: string): string {
	const alias = original?.name !== undefined && original.name !== frame.functionName ? ` [${original.name}]` : '';
	const where = original === undefined
		? `${frame.url.startsWith('node:') ? frame.url : path.basename(frame.url)}:${frame.lineNumber + 1}`
		: `${original.source.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*?\/(src|bench)\//, '$1/').replace(/^(\.\.\/)+/, '')}:${original.line + 1}`;
	const owner = pkg === ownCode || pkg === 'node internals' ? '' : `${pkg.split(' (')[0]} `;
	return `${frame.functionName || '(anonymous)'}${alias} — ${owner}${where}`;
}

interface Split {
	/** µs per request by package. */
	byPackage: Map<string, number>;
	/** µs per request by function, with its package. */
	byFunction: Map<string, { pkg: string; micros: number }>;
	total: number;
}

type FunctionEntry = readonly [string, { readonly pkg: string; readonly micros: number }];

/** The split with its total made `cpuPerRequest`: shares of the samples applied to measured CPU. */
function scaled(raw: Split, cpuPerRequest: number): Split {
	const factor = raw.total > 0 ? cpuPerRequest / raw.total : 0;
	return {
		byPackage: new Map([...raw.byPackage].map(([pkg, micros]) => [pkg, micros * factor])),
		byFunction: new Map([...raw.byFunction].map(([label, entry]) => [label, { pkg: entry.pkg, micros: entry.micros * factor }])),
		total: cpuPerRequest,
	};
}

async function split(profilePath: string, requests: number): Promise<Split> {
	const profile = JSON.parse(await readFile(profilePath, 'utf8')) as CpuProfile;
	const positions = JSON.parse(await readFile(`${profilePath}.positions.json`, 'utf8').catch(() => '{}')) as OriginalPositions;
	const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
	const parents = new Map<number, number>();
	for (const node of profile.nodes) {
		for (const child of node.children ?? []) {
			parents.set(child, node.id);
		}
	}
	// Self time per node: a sample lasts until the next one.
	const selfMicros = new Map<number, number>();
	const deltas = profile.timeDeltas;
	const meanDelta = deltas.reduce((sum, delta) => sum + delta, 0) / Math.max(1, deltas.length);
	profile.samples.forEach((id, index) => {
		selfMicros.set(id, (selfMicros.get(id) ?? 0) + (deltas[index + 1] ?? meanDelta));
	});
	const byPackage = new Map<string, number>();
	const byFunction = new Map<string, { pkg: string; micros: number }>();
	let total = 0;
	for (const [id, micros] of selfMicros) {
		const node = nodes.get(id)!;
		const name = node.callFrame.functionName;
		if (name === '(idle)' || name === '(root)') {
			continue;
		}
		let owner: ProfileNode | undefined = node;
		if (name !== '(garbage collector)' && name !== '(program)') {
			while (owner !== undefined && owner.callFrame.url === '') {
				const parent = parents.get(owner.id);
				owner = parent === undefined ? undefined : nodes.get(parent);
			}
		}
		const pkg = name === '(garbage collector)' ? 'GC' : name === '(program)' ? '(program)' : packageOf(owner?.callFrame.url ?? '');
		const perRequest = micros / requests;
		total += perRequest;
		byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + perRequest);
		if (owner !== undefined && owner.callFrame.url !== '') {
			const label = functionLabel(owner.callFrame, positions[String(owner.id)], pkg);
			const entry = byFunction.get(label) ?? { pkg, micros: 0 };
			entry.micros += perRequest;
			byFunction.set(label, entry);
		}
	}
	return { byPackage, byFunction, total };
}

buildPackage();
const database = await startDatabase();
const servers = new Map<StoreKind, AppServer>();
for (const kind of kinds) {
	servers.set(kind, await startAppServer(kind, database.url, { ipc: true }));
}
const cookies = new Map<StoreKind, string[]>();
for (const kind of kinds) {
	cookies.set(kind, await sessionCookies(servers.get(kind)!.ports.plain, 100));
}

const cpu = os.cpus();
console.log(`koa-pgstore CPU profile — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, PostgreSQL ${database.version}, `
	+ `${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, load average ${os.loadavg().map((value) => value.toFixed(1)).join(' ')}`);
console.log(`${requestCount} requests per pass at ${connections} connections, median of ${passes} unprofiled passes, `
	+ `then one profiled pass sampled every ${samplingInterval} µs; µs of the app server's CPU per request. Profiles in ${profileDir}\n`);

const summary: string[] = [];
for (const workload of workloads) {
	// Warm-up, unmeasured: JIT, Prisma's query compiler, connection pools.
	for (const kind of kinds) {
		await pass(servers.get(kind)!, workload, cookies.get(kind)!);
	}
	const cpuPasses = new Map<StoreKind, number[]>(kinds.map((kind) => [kind, []]));
	let errors = 0;
	for (let index = 0; index < passes; index++) {
		// Alternate the order so that neither store always runs first.
		for (const kind of index % 2 === 0 ? kinds : [...kinds].reverse()) {
			const measured = await pass(servers.get(kind)!, workload, cookies.get(kind)!);
			cpuPasses.get(kind)!.push(measured.cpuPerRequest);
			errors += measured.errors;
		}
	}
	const cpuOf = (kind: StoreKind) => median(cpuPasses.get(kind)!);
	const splits = new Map<StoreKind, Split>();
	const profiledTotals = new Map<StoreKind, number>();
	for (const kind of kinds) {
		const profilePath = path.join(profileDir, `${workload}-${kind}.cpuprofile`);
		const profiled = await pass(servers.get(kind)!, workload, cookies.get(kind)!, profilePath);
		errors += profiled.errors;
		const raw = await split(profilePath, requestCount);
		profiledTotals.set(kind, raw.total);
		splits.set(kind, scaled(raw, cpuOf(kind)));
	}

	console.log(`### ${workload}${errors > 0 ? ` (${errors} failed requests)` : ''}\n`);
	const others = kinds.slice(0, -1);
	console.log(`| package | ${kinds.map((kind) => `${kind} µs/req`).join(' | ')} | ${others.map((kind) => `${kind} − ${reference}`).join(' | ')} |`);
	console.log(`| --- | ${kinds.map(() => '---:').join(' | ')} | ${others.map(() => '---:').join(' | ')} |`);
	const packages = [...new Set(kinds.flatMap((kind) => [...splits.get(kind)!.byPackage.keys()]))]
		.map((pkg) => ({ pkg, micros: kinds.map((kind) => splits.get(kind)!.byPackage.get(pkg) ?? 0) }))
		.sort((a, b) => (b.micros[0]! - b.micros.at(-1)!) - (a.micros[0]! - a.micros.at(-1)!) || b.micros[0]! - a.micros[0]!);
	const shown = packages.filter(({ micros }) => micros.some((value) => value >= 0.5));
	const rest = packages.filter((row) => !shown.includes(row));
	const signed = (value: number) => `${value >= 0 ? '+' : ''}${value.toFixed(1)}`;
	const row = (label: string, values: number[]) => `| ${label} | ${values.map((value) => value.toFixed(1)).join(' | ')} | ${values.slice(0, -1).map((value) => signed(value - values.at(-1)!)).join(' | ')} |`;
	for (const { pkg, micros } of shown) {
		console.log(row(pkg, micros));
	}
	if (rest.length > 0) {
		console.log(row(`other (${rest.length} packages < 0.5 µs)`, kinds.map((_, index) => rest.reduce((sum, { micros }) => sum + micros[index]!, 0))));
	}
	console.log(row('**process CPU (median of unprofiled passes)**', kinds.map(cpuOf)));
	console.log(row('profiled pass, main thread samples (wall µs, not CPU)', kinds.map((kind) => profiledTotals.get(kind)!)));
	for (const kind of others) {
		summary.push(`| ${workload} | ${kind} | ${cpuOf(kind).toFixed(1)} | ${cpuOf(reference).toFixed(1)} | ${signed(cpuOf(kind) - cpuOf(reference))} | ${(cpuOf(reference) / cpuOf(kind)).toFixed(2)} |`);
	}

	for (const kind of others) {
		const functions = [...splits.get(kind)!.byFunction.entries()];
		const referenceFunctions = splits.get(reference)!.byFunction;
		const lists = [
			['koa-pgstore', ([, { pkg }]) => pkg === ownCode, ([, { micros }]) => micros],
			['Prisma (@prisma/client runtime and generated client, adapter-pg, debug, wasm query compiler)', ([, { pkg }]) => isPrisma(pkg), ([, { micros }]) => micros],
			[`any package, by excess over ${reference}`, () => true, ([label, { micros }]) => micros - (referenceFunctions.get(label)?.micros ?? 0)],
		] as const satisfies readonly (readonly [string, (entry: FunctionEntry) => boolean, (entry: FunctionEntry) => number])[];
		for (const [title, belongs, weight] of lists) {
			const chosen = functions.filter(belongs).sort((a, b) => weight(b) - weight(a));
			const sum = chosen.reduce((total, entry) => total + weight(entry), 0);
			console.log(`\n${kind}, ${workload}: top ${top} functions of ${title}, self time (${sum.toFixed(1)} µs/req in all)`);
			console.log('| µs/req | function — source |');
			console.log('| ---: | --- |');
			for (const entry of chosen.slice(0, top)) {
				console.log(`| ${weight(entry).toFixed(2)} | ${entry[0].replaceAll('|', '\\|')} |`);
			}
		}
	}
	console.log('');
}

console.log(`### In short: process CPU per request at ${connections} connections, unprofiled medians`);
console.log(`| workload | store | µs/req | ${reference} µs/req | above ${reference} | CPU-bound ceiling ratio (${reference} µs ÷ store µs) |`);
console.log('| --- | --- | ---: | ---: | ---: | ---: |');
for (const line of summary) {
	console.log(line);
}

await Promise.all([...servers.values()].map((server) => server.stop()));
await database.close();
