// One benchmark app server, run as a child process of bench/run.ts or bench/profile.ts so that
// the load generator and the app do not share an event loop. Serves the same routes with one
// store, twice: a plain app and a `rolling: true` one. Prints the two ports as JSON once listening.
//
// Routes: `/` reads the session, `/write` counts views, `/new` starts a session (sent without a
// cookie), `/tab?side=a|b&pair=ID` is one tab of the two-tabs workload, `/tabs` reads back its
// counters, `POST /save` stores its JSON body as the session's `filters` field (the noisy-neighbour
// workload's attackers; a save the store refuses for its size is answered 413). With an IPC channel
// (bench/profile.ts) it also measures its own CPU on request.
//
// Environment: BENCH_DATABASE_URL (set by bench/harness.ts), BENCH_SOURCE, BENCH_TOUCH_AFTER,
// BENCH_BASELINE (the checkout the `*-baseline` kinds import) and BENCH_REDIS_PORT (koa-redis's
// redis-server, started by bench/run.ts).
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { findSourceMap } from 'node:module';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Koa from 'koa';
import session, { type CreateSessionOptions } from 'koa-session';
import { MapStore } from './map-store.js';
import { NaivePgStore } from './naive-pg-store.js';
import { isBaseline, storeKinds, type ProfileCommand, type ProfileReport, type StoreKind } from './protocol.js';

const kind = process.argv[2] as StoreKind;
if (!storeKinds.includes(kind)) {
	throw new TypeError(`Expected a store kind (${storeKinds.join(', ')}), got ${String(kind)}`);
}
const connectionString = process.env['BENCH_DATABASE_URL'] ?? '';
const touchAfter = Number(process.env['BENCH_TOUCH_AFTER'] ?? 60_000);

type Package = typeof import('../src/index.js');
type SessionStore = NonNullable<CreateSessionOptions['store']>;

/** What the bench uses of koa-redis 4, which ships no types: a koa-session store on one ioredis connection. */
interface KoaRedisStore {
	get(key: string): Promise<unknown>;
	set(key: string, session: unknown, maxAge: number | 'session' | undefined): Promise<void>;
	destroy(key: string): Promise<void>;
	quit(): Promise<void>;
	on(event: 'error', listener: (error: Error) => void): unknown;
}

interface OpenedStore {
	/** `undefined`: koa-session's cookie-only sessions. */
	readonly store: SessionStore | undefined;
	/** The SessionTooLargeError class of the koa-pgstore build the store comes from. */
	readonly tooLarge: Package['SessionTooLargeError'] | undefined;
	close(): Promise<void>;
}

// The package as users run it (dist/, compiled by tsc; bench/harness.ts builds it first), unless
// BENCH_SOURCE=src: tsx's on-the-fly compilation adds a `__name` call to every function
// expression it evaluates (esbuild's keepNames), a cost the published package does not have.
// The baseline kinds import the dist/ of BENCH_BASELINE, built there from an older commit. Only
// the kinds that run koa-pgstore load it (and Prisma's runtime with it), so that the RSS
// bench/run.ts reports for the other app servers holds no package their store does not use.
async function loadPackage(baseline: boolean): Promise<Package> {
	if (baseline) {
		const directory = process.env['BENCH_BASELINE'];
		if (directory === undefined) {
			throw new TypeError(`Expected BENCH_BASELINE (a checkout with dist/ built) for the ${kind} kind`);
		}
		return await import(pathToFileURL(join(resolve(directory), 'dist', 'index.js')).href) as Package;
	}
	return (process.env['BENCH_SOURCE'] === 'src'
		? await import('../src/index.js')
		: await import('../dist/index.js' as string)) as Package;
}

// The app's own client, wired as README.md and docs/own-prisma-client.md tell an app that already
// has Prisma: its generated `PrismaClient` on `@prisma/adapter-pg`. Generated from this package's
// prisma/schema.prisma, whose generator settings are the ones the guide gives apps and whose model
// maps to the bench's `http_sessions`; from dist/ (compiled by tsc, as an app compiled by tsc runs
// its client) unless BENCH_SOURCE=src. The baseline's store gets the same client: an app's client
// does not change with the store's version.
async function appPrismaClient() {
	const { PrismaClient } = (process.env['BENCH_SOURCE'] === 'src'
		? await import('../src/generated/prisma/client.js')
		: await import('../dist/generated/prisma/client.js' as string)) as typeof import('../src/generated/prisma/client.js');
	const { PrismaPg } = await import('@prisma/adapter-pg');
	return new PrismaClient({
		// The size of the store's own pool (node-postgres' default, which the store keeps) and of the `pg` store's.
		adapter: new PrismaPg({ connectionString, max: 10 }),
		// What NODE_ENV=production gives a deployed app. The bench's servers run without NODE_ENV,
		// where Prisma would capture a call site on every query (its cost: bench/NOTES.md).
		errorFormat: 'minimal',
	});
}

