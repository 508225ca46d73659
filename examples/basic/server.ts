// A visit counter with logout: `npm start`, then open http://localhost:3000.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Keygrip from 'keygrip';
import Koa from 'koa';
import session from 'koa-session';
import { PgStore } from 'koa-pgstore';
import { startPostgres } from '../../scripts/embedded-postgres.js';

const dataDirectory = fileURLToPath(new URL('../../.data/', import.meta.url));

// Sessions live in DATABASE_URL, or else in a PostgreSQL of the example's own kept in .data/,
// so they survive a restart.
async function openDatabase(): Promise<{ url: string; stop: () => Promise<void> }> {
	const url = process.env['DATABASE_URL'];
	if (url) {
		return { url, stop: async () => {} };
	}
	const port = Number(process.env['EXAMPLE_PG_PORT'] ?? 54_329);
	const server = await startPostgres({ databaseDir: `${dataDirectory}postgres`, port });
	console.log(`PostgreSQL (embedded) on port ${port}, data in .data/postgres`);
	return { url: server.url, stop: () => server.stop() };
}

// Cookie-signing secrets, newest first. In production they come from the environment; here a
// random one is made once and kept in .data/ so that cookies stay valid across restarts.
function sessionSecrets(): string[] {
	const fromEnvironment = process.env['SESSION_KEYS'];
	if (fromEnvironment) {
		return fromEnvironment.split(',');
	}
	const file = `${dataDirectory}session-secret`;
	try {
		return [readFileSync(file, 'utf8').trim()];
	} catch {
		mkdirSync(dataDirectory, { recursive: true });
		const secret = randomBytes(32).toString('base64url');
		writeFileSync(file, `${secret}\n`, { mode: 0o600 });
		return [secret];
	}
}

const database = await openDatabase();
let shuttingDown = false;
const store = new PgStore({
	connectionString: database.url,
	// Connections the database closes while the app shuts down are expected; others are not.
	onError: (error, { source }) => {
		if (!shuttingDown) {
			console.error(`koa-pgstore: ${source}: ${error.message}`);
		}
	},
});
await store.ensureSchema();

const app = new Koa();
app.keys = new Keygrip(sessionSecrets(), 'sha256');
app.use(session({ store, key: 'sid', maxAge: 7 * 86_400_000, sameSite: 'lax' }, app));

app.use(async (ctx) => {
	if (ctx.method === 'POST' && ctx.path === '/logout') {
		ctx.session = null;
		ctx.redirect('/');
		return;
	}
	if (ctx.method !== 'GET' || ctx.path !== '/' || ctx.session === null) {
		ctx.status = 404;
		return;
	}
	const visits = Number(ctx.session['visits'] ?? 0) + 1;
	ctx.session['visits'] = visits;
	ctx.type = 'html';
	ctx.body = `<!doctype html>
<title>koa-pgstore example</title>
<h1>You have visited this page ${visits} time${visits === 1 ? '' : 's'}.</h1>
<p>The count lives in PostgreSQL, in the <code>http_sessions</code> table; your browser holds only a signed cookie.</p>
<form method="post" action="/logout"><button>Log out</button></form>`;
});

const port = Number(process.env['PORT'] ?? 3000);
const server = app.listen(port, () => console.log(`Example listening on http://localhost:${port}`));

async function shutdown(): Promise<void> {
	shuttingDown = true;
	server.close();
	server.closeAllConnections();
	await store.close();
	await database.stop();
	process.exit(0);
}
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
