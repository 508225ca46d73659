import { AsyncLocalStorage } from 'node:async_hooks';
import { createConnection } from 'node:net';
import pg from 'pg';
import type { DatabaseFailure } from './errors.js';

/**
 * A failure of the connection rather than of SQL, raised by the pool of the store's own client.
 * It reaches the store as the cause of its `DatabaseError` (Prisma passes an error without a
 * `code` through unchanged), whose `failure` it sets.
 */
export class ConnectionFailure extends Error {
	override name = 'ConnectionFailure';

	/** @param code The socket's or TLS's error code (`ECONNREFUSED`, …), when there was one. */
	constructor(readonly failure: DatabaseFailure, message: string, options?: ErrorOptions, readonly code?: string) {
		super(message, options);
	}
}

/** The limits of the store's own pool, in milliseconds; `0` is no limit. */
export interface PoolLimits {
	/** For opening a connection and for waiting for a pooled one (node-postgres has one setting for both). */
	readonly connectionTimeoutMillis: number;
	/** For each statement of a request: after it the statement is given up and its connection closed. */
	readonly statementTimeoutMillis: number;
	/**
	 * For each statement in a transaction. Only ensureSchema() and cleanup() use transactions,
	 * and they may wait on a migration lock or a long batch; a request never does.
	 */
	readonly transactionStatementTimeoutMillis: number;
}

/**
 * Statements in a transaction (ensureSchema(), cleanup()) may take this many times the request
 * bound: they may wait on a migration lock or a long batch.
 */
export const transactionStatementFactor = 10;

const statementTimeoutOfCall = new AsyncLocalStorage<number>();

/**
 * Runs `work` with the statements of its transactions on the store's own pool bounded by `ms`
 * (`0`: unbounded) instead of `transactionStatementTimeoutMillis`. Async context reaches the
 * driver through Prisma's interactive transactions (measured with Prisma 7.10), not through its
 * other calls, which keep their bound.
 */
export function withStatementTimeout<T>(ms: number, work: () => Promise<T>): Promise<T> {
	return statementTimeoutOfCall.run(ms, work);
}

type ConnectCallback = (error: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void;
type QueryCallback = (error: Error | undefined, result: unknown) => void;

/**
 * node-postgres' pool with bounds on every wait, whose failures say which bound was hit:
 *
 * - opening a connection and waiting for a pooled one: `connectionTimeoutMillis`, as in pg;
 * - each statement: after `statementTimeoutMillis` the caller gets a `query-timeout` failure
 *   and the connection is closed. pg's own `query_timeout` would leave it open, still waiting
 *   for the answer, and a transaction's connection would then go back to the pool blocked.
 *   (PostgreSQL's `statement_timeout` is no substitute: it needs a startup parameter, which
 *   PgBouncer refuses, and does nothing when packets are dropped.)
 *
 * Bounds apply to the pool's own connections only: with `{ prisma }` the app's adapter settings
 * apply.
 */
export class BoundedPool extends pg.Pool {
	readonly #limits: PoolLimits;
	// Whether each connection was last handed out for a transaction or for one statement.
	readonly #inTransaction = new WeakMap<pg.PoolClient, boolean>();

	constructor(config: pg.PoolConfig, limits: PoolLimits) {
		super({ ...config, connectionTimeoutMillis: limits.connectionTimeoutMillis });
		this.#limits = limits;
		this.on('connect', (client) => {
			this.#bound(client);
		});
	}

	// The connect or acquire failure that `error` was, or `error` itself when the server answered
	// (a wrong password, too many connections).
	#connectFailure(error: unknown, timedOut: boolean, waitedInQueue: boolean): unknown {
		if (!(error instanceof Error) || isServerError(error) || error instanceof ConnectionFailure) {
			return error;
		}
		const { connectionTimeoutMillis } = this.#limits;
		if (timedOut) {
			return waitedInQueue
				? new ConnectionFailure('pool-exhausted', `no pooled connection became free within ${connectionTimeoutMillis} ms (pool.connectionTimeoutMillis; pool.max is ${this.options.max})`, { cause: error })
				: new ConnectionFailure('connect-timeout', `no connection to PostgreSQL within ${connectionTimeoutMillis} ms (pool.connectionTimeoutMillis)`, { cause: error });
		}
		return codeless(error, 'could not connect to PostgreSQL');
	}

	override connect(): Promise<pg.PoolClient>;
	override connect(callback: ConnectCallback): void;
	override connect(callback?: ConnectCallback): Promise<pg.PoolClient> | void {
		// pg queues the request when every connection is busy, else it opens one (or takes an idle one).
		const waitedInQueue = this.totalCount >= (this.options.max ?? 10) && this.idleCount === 0;
		// Due together with pg's own timers (set in this same call, so on the same loop time) and
		// run before them: when pg's timeout error arrives, this has fired. Elapsed wall time would
		// not tell, as timers run on libuv's cached loop time and may look early.
		let timedOut = false;
		const { connectionTimeoutMillis } = this.#limits;
		const timer = connectionTimeoutMillis > 0 ? setTimeout(() => { timedOut = true; }, connectionTimeoutMillis) : undefined;
		timer?.unref();
		// pg's `pool.query` (a statement of a request) calls connect() with a callback; the adapter
		// starts its transactions with the promise.
		if (callback !== undefined) {
			super.connect((error, client, done) => {
				clearTimeout(timer);
				if (client !== undefined) {
					this.#inTransaction.set(client, false);
				}
				callback(error === undefined ? undefined : this.#connectFailure(error, timedOut, waitedInQueue) as Error, client, done);
			});
			return;
		}
		return super.connect().then((client) => {
			clearTimeout(timer);
			this.#inTransaction.set(client, true);
			return client;
		}, (error: unknown) => {
			clearTimeout(timer);
			throw this.#connectFailure(error, timedOut, waitedInQueue);
		});
	}

	// Wraps the connection's `query` once, when the pool opens it.
	#bound(client: pg.PoolClient): void {
		const query = client.query;
		const inTransaction = this.#inTransaction;
		const limits = this.#limits;
		const bounded = (...args: unknown[]): unknown => {
			const transaction = inTransaction.get(client) === true;
			const timeout = transaction
				? statementTimeoutOfCall.getStore() ?? limits.transactionStatementTimeoutMillis
				: limits.statementTimeoutMillis;
			const [config] = args;
			// Streams and cursors (`submit`) manage their own lifetime; none of the store's statements is one.
			if (timeout === 0 || (typeof config === 'object' && config !== null && 'submit' in config)) {
				return Reflect.apply(query, client, args);
			}
			const callbackAt = args.findLastIndex((argument) => typeof argument === 'function');
			let settled = false;
			let fail: (failure: ConnectionFailure) => void = () => {};
			const timer = setTimeout(() => {
				settled = true;
				// Stop the statement in PostgreSQL too, or it may still take its locks and write later.
				sendCancelRequest(client, timeout);
				fail(new ConnectionFailure('query-timeout', `no answer to the statement within ${timeout} ms `
					+ `(${transaction ? `the bound of ensureSchema() and cleanup(), ${transactionStatementFactor} times pool.query_timeout` : 'pool.query_timeout'}); its connection was closed`));
				// end() destroys the socket of a connection with a statement in flight, fails what
				// else was queued on it, and makes the pool drop it when it comes back.
				void client.end().catch(() => {});
			}, timeout);
			const lost = (error: unknown): unknown => (error instanceof Error && !isServerError(error) && !(error instanceof ConnectionFailure)
				? codeless(error, 'the connection to PostgreSQL broke')
				: error);
			// A statement pg refuses at once (a bad argument) throws here and needs no timer.
			const started = <T>(send: () => T): T => {
				try {
					return send();
				} catch (error) {
					clearTimeout(timer);
					throw error;
				}
			};
			if (callbackAt !== -1) {
				const callback = args[callbackAt] as QueryCallback;
				fail = (failure) => callback(failure, undefined);
				const wrapped = [...args];
				wrapped[callbackAt] = (error: Error | undefined, result: unknown) => {
					clearTimeout(timer);
					if (!settled) {
						settled = true;
						callback(error === undefined || error === null ? undefined : lost(error) as Error, result);
					}
				};
				return started(() => Reflect.apply(query, client, wrapped));
			}
			return new Promise((resolve, reject) => {
				fail = reject;
				(started(() => Reflect.apply(query, client, args)) as Promise<unknown>).then(
					(result) => {
						clearTimeout(timer);
						if (!settled) {
							settled = true;
							resolve(result);
						}
					},
					(error: unknown) => {
						clearTimeout(timer);
						if (!settled) {
							settled = true;
							reject(lost(error));
						}
					},
				);
			});
		};
		Object.defineProperty(client, 'query', { value: bounded, configurable: true, writable: true });
	}
}

