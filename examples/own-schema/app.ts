// An app whose own Prisma schema holds the session table: koa-pgstore gets the app's client (an
// `$extends`-ed one) and follows the table the model maps to (`user_sessions`). See README.md
// beside this file; test/example-own-schema.test.ts drives it over HTTP.
import { readdir, readFile } from 'node:fs/promises';
import { PrismaPg } from '@prisma/adapter-pg';
import Koa from 'koa';
import session from 'koa-session';
import { createKeys, PgStore } from 'koa-pgstore';
import { PrismaClient } from './generated/client.js';

declare module 'koa-pgstore' {
	interface SessionFields {
		userId?: string;
	}
}

/** The app's client: generated from prisma/schema/, extended as apps do. */
export function createClient(connectionString: string) {
	return new PrismaClient({ adapter: new PrismaPg({ connectionString }) }).$extends({
		result: {
			user: {
				displayName: {
					needs: { name: true, email: true },
					compute: (user) => user.name ?? user.email,
				},
			},
		},
	});
}

export type AppClient = ReturnType<typeof createClient>;

const migrationsDirectory = new URL('prisma/migrations/', import.meta.url);

/**
 * What `prisma migrate deploy` would do on a new database, for running the example offline: applies
 * the SQL of prisma/migrations/ when the app's tables are missing. It records nothing in
 * `_prisma_migrations`; see README.md for `prisma migrate resolve --applied` afterwards.
 */
export async function applyMigrationSqlIfMissing(prisma: AppClient): Promise<boolean> {
	const [found] = await prisma.$queryRaw<{ exists: boolean }[]>`SELECT to_regclass('"User"') IS NOT NULL AS "exists"`;
	if (found?.exists) {
		return false;
	}
	const names = (await readdir(migrationsDirectory, { withFileTypes: true }))
		.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
	await prisma.$transaction(async (transaction) => {
		for (const name of names) {
			await transaction.$executeRawUnsafe(await readFile(new URL(`${name}/migration.sql`, migrationsDirectory), 'utf8'));
		}
	});
	return true;
}

/** The app, on the app's own client; `prisma.$disconnect()` is the app's to call, not the store's. */
export function createOwnSchemaApp(prisma: AppClient, secrets: string | readonly string[]): { app: Koa; store: PgStore } {
	// The store takes the app's client as it is, extensions and all, and never disconnects it.
	const store = new PgStore({
		prisma,
		subject: (data) => data.userId,
	});
	const app = new Koa();
	app.keys = createKeys(secrets);
	app.use(session({ key: 'sid', store, maxAge: 86_400_000, sameSite: 'lax', httpOnly: true }, app));

	app.use(async (ctx) => {
		if (ctx.session === null) {
			return ctx.throw(500, 'koa-session is not mounted');
		}
		const route = `${ctx.method} ${ctx.path}`;
		if (route === 'GET /') {
			const userId = ctx.session.userId;
			const user = userId === undefined ? null : await prisma.user.findUnique({ where: { id: Number(userId) } });
			const sessions = user === null ? 0 : await prisma.pGSession.count({ where: { subject: String(user.id) } });
			ctx.type = 'html';
			ctx.body = user === null
				? `<!doctype html><title>Sign in</title>
<h1>Sign in</h1>
<form method="post" action="/sign-in">
<p><label>Email <input name="email" type="email" required></label> <label>Name <input name="name"></label></p>
<p><button>Sign in</button> (no password: the example is about the schema)</p>
</form>`
				: `<!doctype html><title>Signed in</title>
<h1>Hello, ${escapeHtml(user.displayName)}</h1>
<p>You have ${sessions} session${sessions === 1 ? '' : 's'} in the <code>user_sessions</code> table of this app's own schema.</p>
<form method="post" action="/sign-out"><button>Sign out</button></form>`;
			return;
		}
		if (route === 'POST /sign-in') {
			const form = new URLSearchParams(await readBody(ctx));
			const email = form.get('email')?.trim().toLowerCase() ?? '';
			if (!email.includes('@')) {
				return ctx.throw(400, 'An email address, please');
			}
			const name = form.get('name')?.trim() || null;
			const user = await prisma.user.upsert({ where: { email }, create: { email, name }, update: {} });
			await ctx.session.regenerate();
			ctx.session.userId = String(user.id);
			ctx.redirect('/');
			ctx.status = 303;
			return;
		}
		if (route === 'POST /sign-out') {
			ctx.session = null;
			ctx.redirect('/');
			ctx.status = 303;
			return;
		}
		ctx.throw(404);
	});
	return { app, store };
}

async function readBody(ctx: Koa.Context): Promise<string> {
	if (!ctx.is('application/x-www-form-urlencoded')) {
		return ctx.throw(415, 'Expected a form (application/x-www-form-urlencoded)');
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
	return Buffer.concat(chunks).toString('utf8');
}

function escapeHtml(text: string): string {
	return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}
