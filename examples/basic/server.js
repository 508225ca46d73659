// A visit counter with logout: `npm start`, then open http://localhost:3000.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import Keygrip from 'keygrip';
import Koa from 'koa';
import session from 'koa-session';
import { PgStore } from 'koa-pgstore';
import { openDatabase } from './database.js';

// Cookie-signing secrets, newest first. In production they come from the environment; here a
// random one is made once and kept in .data/ so that cookies stay valid across restarts.
function sessionSecrets() {
	if (process.env.SESSION_KEYS) {
		return process.env.SESSION_KEYS.split(',');
	}
	const file = fileURLToPath(new URL('../../.data/session-secret', import.meta.url));
	try {
		return [readFileSync(file, 'utf8').trim()];
	} catch {
		mkdirSync(fileURLToPath(new URL('../../.data/', import.meta.url)), { recursive: true });
		const secret = randomBytes(32).toString('base64url');
		writeFileSync(file, `${secret}\n`, { mode: 0o600 });
		return [secret];
	}
}

const database = await openDatabase();
const store = new PgStore({ connectionString: database.url });
await store.ensureSchema();

const app = new Koa();
app.keys = new Keygrip(sessionSecrets(), 'sha256');
app.use(session({ store, key: 'sid', maxAge: 7 * 86_400_000, sameSite: 'lax', rolling: false }, app));

app.use(async (ctx) => {
	if (ctx.method === 'POST' && ctx.path === '/logout') {
		ctx.session = null;
		ctx.redirect('/');
		return;
	}
	if (ctx.method !== 'GET' || ctx.path !== '/') {
		ctx.status = 404;
		return;
	}
	const visits = Number(ctx.session.visits ?? 0) + 1;
	ctx.session.visits = visits;
	ctx.type = 'html';
	ctx.body = `<!doctype html>
<title>koa-pgstore example</title>
<h1>You have visited this page ${visits} time${visits === 1 ? '' : 's'}.</h1>
<p>The count lives in PostgreSQL, in the <code>http_sessions</code> table; your browser holds only a signed cookie.</p>
<form method="post" action="/logout"><button>Log out</button></form>`;
});

const port = Number(process.env.PORT ?? 3000);
const server = app.listen(port, () => console.log(`Example listening on http://localhost:${port}`));

async function shutdown() {
	server.close();
	server.closeAllConnections();
	await store.close();
	await database.stop();
	process.exit(0);
}
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
