// A Koa app with koa-session on a PgStore, run as a process of its own by tests that need several
// (test/pgbouncer.test.ts): `node --import=tsx test/helpers/session-app.ts`, with DATABASE_URL.
// Prints its port once listening; answers 500 with the error's name and `failure` on a store
// error; stops on SIGTERM after closing the store.
import Koa from 'koa';
import session from 'koa-session';
import pg from 'pg';
import { serveUntilTerminated } from '../../scripts/serve-until-terminated.js';
import { DatabaseError, PgStore } from '../../src/index.js';

// PGSTORE_CLEANUP_INTERVAL: this process's cleanup schedule (default: none). GATE_URL: a direct
// connection to the database, for `/slow`'s gate (an advisory lock the test holds).
const store = new PgStore({
	connectionString: process.env['DATABASE_URL'] ?? '',
	cleanupInterval: Number(process.env['PGSTORE_CLEANUP_INTERVAL'] ?? 0),
	subject: (session) => (typeof session['user'] === 'string' ? session['user'] : null),
	...process.env['PGSTORE_SCHEMA'] ? { schema: process.env['PGSTORE_SCHEMA'] } : {},
});
const app = new Koa();
app.keys = ['a test secret that is long enough to sign with'];
app.silent = true;
app.use(async (ctx, next) => {
	try {
		await next();
	} catch (error) {
		ctx.status = 500;
		ctx.body = { error: error instanceof Error ? error.name : String(error), failure: error instanceof DatabaseError ? error.failure : undefined, sqlState: error instanceof DatabaseError ? error.sqlState : undefined };
	}
});
app.use(session({ store, key: 'sid', maxAge: 3_600_000 }, app));
app.use(async (ctx) => {
	const current = ctx.session;
	if (current === null) {
		throw new Error('koa-session always gives a session');
	}
	switch (ctx.path) {
		case '/login': {
			await current.regenerate();
			if (ctx.session) {
				ctx.session['user'] = ctx.query['user'];
			}
			break;
		}
		case '/visit': {
			current['views'] = Number(current['views'] ?? 0) + 1;
			break;
		}
		case '/slow': {
			// Loaded; waits until the test releases advisory lock 4242, then saves a change.
			const gate = new pg.Client({ connectionString: process.env['GATE_URL'] });
			await gate.connect();
			try {
				await gate.query('SELECT pg_advisory_lock_shared(4242)');
			} finally {
				await gate.end();
			}
			current['lastSeen'] = process.pid;
			await current.save();
			break;
		}
		case '/sign-out-everywhere': {
			ctx.body = { pid: process.pid, ended: await store.destroyAll(String(ctx.query['user'])) };
			return;
		}
		case '/logout': {
			ctx.session = null;
			ctx.body = { pid: process.pid };
			return;
		}
		default:
			break;
	}
	ctx.body = { pid: process.pid, session: ctx.session?.toJSON() };
});

await serveUntilTerminated(app, store);
