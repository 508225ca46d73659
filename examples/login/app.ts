// Sign-in, sign-out and a "your devices" page on koa-pgstore: server-rendered HTML and forms,
// no front-end build, no router. `npm run example:login` runs it (see README.md beside this file);
// test/example-login.test.ts drives it over HTTP.
import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import Koa from 'koa';
import session from 'koa-session';
import { createKeys, PgStore, reissueOnRotation, type SessionList } from 'koa-pgstore';

declare module 'koa-pgstore' {
	interface SessionFields {
		/** Who signed in; also the session's `subject`, for the devices page. */
		userId?: string;
		/** Failed sign-ins of this browser since its last success. */
		failedSignIns?: number;
	}
}

/** The session cookie's name. */
export const cookieName = 'sid';

/** Options of {@link createLoginApp}. */
export interface LoginAppOptions {
	/** Where the sessions live. */
	connectionString: string;
	/** Cookie-signing secrets, newest first: an array or `SESSION_KEYS`' comma-separated list. */
	secrets: string | readonly string[];
	/** @default 60_000: a session's stored expiry (and "last active") moves at most once a minute */
	touchAfter?: number;
}

// Demo accounts. A real app keeps a password hash per user in its database; scrypt with a salt
// of each user's own is what node:crypto offers for it.
function passwordHash(password: string, salt = randomBytes(16)): { salt: Buffer; hash: Buffer } {
	return { salt, hash: scryptSync(password, salt, 32) };
}
const users = new Map([
	['ada', { id: 'ada', name: 'Ada Lovelace', ...passwordHash('analytical engine') }],
	['alan', { id: 'alan', name: 'Alan Turing', ...passwordHash('universal machine') }],
]);
const nobody = passwordHash('a password nobody has');

function authenticate(username: string, password: string): { id: string; name: string } | undefined {
	const user = users.get(username);
	// An unknown name costs the same scrypt as a known one, so timing does not tell them apart.
	const { salt, hash } = user ?? nobody;
	const matches = timingSafeEqual(scryptSync(password, salt, 32), hash);
	return user !== undefined && matches ? user : undefined;
}

/**
 * The example app and its store. The store's table is created (or found up to date) before this
 * resolves; `store.close()` ends its connections.
 */
export async function createLoginApp(options: LoginAppOptions): Promise<{ app: Koa; store: PgStore }> {
	const store = new PgStore({
		connectionString: options.connectionString,
		// Stored in the `subject` column: what `list`, `destroySession` and `destroyAll` select by.
		subject: (data) => data.userId,
		// With `rolling: true` below every response re-sends the cookie; the row is written again
		// only once its stored expiry is more than this much behind.
		touchAfter: options.touchAfter ?? 60_000,
	});
	await store.ensureSchema();

	const app = new Koa();
	const keys = createKeys(options.secrets);
	const secretCount = typeof options.secrets === 'string' ? options.secrets.split(',').length : options.secrets.length;
	app.keys = keys;
	app.use(session({
		key: cookieName,
		store,
		maxAge: 14 * 86_400_000,
		rolling: true, // two weeks from the last visit, not from sign-in
		// `lax` keeps the cookie off cross-site POSTs: the forms below need no CSRF token in
		// browsers that honour it; the Origin check below covers the others.
		sameSite: 'lax',
		httpOnly: true,
	}, app));
	// Cookies signed with an older secret are sent again, signed with the newest.
	app.use(reissueOnRotation());

	app.use(async (ctx, next) => {
		// Koa 3's `ctx.origin` is this very header; the app's own origin is built from the Host.
		const origin = ctx.get('origin');
		if (ctx.method === 'POST' && origin !== '' && origin !== `${ctx.protocol}://${ctx.host}`) {
			ctx.throw(403, 'Cross-site form');
		}
		await next();
	});

	app.use(async (ctx) => {
		if (ctx.session === null) {
			return ctx.throw(500, 'koa-session is not mounted');
		}
		const userId = ctx.session.userId;
		const user = userId === undefined ? undefined : users.get(userId);
		const route = `${ctx.method} ${ctx.path}`;
		const deviceSignOut = /^\/devices\/(\d+)\/sign-out$/.exec(ctx.path);

		if (route === 'GET /') {
			ctx.type = 'html';
			ctx.body = user === undefined ? signInPage() : homePage(user.name, keys.index(
				`${cookieName}=${ctx.cookies.get(cookieName, { signed: false }) ?? ''}`,
				ctx.cookies.get(`${cookieName}.sig`, { signed: false }) ?? '',
			), secretCount);
			return;
		}
		if (route === 'POST /sign-in') {
			const form = await formBody(ctx);
			const username = form.get('username') ?? '';
			const signedIn = authenticate(username, form.get('password') ?? '');
			if (signedIn === undefined) {
				ctx.session.failedSignIns = (ctx.session.failedSignIns ?? 0) + 1;
				ctx.status = 401;
				ctx.type = 'html';
				ctx.body = signInPage(username, 'Wrong name or password.');
				return;
			}
			// A new key for the signed-in session: a cookie planted before sign-in (session
			// fixation), or copied from this browser before, is worth nothing now. The old row is
			// deleted; the data move to the new key.
			await ctx.session.regenerate();
			delete ctx.session.failedSignIns;
			ctx.session.userId = signedIn.id;
			ctx.redirect('/');
			ctx.status = 303;
			return;
		}
		if (route === 'POST /sign-out') {
			ctx.session = null; // deletes the row and clears the cookies
			ctx.redirect('/');
			ctx.status = 303;
			return;
		}
		if (user === undefined) {
			ctx.redirect('/');
			ctx.status = 303;
			return;
		}
		if (route === 'GET /devices') {
			const ended = Number(ctx.query['ended'] ?? Number.NaN);
			ctx.type = 'html';
			ctx.body = devicesPage(user.name, await store.list(user.id, { ctx }), Number.isInteger(ended) ? ended : undefined);
			return;
		}
		if (ctx.method === 'POST' && deviceSignOut?.[1] !== undefined) {
			// Only a session of this user ends: an id of someone else's session finds nothing.
			if (!await store.destroySession(user.id, deviceSignOut[1])) {
				ctx.throw(404, 'No such session of yours');
			}
			ctx.redirect('/devices');
			ctx.status = 303;
			return;
		}
		if (route === 'POST /devices/sign-out-others') {
			const ended = await store.destroyAll(user.id, { except: ctx });
			ctx.redirect(`/devices?ended=${ended}`);
			ctx.status = 303;
			return;
		}
		ctx.throw(404);
	});
	return { app, store };
}