async function openStore(): Promise<OpenedStore> {
	switch (kind) {
		case 'koa-pgstore':
		case 'koa-pgstore-unprepared':
		case 'koa-pgstore-baseline': {
			const { PgStore, SessionTooLargeError } = await loadPackage(isBaseline(kind));
			const store = new PgStore({ connectionString, cleanupInterval: 0, touchAfter, preparedStatements: kind !== 'koa-pgstore-unprepared' });
			return { store, tooLarge: SessionTooLargeError, close: () => store.close() };
		}
		case 'koa-pgstore-prisma':
		case 'koa-pgstore-prisma-baseline': {
			const { PgStore, SessionTooLargeError } = await loadPackage(isBaseline(kind));
			const prisma = await appPrismaClient();
			const store = new PgStore({ prisma, cleanupInterval: 0, touchAfter });
			return {
				store,
				tooLarge: SessionTooLargeError,
				async close() {
					await store.close();
					await prisma.$disconnect();
				},
			};
		}
		case 'koa-redis': {
			const port = Number(process.env['BENCH_REDIS_PORT']);
			if (!Number.isInteger(port) || port < 1) {
				throw new TypeError(`Expected BENCH_REDIS_PORT to be the port of a redis-server (bench/run.ts starts one), got ${process.env['BENCH_REDIS_PORT']}`);
			}
			const { default: redisStore } = await import('koa-redis' as string) as { default: (options: { host: string; port: number }) => KoaRedisStore };
			const store = redisStore({ host: '127.0.0.1', port });
			// koa-redis re-emits its client's errors; an EventEmitter without a listener would throw them.
			store.on('error', reportOnce);
			return { store, tooLarge: undefined, close: () => store.quit() };
		}
		case 'pg':
		case 'pg-prepared': {
			const store = new NaivePgStore(connectionString, kind === 'pg-prepared');
			return { store, tooLarge: undefined, close: () => store.close() };
		}
		case 'map': {
			const store = new MapStore();
			return { store, tooLarge: undefined, close: () => store.close() };
		}
		case 'cookie':
			return { store: undefined, tooLarge: undefined, close: async () => {} };
	}
}

// The two-tabs workload: the requests of a pair wait for each other after loading the session
// (koa-session loads it before the handler runs) and before saving it (after the handler), so
// both saves start from the same stored session: a whole-session store loses one side's change
// every time, not by timing luck.
const waitingTabs = new Map<string, () => void>();
function partnerLoaded(pair: string): Promise<boolean> {
	const partner = waitingTabs.get(pair);
	if (partner !== undefined) {
		waitingTabs.delete(pair);
		partner();
		return Promise.resolve(true);
	}
	return new Promise((resolve) => {
		// Bounded: a pair whose other half never comes is reported as unpaired, not waited for.
		const timer = setTimeout(() => {
			waitingTabs.delete(pair);
			resolve(false);
		}, 5_000);
		waitingTabs.set(pair, () => {
			clearTimeout(timer);
			resolve(true);
		});
	});
}

// Larger than any body the benchmark sends (bench/run.ts bounds BENCH_NOISY_BYTES below it).
const bodyLimit = 16 * 1024 * 1024;

async function jsonBody(ctx: Koa.Context): Promise<unknown> {
	const chunks: Buffer[] = [];
	let length = 0;
	for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
		length += chunk.length;
		if (length > bodyLimit) {
			ctx.throw(413, `Expected a body of at most ${bodyLimit} bytes`);
		}
		chunks.push(chunk);
	}
	try {
		return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
	} catch {
		return ctx.throw(400, 'Expected a JSON body');
	}
}

// Mounted before koa-session: its auto-commit, which calls the store's set(), runs after the
// route, so a save the store refuses for its size surfaces here, as an app would answer it.
const refuseTooLarge: Koa.Middleware = async (ctx, next) => {
	try {
		await next();
	} catch (error) {
		if (opened.tooLarge === undefined || !(error instanceof opened.tooLarge)) {
			throw error;
		}
		ctx.status = 413;
		ctx.body = { size: error.size, maxLength: error.maxLength };
	}
};

// Under the noisy-neighbour workload a store may fail many requests alike (a `query-timeout` per
// request); Koa's default handler would print a stack for each. Each kind is printed once, and
// the benchmark counts the failures from the responses. A body cut off because the load generator
// stopped (ECONNRESET while reading it) is the end of a measurement, not a failure.
const reportedErrors = new Set<string>();
function reportOnce(error: unknown): void {
	if (!(error instanceof Error) || (error as { expose?: unknown }).expose === true || (error as { code?: unknown }).code === 'ECONNRESET') {
		return;
	}
	const kindOfError = `${error.name} ${String((error as { code?: unknown }).code ?? '')}`;
	if (!reportedErrors.has(kindOfError)) {
		reportedErrors.add(kindOfError);
		console.error(`bench server (${kind}), first of its kind, later ones not printed:`, error);
	}
}

