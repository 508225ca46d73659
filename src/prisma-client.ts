import { createRequire } from 'node:module';
import type { PrismaPg as PrismaPgAdapter } from '@prisma/adapter-pg';
import type { PoolConfig } from 'pg';
import { PrismaClient } from './generated/prisma/client.js';
import { quoteIdentifier } from './sql.js';

/**
 * The part of Prisma's `PGSession` model delegate the store calls (cleanup's batched delete; the
 * other statements are SQL on the table the model maps to). Any Prisma 7 client whose schema has
 * the `PGSession` model fits, whatever its table name, schema or output path.
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
 * options (`max`, `ssl`, `connectionTimeoutMillis`, `idleTimeoutMillis`, `statement_timeout`, …).
 */
export type PoolOptions = Omit<PoolConfig, 'connectionString'>;

/** Builds the Prisma client a store owns: this package's generated client on `@prisma/adapter-pg`. */
export function createOwnedClient(
	connectionString: string,
	pool: PoolOptions,
	schema: string | undefined,
	onPoolError: (error: Error) => void,
	preparedStatementName: (sql: string) => string | undefined,
): PgStorePrismaClient {
	const config: PoolConfig = { allowExitOnIdle: true, ...pool, connectionString };
	if (schema !== undefined) {
		// Prisma's queries name the schema themselves; ensureSchema()'s migration SQL does not,
		// so the connection's search_path must point there too.
		config.options = [pool.options, `-c search_path=${quoteIdentifier(schema).replaceAll('\\', '\\\\').replaceAll(' ', '\\ ')}`]
			.filter(Boolean).join(' ');
	}
	// An idle pool must not keep the process alive (allowExitOnIdle): a server that closes exits.
	const adapter = new (loadPrismaPg())(config, {
		...(schema === undefined ? {} : { schema }),
		onPoolError,
		// The store's own statements are prepared once per connection: PostgreSQL then skips
		// parsing and planning them on every call.
		statementNameGenerator: (query) => preparedStatementName(query.sql) as string,
	});
	return new PrismaClient({ adapter });
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
