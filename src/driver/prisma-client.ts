import { createRequire } from 'node:module';
import type { PrismaPg as PrismaPgAdapter } from '@prisma/adapter-pg';
import type { PoolConfig } from 'pg';
import { BoundedPool, type PoolLimits } from './bounded-pool.js';
import { Prisma, PrismaClient } from '../generated/prisma/client.js';

/**
 * Part of Prisma's `PGSession` model delegate. The store runs SQL of its own on the table the
 * model maps to and never calls the delegate: requiring it makes TypeScript refuse, at the call
 * site, a client generated without the `PGSession` model. Any Prisma 7 client whose schema has
 * the model fits, whatever its table name, schema or output path.
 */
export interface PGSessionDelegate {
	deleteMany(args: {
		where: { expiresOn: { lt: Date } };
		limit?: number;
	}): PromiseLike<{ count: number }>;
}

/** What `ensureSchema()` needs to run SQL: a Prisma client or transaction client. */
export interface RawSqlClient {
	$executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
	$queryRawUnsafe(query: string, ...values: unknown[]): PromiseLike<unknown>;
}

/** What the store does inside an interactive transaction. */
export interface TransactionClient extends RawSqlClient {
	readonly pGSession: PGSessionDelegate;
}

/**
 * A Prisma 7 client generated from a schema that contains the `PGSession` model (typed
 * structurally, so the client generated at your own output path fits).
 */
export interface PgStorePrismaClient extends RawSqlClient {
	readonly pGSession: PGSessionDelegate;
	$transaction<R>(
		fn: (client: TransactionClient) => Promise<R>,
		options?: { maxWait?: number; timeout?: number },
	): Promise<R>;
	$disconnect(): Promise<void>;
}

/**
 * Pool settings of the client the store builds from `connectionString`: node-postgres' pool
 * options (`max`, `ssl`, `connectionTimeoutMillis`, `idleTimeoutMillis`, `query_timeout`, …).
 */
export type PoolOptions = Omit<PoolConfig, 'connectionString'>;

/**
 * Default bound on each statement of a request, in ms (`pool.query_timeout`). A session
 * statement takes about a millisecond; three seconds means the database or the network is gone.
 */
export const defaultQueryTimeout = 3_000;

/**
 * Default bound on opening a connection and on waiting for a pooled one, in ms
 * (`pool.connectionTimeoutMillis`; node-postgres has one setting for both). At least the
 * statement bound: a request queued behind stuck statements then outlives their cancellation
 * and gets a connection, where a shorter wait would fail every queued request first.
 */
export const defaultConnectionTimeout = 5_000;

/** The bounds of the owned pool: `pool`'s own, else the defaults. */
export function poolLimits(pool: PoolOptions): PoolLimits {
	const statementTimeoutMillis = pool.query_timeout ?? defaultQueryTimeout;
	return {
		statementTimeoutMillis,
		connectionTimeoutMillis: pool.connectionTimeoutMillis ?? Math.max(defaultConnectionTimeout, statementTimeoutMillis),
	};
}

/** The client a store owns, and the pool under its adapter. */
export interface OwnedClient {
	readonly client: PgStorePrismaClient;
	readonly pool: BoundedPool;
	/** Disconnects the client, then closes the pool (which the client never connected if only the pool was queried). */
	close(): Promise<void>;
}

/**
 * Builds the Prisma client a store owns: this package's generated client on `@prisma/adapter-pg`,
 * over a bounded pool the store may also query directly.
 */
export function createOwnedClient(
	connectionString: string,
	pool: PoolOptions,
	schema: string | undefined,
	onPoolError: (error: Error) => void,
): OwnedClient {
	assertRuntimeFits(Prisma.prismaVersion.client);
	// The statement bound is the pool's own (see BoundedPool); pg's query_timeout would fire too.
	const { query_timeout: _statementBound, ...settings } = pool;
	// An idle pool must not keep the process alive (allowExitOnIdle): a server that closes exits.
	// No startup parameters beyond pg's: PgBouncer refuses `options` (so no search_path there; the
	// store's SQL names its schema, and ensureSchema() sets search_path in its own transaction).
	const driverPool = new BoundedPool({ allowExitOnIdle: true, ...settings, connectionString }, poolLimits(pool));
	// On the pool itself, not through the adapter's `onPoolError`: the store queries the pool
	// before Prisma ever connects its adapter (which is when that one would be listened for).
	driverPool.on('error', onPoolError);
	const adapter = new (loadPrismaPg())(driverPool, {
		...(schema === undefined ? {} : { schema }),
	});
	// 'minimal': Prisma otherwise captures a call site (`new Error()`) on every call outside
	// NODE_ENV=production to pretty-print failures (its cost: bench/NOTES.md); the store
	// wraps every failure in a DatabaseError of its own anyway.
	const client = new PrismaClient({ adapter, errorFormat: 'minimal' });
	return {
		client,
		pool: driverPool,
		close: async () => {
			try {
				await client.$disconnect();
			} finally {
				await driverPool.end();
			}
		},
	};
}

// `@prisma/adapter-pg` is an optional peer dependency: only `connectionString` needs it, so it is
// loaded on first use, and apps that pass their own client need not install it. Loaded with
// `require` (the package ships CommonJS too) to keep the constructor synchronous.
function loadPrismaPg(): typeof PrismaPgAdapter {
	const require = createRequire(import.meta.url);
	let entry: string;
	try {
		entry = require.resolve('@prisma/adapter-pg');
	} catch (error) {
		throw new Error('`connectionString` needs `@prisma/adapter-pg`: install it beside `@prisma/client` (`npm install @prisma/adapter-pg`), or pass your own client as `prisma`', { cause: error });
	}
	return (require(entry) as { PrismaPg: typeof PrismaPgAdapter }).PrismaPg;
}

/**
 * The client this package ships was generated by one Prisma version and runs on the app's
 * `@prisma/client` runtime: that must be Prisma 7 and no older than the generator (a newer 7.x
 * runtime reads an older client; the suite runs on the lowest and the newest CI pins).
 * @throws {TypeError} Another major version, or an older runtime: named with the remedy.
 */
function assertRuntimeFits(generatedBy: string): void {
	let runtime: string | undefined;
	try {
		// @prisma/client exports its package.json.
		runtime = (createRequire(import.meta.url)('@prisma/client/package.json') as { version?: string }).version;
	} catch {
		return; // The generated client's own import of the runtime reports what is missing.
	}
	if (runtime === undefined || !runtimeFits(generatedBy, runtime)) {
		throw new TypeError(`Expected \`@prisma/client\` to be ^${generatedBy} (koa-pgstore's client was generated by Prisma ${generatedBy}), got ${runtime ?? 'an unknown version'}: install @prisma/client@^${generatedBy}, or pass your own client as \`prisma\``);
	}
}

/** Whether a `@prisma/client` runtime of version `runtime` runs a client generated by `generatedBy`: same major, not older. */
export function runtimeFits(generatedBy: string, runtime: string): boolean {
	const [major = 0, minor = 0, patch = 0] = runtime.split(/[.-]/).map(Number);
	const [wantedMajor = 0, wantedMinor = 0, wantedPatch = 0] = generatedBy.split(/[.-]/).map(Number);
	return major === wantedMajor && (minor > wantedMinor || (minor === wantedMinor && patch >= wantedPatch));
}
