// The apps under test: Koa + koa-session on PgStores, with the routes the fuzzer's requests take,
// and the holds that let the runner decide the interleaving.
//
// Holds are waits on the runner, never timers:
// - after loading its session, in the route (a user who leaves a tab open);
// - before each write statement the store sends, in the store's own pool: the store has decided
//   what to write and computed its expiry, the statement is not on the wire yet (a pool wait, a
//   slow network, another instance): a save computed earlier can land later;
// - after each write statement, once PostgreSQL applied it, before the store hears back: that is
//   where `regenerate()`'s delete and insert come apart.
// A store writes a key in the order of its saves: a write or delete waits while an earlier one of
// the same key in that store is in flight (held, here). The store tells the app so (its test-only
// `writeTurn`): the request reports itself queued, and once the earlier one settled it starts only
// when the runner gives it its turn, so that still only one request moves at a time.
// The holds keep no row lock: each write is one statement on its own (autocommitted), held before
// it is sent or after PostgreSQL answered. So a write of another store is never kept waiting by a
// held one (its `SKIP LOCKED` finds no lock to skip), and needs no modelling.
// The store is used as an app uses it (`connectionString`); its pool gets a client class that
// holds, through node-postgres' own `Client` pool option.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import Koa from 'koa';
import session from 'koa-session';
import pg from 'pg';
import { PgStore, SessionEndedError, type PgStoreOptions } from '../../src/index.js';
import { digestKey } from '../../src/codec/key-digest.js';
import { writeTurn, type InternalOptions } from '../../src/store/internal-options.js';
import { hour } from '../helpers/time.js';
import type { Route, User, WriteHold } from './model.js';
import type { Variant } from './variants.js';

/**
 * Where an actor (a request, or a direct `destroyAll`) is, as the runner sees it: held, queued (a
 * write of it waits for an earlier write of its key in its store), or done.
 */
export type ActorEvent = { readonly kind: 'held'; readonly at: string } | { readonly kind: 'queued' } | { readonly kind: 'done' };

/** A write of an actor that waits for an earlier one of its key. */
interface Turn {
	/** The earlier one settled: the write may start once the runner lets it. */
	came: boolean;
	readonly start: () => void;
	readonly coming: Promise<void>;
}

/** What a request found when it loaded its session. */
export interface Loaded {
	/** koa-session made a new session: nothing was loaded. */
	readonly isNew: boolean;
	/** The session's identity token (`sess`): the id of the request that started it. */
	readonly sess: string | undefined;
	readonly userId: string | undefined;
	/** The digest of the key it loaded (as the table stores it). */
	readonly key: string | undefined;
}

/** A field removed by a request, in its record of its own changes. */
export const removed = Symbol('removed');

/**
 * A request or a direct `destroyAll` that the runner moves step by step. The app and the pool call
 * `hold()`; the runner calls `release()` and waits on `next()`.
 */
export class Actor {
	readonly id: string;
	readonly holdAfterLoad: boolean;
	readonly holdWrites: WriteHold;
	/** The route, for requests. */
	readonly route: Route | undefined;
	/** Where it waits now. */
	heldAt: string | undefined;
	loaded: Loaded | undefined;
	/** What this request itself set (`removed` for a delete): a value it writes again is its own. */
	readonly own = new Map<string, unknown>();
	/** The `sess` token this request minted, for a session it started. */
	minted: string | undefined;
	/** A password reset whose `destroyAll` returned. */
	signedOut = false;
	/** The write statements it sent, in order. */
	readonly writes: string[] = [];
	/** An error the app answered with 500, by name and message. */
	failure: string | undefined;
	readonly #events: ActorEvent[] = [];
	#waiter: ((event: ActorEvent) => void) | undefined;
	#release: (() => void) | undefined;
	/** Its writes that wait for an earlier write of their key, oldest first. */
	readonly #turns: Turn[] = [];
	#open = false;

	constructor(id: string, { route, holdAfterLoad = false, holdWrites = 'none' }: { route?: Route; holdAfterLoad?: boolean; holdWrites?: WriteHold } = {}) {
		this.id = id;
		this.route = route;
		this.holdAfterLoad = holdAfterLoad;
		this.holdWrites = holdWrites;
	}

	/** Called where the actor waits: tells the runner, and resolves once released. */
	hold(at: string): Promise<void> {
		if (this.#open) {
			return Promise.resolve();
		}
		return new Promise((resolve) => {
			this.#release = resolve;
			this.heldAt = at;
			this.#emit({ kind: 'held', at });
		});
	}

	/** Lets it go on from its hold. */
	release(): void {
		const release = this.#release;
		this.#release = undefined;
		this.heldAt = undefined;
		release?.();
	}

