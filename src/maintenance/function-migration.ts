import type { PgStorePrismaClient } from '../driver/prisma-client.js';
import { functionsMigration } from '../sql/session-functions.js';
import { readSessionTable } from '../sql/session-table.js';

/**
 * The SQL of a migration that creates the session functions for the table your client's
 * `PGSession` model maps to, when your app's own migrations own that table (this package's
 * migrations make them for its own `http_sessions`). Through your client the store then calls
 * them instead of sending its statements as plain SQL, which PostgreSQL plans anew on every call
 * (docs/own-prisma-client.md, "Session functions"). Without them the store works all the same.
 *
 * The names carry a digest of the statements: after upgrading koa-pgstore, generate it again into
 * a new migration (never edit an applied one); the older functions serve instances of the older
 * release until you drop them.
 *
 * @param options.schema Where a model without `@@schema` lives, as `PgStore`'s `schema` option.
 * @default the schema the migration runs in (the first of its search_path)
 * @example
 * ```ts
 * // npx tsx scripts/session-functions.ts > prisma/migrations/20270101000000_session_functions/migration.sql
 * import { sessionFunctionsMigration } from 'koa-pgstore';
 * import { prisma } from '../src/db.js';
 *
 * process.stdout.write(sessionFunctionsMigration(prisma));
 * ```
 */
export function sessionFunctionsMigration(prisma: PgStorePrismaClient, options: { schema?: string } = {}): string {
	return functionsMigration(readSessionTable(prisma, options.schema));
}
