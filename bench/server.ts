// One benchmark app server, run as a child process of bench/run.ts so that the load generator
// and the app do not share an event loop. Serves the same routes with one store, twice: a plain
// app and a `rolling: true` one. Prints the two ports as JSON once listening.
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import session from 'koa-session';
import { PgStore } from '../src/index.js';
import { NaivePgStore } from './naive-pg-store.js';

export type StoreKind = 'koa-pgstore' | 'pg' | 'cookie';

const kind = process.argv[2] as StoreKind;
const connectionString = process.env['BENCH_DATABASE_URL'] ?? '';
const touchAfter = Number(process.env['BENCH_TOUCH_AFTER'] ?? 60_000);

const store = kind === 'koa-pgstore'
	? new PgStore({ connectionString, cleanupInterval: 0, touchAfter })
	: kind === 'pg' ? new NaivePgStore(connectionString) : undefined;

function app(rolling: boolean): Koa {
	const koa = new Koa();
	koa.keys = ['a benchmark secret of at least thirty-two bytes'];
	koa.use(session({ ...store ? { store } : {}, rolling, maxAge: 3_600_000 }, koa));
	koa.use((ctx) => {
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
	return koa;
}

const servers = [app(false).listen(0, '127.0.0.1'), app(true).listen(0, '127.0.0.1')];
await Promise.all(servers.map((server) => new Promise((resolve) => server.once('listening', resolve))));
const [plain, rolling] = servers.map((server) => (server.address() as AddressInfo).port);
process.stdout.write(`${JSON.stringify({ plain, rolling })}\n`);
process.on('SIGTERM', async () => {
	for (const server of servers) {
		server.closeAllConnections();
		server.close();
	}
	await store?.close();
	process.exit(0);
});
