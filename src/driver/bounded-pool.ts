import { createConnection } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import type { DatabaseFailure } from '../base/errors.js';

/**
 * A failure of the connection rather than of SQL, raised by the store's own pool. It reaches the
 * store as the cause of its `DatabaseError`, whose `failure` it sets.
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
	/** For each statement of a request (`pool.query_timeout`). */
	readonly statementTimeoutMillis: number;
}

/** A statement's bound: milliseconds (`0`: none), and the setting that gives it, for the message. */
export interface StatementBound {
	readonly ms: number;
	readonly setting: string;
}

type ConnectCallback = (error: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void;

/**
 * node-postgres' pool whose connect failures say which bound was hit: `connect-timeout` (no
 * connection could be opened within `connectionTimeoutMillis`) or `pool-exhausted` (every pooled
 * connection stayed busy that long). Statements are bounded by `boundedQuery`, with the bound
 * the caller names.
 */
export class BoundedPool extends pg.Pool {
	readonly limits: PoolLimits;

	constructor(config: pg.PoolConfig, limits: PoolLimits) {
		super({ ...config, connectionTimeoutMillis: limits.connectionTimeoutMillis });
		this.limits = limits;
	}

	override connect(): Promise<pg.PoolClient>;
	override connect(callback: ConnectCallback): void;
	override connect(callback?: ConnectCallback): Promise<pg.PoolClient> | void {
		// pg queues the request when every connection is busy, else it opens one (or takes an idle one).
		const waitedInQueue = this.totalCount >= (this.options.max ?? 10) && this.idleCount === 0;
		// Due together with pg's own timer (set in this same call, so on the same loop time) and run
		// before it: when pg's timeout error arrives, this has fired. Elapsed wall time would not
		// tell, as timers run on libuv's cached loop time and may look early.
		let timedOut = false;
		const { connectionTimeoutMillis } = this.limits;
		const timer = connectionTimeoutMillis > 0 ? setTimeout(() => { timedOut = true; }, connectionTimeoutMillis) : undefined;
		timer?.unref();
		const failure = (error: unknown) => this.#connectFailure(error, timedOut, waitedInQueue);
		// pg-pool's own `query` takes the callback form; the store's drivers take the promise.
		if (callback !== undefined) {
			super.connect((error, client, done) => {
				clearTimeout(timer);
				callback(error === undefined ? undefined : failure(error) as Error, client, done);
			});
			return;
		}
		return super.connect().then((client) => {
			clearTimeout(timer);
			return client;
		}, (error: unknown) => {
			clearTimeout(timer);
			throw failure(error);
		});
	}

	// The connect or acquire failure that `error` was, or `error` itself when the server answered
	// (a wrong password, too many connections).
	#connectFailure(error: unknown, timedOut: boolean, waitedInQueue: boolean): unknown {
		if (!(error instanceof Error) || isServerError(error) || error instanceof ConnectionFailure) {
			return error;
		}
		const { connectionTimeoutMillis } = this.limits;
		if (timedOut) {
			return waitedInQueue
				? new ConnectionFailure('pool-exhausted', `no pooled connection became free within ${connectionTimeoutMillis} ms (pool.connectionTimeoutMillis; pool.max is ${this.options.max})`, { cause: error })
				: new ConnectionFailure('connect-timeout', `no connection to PostgreSQL within ${connectionTimeoutMillis} ms (pool.connectionTimeoutMillis)`, { cause: error });
		}
		return codeless(error, 'could not connect to PostgreSQL');
	}
}

/**
 * Runs one statement on `client` within `bound`. Past it the caller gets a `query-timeout`
 * failure, PostgreSQL is asked to cancel the statement (or it may still take its locks and
 * write later), and the connection is closed: pg's own `query_timeout` would leave it open,
 * still waiting for the answer, and a transaction's connection would go back to the pool
 * blocked. (PostgreSQL's `statement_timeout` is no substitute: it needs a startup parameter,
 * which PgBouncer refuses, and does nothing when packets are dropped.) A lost connection is a
 * `connection-lost` failure. The caller releases `client`, with the error when it broke.
 */
export function boundedQuery(client: pg.PoolClient, config: pg.QueryConfig, bound: StatementBound): Promise<pg.QueryResult> {
	return new Promise((resolve, reject) => {
		let settled = false;
		const timer = bound.ms === 0 ? undefined : setTimeout(() => {
			settled = true;
			sendCancelRequest(client, bound.ms);
			reject(new ConnectionFailure('query-timeout', `no answer to the statement within ${bound.ms} ms (${bound.setting}); its connection was closed`));
			// end() destroys the socket of a connection with a statement in flight, fails what else
			// was queued on it, and makes the pool drop it when it is released.
			void client.end().catch(() => {});
		}, bound.ms);
		const settle = (outcome: () => void) => {
			clearTimeout(timer);
			if (!settled) {
				settled = true;
				outcome();
			}
		};
		let sent: Promise<pg.QueryResult>;
		try {
			sent = client.query(config);
		} catch (error) {
			// A statement pg refuses at once (a bad argument).
			settle(() => reject(error));
			return;
		}
		sent.then(
			(result) => settle(() => resolve(result)),
			(error: unknown) => settle(() => reject(error instanceof Error && !isServerError(error) && !(error instanceof ConnectionFailure)
				? codeless(error, 'the connection to PostgreSQL broke')
				: error)),
		);
	});
}

/** Whether `client` should be dropped rather than pooled again after `error`. */
export function isBroken(error: unknown): boolean {
	return !(error instanceof Error) || !isServerError(error);
}

/**
 * Asks PostgreSQL (or PgBouncer, which forwards it) to cancel what `client`'s connection is
 * running, over a new connection as the protocol wants (pg-protocol's CancelRequest message, with
 * the backend's process id and secret key). Best effort and bounded: when the network is gone
 * the attempt is given up after `giveUpAfterMs`; it never keeps the process alive.
 */
function sendCancelRequest(client: pg.PoolClient, giveUpAfterMs: number): void {
	// node-postgres keeps these from the BackendKeyData message and its connection parameters,
	// without declaring them in its types.
	const processId: unknown = Reflect.get(client, 'processID');
	const secretKey: unknown = Reflect.get(client, 'secretKey');
	const host: unknown = Reflect.get(client, 'host');
	const port: unknown = Reflect.get(client, 'port');
	if (typeof processId !== 'number' || typeof secretKey !== 'number' || typeof host !== 'string' || typeof port !== 'number') {
		return;
	}
	const socket = host.startsWith('/') ? createConnection(`${host}/.s.PGSQL.${port}`) : createConnection({ host, port });
	socket.unref();
	socket.setTimeout(giveUpAfterMs, () => socket.destroy());
	socket.once('connect', () => socket.end(serialize.cancel(processId, secretKey)));
	socket.on('error', () => {});
}

// A socket error (ECONNREFUSED, ECONNRESET, …) keeps its code; pg's errors without a code
// ("Connection terminated unexpectedly") would reach the store unexplained, so they become a
// connection-lost failure.
function codeless(error: Error, what: string): Error {
	return typeof Reflect.get(error, 'code') === 'string'
		? error
		: new ConnectionFailure('connection-lost', `${what}: ${error.message}`, { cause: error });
}

/** PostgreSQL answered (an ErrorResponse has a severity): the connection itself is fine. */
export function isServerError(error: Error): boolean {
	return typeof Reflect.get(error, 'severity') === 'string';
}
