// One benchmark app server, run as a child process of bench/run.ts or bench/profile.ts so that
// the load generator and the app do not share an event loop. Serves the same routes with one
// store, twice: a plain app and a `rolling: true` one. Prints the two ports as JSON once listening.
//
// Routes: `/` reads the session, `/write` counts views, `/new` starts a session (sent without a
// cookie), `/tab?side=a|b&pair=ID` is one tab of the two-tabs workload, `/tabs` reads back its
// counters, `POST /save` stores its JSON body as the session's `filters` field (the noisy-neighbour
// workload's attackers; a save the store refuses for its size is answered 413). With an IPC channel
// (bench/profile.ts) it also measures its own CPU on request.
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { findSourceMap } from 'node:module';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import Koa from 'koa';
import session from 'koa-session';
import { MapStore } from './map-store.js';
import { NaivePgStore } from './naive-pg-store.js';
import { storeKinds, type ProfileCommand, type ProfileReport, type StoreKind } from './protocol.js';

const kind = process.argv[2] as StoreKind;
if (!storeKinds.includes(kind)) {
	throw new TypeError(`Expected a store kind (${storeKinds.join(', ')}), got ${String(kind)}`);
}
const connectionString = process.env['BENCH_DATABASE_URL'] ?? '';
// The package as users run it (dist/, compiled by tsc; bench/harness.ts builds it first), unless
// BENCH_SOURCE=src: tsx's on-the-fly compilation adds a `__name` call to every function
// expression it evaluates (esbuild's keepNames), a cost the published package does not have.
const { PgStore, SessionTooLargeError } = (process.env['BENCH_SOURCE'] === 'src'
	? await import('../src/index.js')
	: await import('../dist/index.js' as string)) as typeof import('../src/index.js');
const touchAfter = Number(process.env['BENCH_TOUCH_AFTER'] ?? 60_000);

const store = kind === 'koa-pgstore' || kind === 'koa-pgstore-unprepared'
	? new PgStore({ connectionString, cleanupInterval: 0, touchAfter, preparedStatements: kind === 'koa-pgstore' })
	: kind === 'pg' ? new NaivePgStore(connectionString)
		: kind === 'map' ? new MapStore() : undefined;

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
		if (!(error instanceof SessionTooLargeError)) {
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
	koa.use(session({ ...store ? { store } : {}, rolling, maxAge: 3_600_000 }, koa));
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
	await store?.close();
	process.exit(0);
});