	/**
	 * The store's `writeTurn`: a write of this actor waits for an earlier one of its key, whose
	 * settling is `previous`. Tells the runner it is queued; the write starts once `previous`
	 * settled and the runner called `takeTurn()`.
	 */
	waitTurn(previous: Promise<void>): Promise<void> {
		if (this.#open) {
			return previous;
		}
		let start: () => void = () => {};
		const started = new Promise<void>((resolve) => { start = resolve; });
		const turn: Turn = { came: false, start, coming: previous.then(() => { turn.came = true; }) };
		this.#turns.push(turn);
		this.#emit({ kind: 'queued' });
		return turn.coming.then(() => started);
	}

	/** Whether a write of it waits for an earlier one of its key. */
	get queued(): boolean {
		return this.#turns.length > 0;
	}

	/** Whether a write of it that waited may start now: the earlier one of its key settled. */
	get turnCame(): boolean {
		return this.#turns.some((turn) => turn.came);
	}

	/** Settles once a write of it that waits may start. */
	turnComing(): Promise<void> {
		return Promise.race(this.#turns.map((turn) => turn.coming));
	}

	/** Starts its oldest write whose turn came. */
	takeTurn(): void {
		const index = this.#turns.findIndex((turn) => turn.came);
		const [turn] = index === -1 ? [] : this.#turns.splice(index, 1);
		turn?.start();
	}

	/** Releases it, and lets every later hold and queued write pass: for an iteration given up on. */
	openForGood(): void {
		this.#open = true;
		this.release();
		for (const turn of this.#turns.splice(0)) {
			turn.start();
		}
	}

	/** Called by the runner when the response (or the direct call) is complete. */
	finish(): void {
		this.#emit({ kind: 'done' });
	}

	/** The next hold it reached, or its end. */
	next(): Promise<ActorEvent> {
		const event = this.#events.shift();
		if (event !== undefined) {
			return Promise.resolve(event);
		}
		return new Promise((resolve) => { this.#waiter = resolve; });
	}

	#emit(event: ActorEvent): void {
		const waiter = this.#waiter;
		if (waiter === undefined) {
			this.#events.push(event);
		} else {
			this.#waiter = undefined;
			waiter(event);
		}
	}
}

/** The actor whose code runs: set around each request and each direct call, read by the pool. */
export const currentActor = new AsyncLocalStorage<Actor>();

const writeVerb = /\b(INSERT|UPDATE|DELETE)\b/;

// A statement as a hold names it: the store's statement name (from its prepared name) or its verb.
function statementLabel(text: string, name: unknown): string {
	const stored = typeof name === 'string' ? /^koa_pgstore_([A-Za-z]+)_/.exec(name)?.[1] : undefined;
	return stored ?? writeVerb.exec(text)?.[1] ?? 'statement';
}

/**
 * node-postgres' client, holding each write statement of an actor that holds writes (before it is
 * sent, or once it is applied) until the runner releases it. Reads pass: holding a request before
 * its read is the same as starting it later.
 */
export class GatedClient extends pg.Client {
	constructor(config?: string | pg.ClientConfig) {
		super(config);
		const send = Reflect.get(pg.Client.prototype, 'query') as (...args: unknown[]) => unknown;
		Reflect.defineProperty(this, 'query', {
			configurable: true,
			writable: true,
			value: (...args: unknown[]): unknown => {
				const [config] = args;
				const text: unknown = typeof config === 'object' && config !== null ? Reflect.get(config, 'text') : config;
				const actor = currentActor.getStore();
				if (actor === undefined || typeof text !== 'string' || !writeVerb.test(text)) {
					return Reflect.apply(send, this, args);
				}
				const label = statementLabel(text, typeof config === 'object' && config !== null ? Reflect.get(config, 'name') : undefined);
				const sent = () => {
					actor.writes.push(label);
					return Reflect.apply(send, this, args) as Promise<unknown>;
				};
				switch (actor.holdWrites) {
					case 'none':
						return sent();
					case 'before':
						return actor.hold(`before ${label}`).then(sent);
					case 'after':
						return sent().then(async (result) => {
							await actor.hold(`after ${label}`);
							return result;
						});
				}
			},
		});
	}
}

/** The name of koa-session's cookie, whose value is the session key. */
export const sessionCookie = 'koa.sess';

/** One Koa app on a store of its own. */
export interface FuzzApp {
	readonly url: string;
	readonly store: PgStore;
}

/** The apps of a variant, all on `databaseUrl`; `actors` maps the `x-fuzz-actor` header to the request's actor. */
export async function startApps(databaseUrl: string, variant: Variant, actors: ReadonlyMap<string, Actor>, onStoreError: (error: Error) => void): Promise<{ apps: FuzzApp[]; close(): Promise<void> }> {
	const servers: Server[] = [];
	const stores: PgStore[] = [];
	const apps: FuzzApp[] = [];
	for (const options of variant.stores) {
		const storeOptions: PgStoreOptions & InternalOptions = {
			connectionString: databaseUrl,
			cleanupInterval: 0,
			subject: (data) => (typeof data['userId'] === 'string' ? data['userId'] : null),
			// No statement bound: a held statement waits for the runner, however loaded the machine.
			// Enough connections for every request of an iteration to hold one.
			pool: { Client: GatedClient, max: 40, query_timeout: 0 },
			onError: onStoreError,
			// A write that waits for an earlier one of its key: the request moving says so to the runner.
			[writeTurn]: (previous) => currentActor.getStore()?.waitTurn(previous) ?? previous,
			...options,
		};
		const store = new PgStore(storeOptions);
		stores.push(store);
		const app = new Koa();
		app.keys = ['fuzz: the cookie-signing secret, long enough to sign with'];
		app.silent = true;
		app.use(async (ctx, next) => {
			const actor = actors.get(ctx.get('x-fuzz-actor'));
			if (actor === undefined) {
				ctx.status = 400;
				return;
			}
			await currentActor.run(actor, async () => {
				try {
					await next();
				} catch (error) {
					// What an app does when its session ended while the request ran (README, "Errors").
					if (error instanceof SessionEndedError) {
						ctx.status = 401;
						ctx.body = { ended: true };
						return;
					}
					actor.failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
					ctx.status = 500;
					ctx.body = { error: actor.failure };
				}
			});
		});
		app.use(session({ store, key: sessionCookie, maxAge: hour, rolling: variant.rolling }, app));
		app.use(async (ctx) => {
			const actor = currentActor.getStore();
			if (actor?.route === undefined) {
				throw new Error('a request without an actor');
			}
			await handle(ctx, actor, actor.route, store);
			ctx.body ??= { ok: true };
		});
		const server = app.listen(0, '127.0.0.1');
		await new Promise<void>((resolve) => server.once('listening', resolve));
		servers.push(server);
		apps.push({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, store });
	}
	return {
		apps,
		async close() {
			await Promise.all(servers.map((server) => new Promise<void>((resolve) => {
				server.closeAllConnections();
				server.close(() => resolve());
			})));
			await Promise.all(stores.map((store) => store.close()));
		},
	};
}

// The routes. Values written are the request's id, so the checker can tell whose write a value is.
async function handle(ctx: Koa.Context, actor: Actor, route: Route, store: PgStore): Promise<void> {
	const current = ctx.session;
	if (current === null) {
		throw new Error('koa-session always gives a session');
	}
	actor.loaded = {
		isNew: current.isNew,
		sess: stringOrUndefined(current['sess']),
		userId: stringOrUndefined(current['userId']),
		key: current.isNew || current.externalKey === undefined ? undefined : digestKey(current.externalKey),
	};
	if (actor.holdAfterLoad) {
		await actor.hold('after load');
	}
	const set = (name: string, value: unknown) => {
		current[name] = value;
		actor.own.set(name, value);
	};
	// A session gets its identity token from the request that first writes it.
	const identify = () => {
		if (typeof current['sess'] !== 'string') {
			set('sess', actor.id);
			actor.minted = actor.id;
		}
	};
	switch (route.path) {
		case 'read':
			break;
		case 'set':
			identify();
			for (const name of route.set) {
				set(name, actor.id);
			}
			for (const name of route.remove) {
				delete current[name];
				actor.own.set(name, removed);
			}
			break;
		case 'save-then-set':
			identify();
			set(route.first, actor.id);
			await current.save();
			set(route.then, actor.id);
			break;
		case 'sudo':
			if (!current.isNew) {
				await current.regenerate();
			}
			break;
		case 'login':
			identify();
			await current.regenerate();
			set('userId', route.user);
			break;
		case 'logout':
			ctx.session = null;
			break;
		case 'reset':
			await resetPassword(actor, route.user, store, ctx, set);
			await current.regenerate();
			break;
	}
}

// A fresh sign-in after ending every session of the user, this request's own included: the
// token is new before `regenerate()` writes the new key, so no version of the new session
// carries the old one.
async function resetPassword(actor: Actor, user: User, store: PgStore, ctx: Koa.Context, set: (name: string, value: unknown) => void): Promise<void> {
	await store.destroyAll(user, { ctx });
	actor.signedOut = true;
	set('sess', actor.id);
	actor.minted = actor.id;
	set('userId', user);
}

function stringOrUndefined(value: unknown): string | undefined {
	return typeof value === 'string' ? value : undefined;
}
