import type { AddressInfo } from 'node:net';
import type { ExecutionContext } from 'ava';
import Koa from 'koa';
import session from 'koa-session';

type SessionConfig = Parameters<typeof session>[0];

/** A Koa app with koa-session, listening on a free loopback port until the test ends. */
export async function startApp(
	t: ExecutionContext,
	{ keys = ['a test secret that is long enough to sign with'], session: sessionConfig, handler, before }: {
		keys?: Koa['keys'] | string[];
		session: SessionConfig;
		handler: Koa.Middleware;
		/** Mounted before koa-session's middleware. */
		before?: Koa.Middleware;
	},
): Promise<{ app: Koa; url: string }> {
	const app = new Koa();
	app.keys = keys;
	app.silent = true;
	if (before !== undefined) {
		app.use(before);
	}
	app.use(session(sessionConfig, app));
	app.use(handler);
	const server = app.listen(0, '127.0.0.1');
	await new Promise<void>((resolve) => server.once('listening', resolve));
	t.teardown(() => new Promise<void>((resolve) => {
		server.closeAllConnections();
		server.close(() => resolve());
	}));
	const { port } = server.address() as AddressInfo;
	return { app, url: `http://127.0.0.1:${port}` };
}

/** One `Set-Cookie` header, parsed. */
export interface SetCookie {
	readonly name: string;
	readonly value: string;
	readonly attributes: ReadonlyMap<string, string>;
}

export function parseSetCookie(header: string): SetCookie {
	const [pair = '', ...rest] = header.split(';').map((part) => part.trim());
	const separator = pair.indexOf('=');
	const attributes = new Map<string, string>();
	for (const attribute of rest) {
		const equals = attribute.indexOf('=');
		attributes.set(
			(equals === -1 ? attribute : attribute.slice(0, equals)).toLowerCase(),
			equals === -1 ? '' : attribute.slice(equals + 1),
		);
	}
	return { name: pair.slice(0, separator), value: pair.slice(separator + 1), attributes };
}

/** A browser's cookie store for one site: keeps what responses set, sends it back. */
export class CookieJar {
	readonly cookies = new Map<string, string>();

	header(): string {
		return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
	}

	store(response: Response): SetCookie[] {
		const set = response.headers.getSetCookie().map(parseSetCookie);
		for (const cookie of set) {
			const expires = cookie.attributes.get('expires');
			if (cookie.value === '' || (expires !== undefined && Date.parse(expires) <= Date.now())) {
				this.cookies.delete(cookie.name);
			} else {
				this.cookies.set(cookie.name, cookie.value);
			}
		}
		return set;
	}

	/** A copy, as a second tab of the same browser would share it at this moment. */
	clone(): CookieJar {
		const copy = new CookieJar();
		for (const [name, value] of this.cookies) {
			copy.cookies.set(name, value);
		}
		return copy;
	}
}

/** Sends a request with the jar's cookies and stores the cookies of the response. */
export async function request(
	url: string,
	jar: CookieJar,
	init: RequestInit = {},
): Promise<{ status: number; body: unknown; setCookies: SetCookie[] }> {
	const headers = new Headers(init.headers);
	if (jar.cookies.size > 0) {
		headers.set('cookie', jar.header());
	}
	const response = await fetch(url, { ...init, headers });
	const setCookies = jar.store(response);
	const text = await response.text();
	let body: unknown = text;
	if (response.headers.get('content-type')?.includes('json')) {
		body = JSON.parse(text);
	}
	return { status: response.status, body, setCookies };
}