/**
 * Asks PostgreSQL (or PgBouncer, which forwards it) to cancel what `client`'s connection is
 * running, over a new connection as the protocol wants: the 16-byte CancelRequest with the
 * backend's process id and secret key. Best effort and bounded: when the network is gone the
 * attempt is given up after `giveUpAfterMs`; it never keeps the process alive.
 */
function sendCancelRequest(client: pg.PoolClient, giveUpAfterMs: number): void {
	const processId: unknown = Reflect.get(client, 'processID');
	const secretKey: unknown = Reflect.get(client, 'secretKey');
	const host: unknown = Reflect.get(client, 'host');
	const port: unknown = Reflect.get(client, 'port');
	if (typeof processId !== 'number' || typeof secretKey !== 'number' || typeof host !== 'string' || typeof port !== 'number') {
		return;
	}
	const request = Buffer.alloc(16);
	request.writeInt32BE(16, 0);
	request.writeInt32BE(80_877_102, 4); // the CancelRequest code
	request.writeInt32BE(processId, 8);
	request.writeInt32BE(secretKey, 12);
	const socket = host.startsWith('/') ? createConnection(`${host}/.s.PGSQL.${port}`) : createConnection({ host, port });
	socket.unref();
	socket.setTimeout(giveUpAfterMs, () => socket.destroy());
	socket.once('connect', () => socket.end(request));
	socket.on('error', () => {});
}

// A socket error (ECONNREFUSED, ECONNRESET, …) keeps its code, which Prisma's adapter maps to a
// kind and Prisma to its own code (P1001, …); pg's errors without a code ("Connection terminated
// unexpectedly") would reach the store unexplained, so they become a connection-lost failure.
function codeless(error: Error, what: string): Error {
	return typeof Reflect.get(error, 'code') === 'string'
		? error
		: new ConnectionFailure('connection-lost', `${what}: ${error.message}`, { cause: error });
}

/** PostgreSQL answered (an ErrorResponse has a severity): the connection itself is fine. */
export function isServerError(error: Error): boolean {
	return typeof Reflect.get(error, 'severity') === 'string';
}
