import Keygrip from 'keygrip';
import type { Middleware } from 'koa';

/** Options of {@link reissueOnRotation}. */
export interface ReissueOptions {
	/**
	 * The session cookie's name.
	 * @default koa-session's `key` option for the request (`koa.sess` unless you set one)
	 */
	key?: string;
}

const arrayKeygrips = new WeakMap<object, Keygrip>();

// `cookies` verifies with `app.keys`, turning a plain array into a Keygrip with its defaults.
function keygripOf(keys: Keygrip | string[]): Keygrip {
	if (!Array.isArray(keys)) {
		return keys;
	}
	let keygrip = arrayKeygrips.get(keys);
	if (keygrip === undefined) {
		keygrip = new Keygrip(keys);
		arrayKeygrips.set(keys, keygrip);
	}
	return keygrip;
}

/**
 * Keeps users signed in across a key rotation. When a session cookie verifies with an older key,
 * `cookies` re-signs only its `.sig` cookie, without expiry, SameSite or Secure (so it dies when
 * the browser closes: pillarjs/cookies#22). This middleware then sends both cookies again, with
 * koa-session's attributes and the session's own expiry, signed with the newest key. No database
 * write is needed.
 *
 * Mount it before or after koa-session's middleware (it acts once the request is done; tested in
 * both orders), on an app that uses koa-session.
 *
 * @example
 * ```ts
 * app.keys = createKeys(process.env.SESSION_KEYS);
 * app.use(session({ key: 'sid', store }, app));
 * app.use(reissueOnRotation());
 * ```
 */
export function reissueOnRotation(options: ReissueOptions = {}): Middleware {
	if (options.key !== undefined && (typeof options.key !== 'string' || options.key === '')) {
		throw new TypeError(`Expected \`key\` to be a non-empty string, got ${typeof options.key}`);
	}
	return async function reissueOnRotationMiddleware(ctx, next) {
		const sessionOptions = ctx.sessionOptions as typeof ctx.sessionOptions | undefined;
		if (sessionOptions === undefined) {
			throw new TypeError('reissueOnRotation() needs koa-session\'s middleware on the same app (`app.use(session({ store }, app))`)');
		}
		const name = options.key ?? sessionOptions.key ?? 'koa.sess';
		const value = ctx.cookies.get(name, { signed: false });
		const signature = ctx.cookies.get(`${name}.sig`, { signed: false });
		// Index 0 is the newest key: nothing to do. -1: koa-session ignored the cookie already.
		const olderKey = value !== undefined && signature !== undefined && ctx.app.keys !== undefined
			&& keygripOf(ctx.app.keys).index(`${name}=${value}`, signature) > 0;
		await next();
		const session = ctx.session;
		// Only a session that was loaded from this very cookie, and only when koa-session has not
		// set the cookie already in this response: after `regenerate()` (whose `externalKey` still
		// names the old key) or a logout, the old value must not come back. When koa-session commits
		// after this returns, it overwrites these cookies anyway.
		if (!olderKey || session === null || session.isNew || session.externalKey !== value || setsCookie(ctx.response.get('set-cookie'), name)) {
			return;
		}
		const expire = session['_expire'];
		const { maxAge: _maxAge, ...attributes } = sessionOptions;
		ctx.cookies.set(name, value, {
			...attributes,
			...typeof expire === 'number' ? { expires: new Date(expire) } : {},
			signed: true,
			overwrite: true,
		});
	};
}

// Whether the response's `Set-Cookie` headers already set the cookie `name`.
function setsCookie(headers: string | string[], name: string): boolean {
	const list = typeof headers === 'string' ? (headers === '' ? [] : [headers]) : headers;
	return list.some((header) => header.startsWith(`${name}=`));
}
