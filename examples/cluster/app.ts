// What each worker of the cluster example serves: a visit counter that says which worker
// answered. The session lives in PostgreSQL, so whichever worker gets the next request has it.
import cluster from 'node:cluster';
import Koa from 'koa';
import session from 'koa-session';
import { createKeys, type PgStore } from 'koa-pgstore';

declare module 'koa-pgstore' {
	interface SessionFields {
		visits?: number;
		/** The worker that served each visit, oldest first (the last ten). */
		servedBy?: number[];
	}
}

export function createClusterApp(store: PgStore, secrets: string | readonly string[]): Koa {
	const worker = cluster.worker?.id ?? 0;
	const app = new Koa();
	app.keys = createKeys(secrets);
	app.use(session({ key: 'sid', store, maxAge: 86_400_000, sameSite: 'lax', httpOnly: true }, app));
	app.use((ctx) => {
		if (ctx.method !== 'GET' || ctx.path !== '/' || ctx.session === null) {
			ctx.throw(404);
			return;
		}
		const visits = (ctx.session.visits ?? 0) + 1;
		const servedBy = [...ctx.session.servedBy ?? [], worker].slice(-10);
		ctx.session.visits = visits;
		ctx.session.servedBy = servedBy;
		ctx.set('x-worker', String(worker));
		ctx.type = 'html';
		ctx.body = `<!doctype html>
<title>koa-pgstore cluster example</title>
<h1>Visit ${visits}, served by worker ${worker} (pid ${process.pid})</h1>
<p>Your last visits were served by workers ${servedBy.join(', ')}: one session, read and
written by whichever worker took the connection.</p>`;
	});
	return app;
}
