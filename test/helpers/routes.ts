import type Koa from 'koa';
import { SessionEndedError, type PgStore } from '../../src/index.js';
import type { Gate } from './gate.js';
import { day } from './time.js';

/**
 * The routes the HTTP tests' apps serve. Each answers with the session as JSON, after the change
 * its path names; `ctx.session` is typed by koa-pgstore.
 *
 * @param options.store For the subject routes (`/devices`, `/sign-out-others`).
 * @param options.gate `/slow-write` waits there after loading its session, before changing it.
 */
export function sessionRoutes({ store, gate }: { store?: PgStore; gate?: Gate } = {}): Koa.Middleware {
	const routes = handle(store, gate);
	return async (ctx, next) => {
		try {
			await routes(ctx, next);
		} catch (error) {
			// What an app does when its session ended while the request ran: ask to sign in again.
			if (!(error instanceof SessionEndedError)) {
				throw error;
			}
			ctx.status = 401;
			ctx.body = { ended: true };
		}
	};
}

function handle(store: PgStore | undefined, gate: Gate | undefined): Koa.Middleware {
	return async (ctx) => {
		const session = ctx.session;
		if (session === null) {
			throw new Error('koa-session always gives a session');
		}
		const user = session['userId'];
		switch (ctx.path) {
			case '/count': {
				session['views'] = (typeof session['views'] === 'number' ? session['views'] : 0) + 1;
				break;
			}
			case '/set': {
				for (const [name, value] of new URLSearchParams(ctx.querystring)) {
					session[name] = value;
				}
				break;
			}
			case '/login': {
				// Keeps what the visitor had before logging in, on a new key.
				const carried = session.toJSON();
				await session.regenerate();
				Object.assign(ctx.session ?? {}, carried, { user: 'ada' });
				break;
			}
			case '/sign-in': {
				await session.regenerate();
				Object.assign(ctx.session ?? {}, { userId: ctx.query['user'] });
				break;
			}
			case '/logout': {
				ctx.session = null;
				ctx.body = { loggedOut: true };
				return;
			}
			case '/remember-me': {
				session.maxAge = 30 * day;
				break;
			}
			case '/save': {
				await session.save();
				break;
			}
			case '/slow-write': {
				await gate?.wait();
				session['lastSeen'] = 'slow tab';
				break;
			}
			case '/later': {
				// Loads the session, waits at the gate, then sets the query's fields (`-name` deletes
				// one) and does what `then` says: `save`, `save-twice`, `regenerate`.
				await gate?.wait();
				const query = new URLSearchParams(ctx.querystring);
				for (const [name, value] of query) {
					if (name === 'then') {
						continue;
					}
					if (name.startsWith('-')) {
						delete session[name.slice(1)];
					} else {
						session[name] = value;
					}
				}
				const then = query.get('then');
				if (then === 'save' || then === 'save-twice') {
					await session.save();
				}
				if (then === 'save-twice') {
					await session.save();
				}
				if (then === 'regenerate') {
					await session.regenerate();
				}
				break;
			}
			case '/password-reset': {
				// Ends every session of the user, this one included, and signs in on a fresh key.
				if (typeof user === 'string' && store !== undefined) {
					await store.destroyAll(user, { ctx });
				}
				await session.regenerate();
				Object.assign(ctx.session ?? {}, { userId: user, reset: true });
				break;
			}
			case '/set-json': {
				let text = '';
				for await (const chunk of ctx.req) {
					text += String(chunk);
				}
				Object.assign(session, JSON.parse(text) as object);
				break;
			}
			case '/devices': {
				ctx.body = typeof user === 'string' && store !== undefined ? await store.list(user, { ctx }) : [];
				return;
			}
			case '/sign-out-others': {
				ctx.body = { ended: typeof user === 'string' && store !== undefined ? await store.destroyAll(user, { except: ctx }) : 0 };
				return;
			}
			default:
				break;
		}
		ctx.body = { ...ctx.session?.toJSON() };
	};
}