/** The urlencoded body of a form POST, read with node's own URLSearchParams. */
async function formBody(ctx: Koa.Context): Promise<URLSearchParams> {
	if (!ctx.is('application/x-www-form-urlencoded')) {
		ctx.throw(415, 'Expected a form (application/x-www-form-urlencoded)');
	}
	const chunks: Buffer[] = [];
	let size = 0;
	for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
		size += chunk.length;
		if (size > 10_000) {
			ctx.throw(413, 'Form too large');
		}
		chunks.push(chunk);
	}
	return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function escapeHtml(text: string): string {
	return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function layout(title: string, body: string): string {
	return `<!doctype html>
<meta charset="utf-8">
<title>${escapeHtml(title)} · koa-pgstore login example</title>
<style>body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem } td, th { padding: .2rem .6rem; text-align: left }</style>
${body}`;
}

function signInPage(username = '', error?: string): string {
	return layout('Sign in', `<h1>Sign in</h1>
${error === undefined ? '' : `<p role="alert">${escapeHtml(error)}</p>`}
<form method="post" action="/sign-in">
<p><label>Name <input name="username" value="${escapeHtml(username)}" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button>Sign in</button></p>
</form>
<p>Demo accounts: <code>ada</code> / <code>analytical engine</code>, <code>alan</code> / <code>universal machine</code>.</p>`);
}

function homePage(name: string, keyIndex: number, keyCount: number): string {
	// keyIndex is where the secret that verified this request's cookie stands in SESSION_KEYS.
	const signature = keyIndex <= 0
		? `<p>Your session cookie is signed with the newest of ${keyCount} secret${keyCount === 1 ? '' : 's'}.</p>`
		: `<p>Your session cookie arrived signed with secret #${keyIndex + 1} of ${keyCount}, an older one:
this response has just re-signed it with the newest (<code>reissueOnRotation()</code>), without a
database write. Reload to see.</p>`;
	return layout('Signed in', `<h1>Signed in as ${escapeHtml(name)}</h1>
${signature}
<p><a href="/devices">Your devices</a></p>
<form method="post" action="/sign-out"><button>Sign out</button></form>`);
}

function devicesPage(name: string, sessions: SessionList, ended: number | undefined): string {
	const time = (date: Date) => `<time datetime="${date.toISOString()}">${date.toISOString().replace('T', ' ').slice(0, 19)} UTC</time>`;
	const rows = sessions.map((listing) => `<tr data-session="${listing.id}">
<td>${time(listing.createdOn)}</td><td>${time(listing.modifiedOn)}</td><td>${time(listing.expiresOn)}</td>
<td>${listing.current
		? '<strong>this device</strong>'
		: `<form method="post" action="/devices/${listing.id}/sign-out"><button>Sign out</button></form>`}</td>
</tr>`).join('\n');
	return layout('Your devices', `<h1>${escapeHtml(name)}'s devices</h1>
${ended === undefined ? '' : `<p role="status">Signed out of ${ended} other session${ended === 1 ? '' : 's'}.</p>`}
<table>
<thead><tr><th>signed in</th><th>last active</th><th>expires</th><th></th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
${sessions.hasMore ? `<p>You are signed in on more devices than shown: "Sign out everywhere else" ends them all.</p>` : ''}
<p>"Last active" moves at most once a minute: the store skips rewriting an unchanged session
whose stored expiry is less than <code>touchAfter</code> behind.</p>
<form method="post" action="/devices/sign-out-others"><button>Sign out everywhere else</button></form>
<p><a href="/">Home</a></p>`);
}
