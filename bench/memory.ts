// What a process that serves sessions and runs the cleanup schedule costs in memory, and whether
// the schedule adds a step to it: an app server (Koa + koa-session + koa-pgstore from dist/, its
// own client, cleanupInterval of a second) serves a mix of new, read and changed sessions, then
// sweeps 200,000 expired rows while it goes on serving. Its RSS and heap are read from
// /proc/<pid>/status and from the child itself before the first sweep and after each one.
// Run: npm run build && npx tsx bench/memory.ts   (MEMORY_SWEEPS, MEMORY_EXPIRED_ROWS)
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startDatabase } from './harness.js';

const megabyte = 1024 * 1024;

if (process.argv[2] === 'child') {
	const { default: Koa } = await import('koa');
	const { default: session } = await import('koa-session');
	const { PgStore } = await import('koa-pgstore');
	const store = new PgStore({ connectionString: process.env['DATABASE_URL'], cleanupInterval: 1000, onError: (error: unknown) => { console.error(error); } });
	const app = new Koa();
	app.keys = ['memory bench'];
	app.use(session({ store, maxAge: 3_600_000 }, app));
	app.use((ctx) => {
		if (ctx.path === '/write') {
			ctx.session!['views'] = Number(ctx.session!['views'] ?? 0) + 1;
		} else if (ctx.path === '/new') {
			ctx.session!['user'] = 'visitor';
		}
		ctx.body = ctx.session?.['views'] ?? 0;
	});
	const server = app.listen(0, '127.0.0.1');
	await once(server, 'listening');
	process.on('message', (message) => {
		if (message === 'memory') {
			process.send!({ heapUsed: process.memoryUsage().heapUsed });
		}
	});
	const address = server.address();
	process.send!({ port: typeof address === 'object' && address !== null ? address.port : 0 });
} else {
	const database = await startDatabase();
	const expiredRows = Number(process.env['MEMORY_EXPIRED_ROWS'] ?? 200_000);
	const sweepsWanted = Number(process.env['MEMORY_SWEEPS'] ?? 5);
	const child = fork(fileURLToPath(import.meta.url), ['child'], {
		env: { ...process.env, DATABASE_URL: database.url },
		execArgv: ['--import', 'tsx'],
		stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
	});
	const [{ port }] = await once(child, 'message') as [{ port: number }];
	const rssOf = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? Number.NaN) * 1024;
	const heapOf = async () => {
		child.send('memory');
		const [reply] = await once(child, 'message') as [{ heapUsed: number }];
		return reply.heapUsed;
	};
	const base = `http://127.0.0.1:${port}`;
	const cookies: string[] = [];
	// Serves `count` requests, 8 at a time: new sessions, then reads and writes of them.
	const serve = async (count: number) => {
		let next = 0;
		await Promise.all(Array.from({ length: 8 }, async () => {
			while (next < count) {
				const i = next++;
				const cookie = cookies[i % Math.max(cookies.length, 1)];
				const path = cookies.length < 200 || cookie === undefined ? '/new' : i % 2 === 0 ? '/write' : '/';
				const response = await fetch(`${base}${path}`, { headers: path === '/new' || cookie === undefined ? {} : { cookie } });
				await response.arrayBuffer();
				if (path === '/new') {
					cookies.push(response.headers.getSetCookie().map((c) => c.split(';')[0]).join('; '));
				}
			}
		}));
	};
	const sample = async (label: string) => {
		const rss = rssOf();
		const heap = await heapOf();
		console.log(`| ${label} | ${(rss / megabyte).toFixed(1)} | ${(heap / megabyte).toFixed(1)} |`);
		return rss;
	};
	console.log(`memory of one app server with the cleanup schedule, ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, PostgreSQL ${database.version}`);
	console.log('| when | RSS MiB | heap used MiB |');
	console.log('| --- | ---: | ---: |');
	await sample('started');
	// The schedule's first sweep comes at a random time within its interval; with nothing expired it deletes nothing.
	await serve(4000);
	const before = await sample('after 4,000 requests, before expired rows');
	let peak = before;
	for (let sweep = 1; sweep <= sweepsWanted; sweep++) {
		await database.pool.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
			SELECT pg_catalog.md5(random()::text || i), '{"views":1}', now() - interval '2 hours', now() - interval '2 hours', now() - interval '1 hour'
			FROM generate_series(1, $1::int) AS i`, [expiredRows]);
		// Serving while the sweep runs, until it has deleted every expired row.
		for (;;) {
			await serve(500);
			const [row] = (await database.pool.query<{ expired: number }>('SELECT count(*)::int AS expired FROM http_sessions WHERE expires_on <= now()')).rows;
			if (row?.expired === 0) {
				break;
			}
		}
		peak = Math.max(peak, await sample(`after sweep ${sweep} of ${expiredRows.toLocaleString('en')} expired rows`));
	}
	console.log(`\nlargest RSS after a sweep: ${((peak - before) / megabyte).toFixed(1)} MiB above the RSS before the first one; peak RSS (VmHWM) ${(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024).toFixed(1)} MiB`);
	child.kill();
	await database.close();
}