function app(rolling: boolean): Koa {
	const koa = new Koa();
	koa.keys = ['a benchmark secret of at least thirty-two bytes'];
	koa.on('error', reportOnce);
	koa.use(refuseTooLarge);
	koa.use(session({ ...opened.store ? { store: opened.store } : {}, rolling, maxAge: 3_600_000 }, koa));
	koa.use(async (ctx) => {
		if (ctx.session === null) {
			return;
		}
		if (ctx.path === '/write') {
			ctx.session['views'] = Number(ctx.session['views'] ?? 0) + 1;
		} else if (ctx.path === '/new') {
			ctx.session['user'] = 'visitor';
		} else if (ctx.path === '/save' && ctx.method === 'POST') {
			// As an app keeps a client's value (filters, a cart, form state) in its session.
			ctx.session['filters'] = await jsonBody(ctx);
			ctx.body = { saved: true };
			return;
		} else if (ctx.path === '/tab') {
			const side = ctx.query['side'] === 'b' ? 'b' : 'a';
			ctx.session[side] = Number(ctx.session[side] ?? 0) + 1;
			ctx.body = { paired: await partnerLoaded(String(ctx.query['pair'])) };
			return;
		} else if (ctx.path === '/tabs') {
			ctx.body = { a: Number(ctx.session['a'] ?? 0), b: Number(ctx.session['b'] ?? 0) };
			return;
		}
		ctx.body = { views: ctx.session['views'] ?? 0 };
	});
	return koa;
}

const opened = await openStore();
const servers = [app(false).listen(0, '127.0.0.1'), app(true).listen(0, '127.0.0.1')];
await Promise.all(servers.map((server) => new Promise((resolve) => server.once('listening', resolve))));
const [plain, rolling] = servers.map((server) => (server.address() as AddressInfo).port);
process.stdout.write(`${JSON.stringify({ plain, rolling })}\n`);

// Where each profiled function is in its source: tsx compiles src/ and bench/ with source maps
// (and enables them), Prisma's minified runtime ships its own. Only this process can ask.
function originalPositions(nodes: readonly { id: number; callFrame: { url: string; lineNumber: number; columnNumber: number } }[]) {
	const positions: Record<string, { source: string; line: number; name?: string }> = {};
	for (const { id, callFrame: { url, lineNumber, columnNumber } } of nodes) {
		if (!url.startsWith('file://') || lineNumber < 0) {
			continue;
		}
		const entry = findSourceMap(fileURLToPath(url))?.findEntry(lineNumber, columnNumber);
		if (entry !== undefined && 'originalSource' in entry) {
			// Node 20 gives the mapping's name too, which @types/node 20 does not declare yet.
			const name: unknown = Reflect.get(entry, 'name');
			positions[id] = { source: entry.originalSource, line: entry.originalLine, ...typeof name === 'string' ? { name } : {} };
		}
	}
	return positions;
}

// Profiling through the inspector of this process (not --cpu-prof): the profile then covers the
// measured requests only, not start-up, warm-up and Prisma's first compilations.
let measuring: { cpu: NodeJS.CpuUsage; started: number; inspector?: Session } | undefined;
process.on('message', async (command: ProfileCommand) => {
	if (command.type === 'start') {
		let inspector: Session | undefined;
		if (command.samplingInterval !== undefined) {
			inspector = new Session();
			inspector.connect();
			await inspector.post('Profiler.enable');
			await inspector.post('Profiler.setSamplingInterval', { interval: command.samplingInterval });
			await inspector.post('Profiler.start');
		}
		measuring = { cpu: process.cpuUsage(), started: performance.now(), ...inspector ? { inspector } : {} };
		process.send?.({ type: 'started' });
	} else if (command.type === 'stop' && measuring !== undefined) {
		const cpu = process.cpuUsage(measuring.cpu);
		const wallMicroseconds = (performance.now() - measuring.started) * 1000;
		if (measuring.inspector !== undefined) {
			const { profile } = await measuring.inspector.post('Profiler.stop');
			measuring.inspector.disconnect();
			if (command.profilePath !== undefined) {
				await writeFile(command.profilePath, JSON.stringify(profile));
				await writeFile(`${command.profilePath}.positions.json`, JSON.stringify(originalPositions(profile.nodes)));
			}
		}
		measuring = undefined;
		const report: ProfileReport = { type: 'stopped', cpuMicroseconds: cpu.user + cpu.system, wallMicroseconds };
		process.send?.(report);
	}
});

process.on('SIGTERM', async () => {
	for (const server of servers) {
		server.closeAllConnections();
		server.close();
	}
	await opened.close();
	process.exit(0);
});
