import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { Driver, TransactionQueries } from '../driver/driver.js';
import { sqlStateOf, sqlStates } from '../base/driver-error.js';
import { SchemaMismatchError } from '../base/errors.js';
import type { SessionField, SessionTable } from '../sql/session-table.js';
import { functionLookup, sessionFunctions, type SessionFunction } from '../sql/session-functions.js';
import { qualifiedName, quoteIdentifier } from '../sql/text.js';

/** One migration shipped in `prisma/migrations`, as `prisma migrate deploy` sees it. */
export interface ShippedMigration {
	/** The folder name, e.g. `20261122000000_init`. */
	readonly name: string;
	readonly sql: string;
	/** SHA-256 of `migration.sql` in hex: what Prisma records in `_prisma_migrations.checksum`. */
	readonly checksum: string;
}

const migrationsDirectory = new URL('../../prisma/migrations/', import.meta.url);

// `prisma migrate` holds this advisory lock while it migrates; taking the same one means that
// ensureSchema() and `prisma migrate deploy` never apply a migration at the same time.
const prismaMigrateLockId = 72_707_369;

/** The migrations this package ships, in the order Prisma applies them (by folder name). */
export async function shippedMigrations(): Promise<ShippedMigration[]> {
	const entries = await readdir(migrationsDirectory, { withFileTypes: true });
	const names = entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
	return Promise.all(names.map(async (name) => {
		const sql = await readFile(new URL(`${name}/migration.sql`, migrationsDirectory), 'utf8');
		return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
	}));
}

/** Runs one read of the catalog or of `_prisma_migrations`: alone, or in the migration's transaction. */
type Query = TransactionQueries['query'];

async function appliedMigrationNames(query: Query, schema: string | undefined): Promise<Set<string>> {
	const migrationsTable = qualifiedName(schema, '_prisma_migrations');
	const [table] = await query({ name: 'migrationsTableExists', text: `SELECT pg_catalog.to_regclass($1::pg_catalog.text) IS NOT NULL AS "exists"`, values: [migrationsTable] }) as [{ exists: boolean }?];
	if (table?.exists !== true) {
		return new Set();
	}
	const rows = await query({
		name: 'appliedMigrations',
		text: `SELECT migration_name FROM ${migrationsTable} WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
		values: [],
	}) as { migration_name: string }[];
	return new Set(rows.map((row) => row.migration_name));
}

/** What the store needs of its table besides the table itself. */
export interface SchemaRequirements {
	/** The store has a `subject` option, so the table needs the `subject` column. */
	readonly subject?: boolean;
}

/**
 * Makes sure the session table has what the store needs, reading only the catalog first (which
 * needs no grant): when everything is there it returns `[]` and touches nothing, not even
 * `_prisma_migrations`, so a role that may only use the table can call it at every start.
 *
 * When something is missing: this package's own table (`http_sessions` with its column names,
 * in the connection's schema) gets the shipped migrations that the database has not recorded,
 * recorded in `_prisma_migrations` as `prisma migrate deploy` does, all in one transaction under
 * Prisma's migration lock, so instances starting together apply each migration once. A table
 * the app maps the model to (`@@map`, `@@schema`, `@map`) belongs to the app's own migrations:
 * it is never migrated, and the app's migration history is never written.
 *
 * @returns The names of the migrations applied.
 * @throws {SchemaMismatchError} The app's table lacks something, or this package's table does
 * and the role may not migrate it.
 */
export async function applyMigrations(
	table: SessionTable,
	driver: Driver,
	schema: string | undefined,
	requirements: SchemaRequirements = {},
): Promise<string[]> {
	const missing = await missingFromCatalog(alone(driver), table, requirements);
	if (missing.length === 0) {
		return [];
	}
	const migrations = await shippedMigrations();
	if (!table.ownedByPackage) {
		throw new SchemaMismatchError(
			`The session table ${table.qualifiedName} lacks ${missing.map((item) => item.what).join(', ')}. `
			+ 'Your Prisma schema maps the PGSession model there, so your app\'s migrations own that table: '
			+ `copy what is missing from this package's migration${missingMigrations(missing, migrations)} into your model and run \`prisma migrate dev\` `
			+ '(or `prisma migrate deploy` in production); ensureSchema() only migrates this package\'s own `http_sessions`',
			table.qualifiedName,
			missing.map((item) => item.what),
		);
	}
	try {
		return await migrate(driver, schema, migrations);
	} catch (error) {
		if (sqlStateOf(error) === sqlStates.insufficientPrivilege) {
			throw new SchemaMismatchError(
				`The session table ${table.qualifiedName} lacks ${missing.map((item) => item.what).join(', ')} `
				+ `(this package's migration${missingMigrations(missing, migrations)}), and this role may not migrate it (permission denied). `
				+ 'Apply the migrations as the table\'s owner: `prisma migrate deploy --config node_modules/koa-pgstore/prisma.config.ts`, '
				+ 'or `ensureSchema()` (or `npx koa-pgstore migrate`) with that role\'s connection string',
				table.qualifiedName,
				missing.map((item) => item.what),
				{ cause: error },
			);
		}
		throw error;
	}
}

/** What `koa-pgstore status` reports about this package's table. */
export interface SchemaStatus {
	/** The table, as `"schema"."table"`. */
	readonly table: string;
	/**
	 * `true`: this package's `http_sessions`, which its migrations create; `false`: a table your
	 * app's migrations own (its migrations are not listed).
	 */
	readonly ownedByPackage: boolean;
	readonly exists: boolean;
	/** What the catalog shows is missing for the store. */
	readonly missing: readonly string[];
	/** Migrations recorded in `_prisma_migrations`; `undefined` when this role may not read it. */
	readonly applied: readonly string[] | undefined;
	/** Shipped migrations not recorded (empty when `applied` is unknown). */
	readonly pending: readonly string[];
	/**
	 * The session functions this store calls that the database lacks: each of their statements
	 * runs as plain SQL instead, which PostgreSQL plans anew on every call through an app's Prisma
	 * client. This package's migration `…_session_functions` creates them for its own table.
	 */
	readonly missingFunctions: readonly string[];
}

/** Reads what `applyMigrations` would do, changing nothing. */
export async function schemaStatus(table: SessionTable, driver: Driver, schema: string | undefined, requirements: SchemaRequirements = {}): Promise<SchemaStatus> {
	// What this store needs, not every column of the newest migration: a table without `subject`
	// serves a store without the `subject` option (the migration shows as pending).
	const missing = await missingFromCatalog(alone(driver), table, requirements, { everyMigration: false });
	const missingFunctions = await functionsMissing(alone(driver), table, sessionFunctions(table, requirements.subject === true));
	if (!table.ownedByPackage) {
		// The app's migrations own it: this package's are neither applied there nor pending.
		return {
			table: table.qualifiedName, ownedByPackage: false, exists: !missing.some((item) => item.table === true), missing: missing.map((item) => item.what),
			applied: undefined, pending: [], missingFunctions,
		};
	}
	const migrations = await shippedMigrations();
	let applied: Set<string> | undefined;
	try {
		applied = await appliedMigrationNames(alone(driver), schema);
	} catch (error) {
		if (sqlStateOf(error) !== sqlStates.insufficientPrivilege) {
			throw error;
		}
	}
	return {
		table: table.qualifiedName,
		ownedByPackage: true,
		exists: !missing.some((item) => item.table === true),
		missing: missing.map((item) => item.what),
		applied: applied === undefined ? undefined : migrations.map((migration) => migration.name).filter((name) => applied.has(name)),
		pending: applied === undefined ? [] : migrations.map((migration) => migration.name).filter((name) => !applied.has(name)),
		missingFunctions,
	};
}

// The names of `functions` the database lacks, looked up as the store calls them.
async function functionsMissing(query: Query, table: SessionTable, functions: readonly SessionFunction[]): Promise<string[]> {
	const found = new Set((await query(functionLookup(functions, table)) as { name: string }[]).map((row) => row.name));
	return functions.map((wanted) => wanted.name).filter((name) => !found.has(name));
}

async function migrate(driver: Driver, schema: string | undefined, migrations: ShippedMigration[]): Promise<string[]> {
	// A migration may wait for another instance's (an index build on a large table): its
	// statements have the migration's bound, not the short one of requests.
	return driver.transaction('ensureSchema', 'migration', async (transaction) => {
		await transaction.execute(`SELECT pg_catalog.pg_advisory_xact_lock(${prismaMigrateLockId}::pg_catalog.int8)`);
		if (schema !== undefined) {
			// As `prisma migrate deploy` does for the schema named in its URL. The migration SQL names
			// no schema: search_path says where it goes, for this transaction only (a startup
			// parameter would not pass PgBouncer, and SET without LOCAL would leak to the next
			// client of a pooled server connection).
			await transaction.execute(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`);
			await transaction.execute(`SET LOCAL search_path TO ${quoteIdentifier(schema)}`);
		}
		await transaction.execute(createMigrationsTable);
		// Another instance may have finished while this one waited for the lock.
		const appliedNow = await appliedMigrationNames(transaction.query, schema);
		const pending = migrations.filter((migration) => !appliedNow.has(migration.name));
		for (const migration of pending) {
			const startedAt = new Date();
			await transaction.execute(migration.sql);
			await transaction.query({
				name: 'recordMigration',
				text: `INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
				 VALUES ($1, $2, $3, $4, pg_catalog.now(), 1)`,
				values: [randomUUID(), migration.checksum, migration.name, startedAt],
			});
		}
		return pending.map((migration) => migration.name);
	});
}

// The catalog reads outside the migration's transaction: each alone, under the request bound.
function alone(driver: Driver): Query {
	return (statement) => driver.query(statement, 'ensureSchema');
}


interface Missing {
	/** For the message: `table "x"`, `column "subject"`, `jsonb type of column "data"`, … */
	readonly what: string;
	/** The shipped migration that adds it. */
	readonly migration: 'init' | 'subject' | 'functions';
	/** The whole table is missing. */
	readonly table?: true;
}

// Reads pg_catalog only: every role may, whatever its grants on the table.
// With `everyMigration`, this package's own table also needs what every shipped migration adds
// (ensureSchema() then brings it up to date).
async function missingFromCatalog(query: Query, table: SessionTable, requirements: SchemaRequirements, { everyMigration = true } = {}): Promise<Missing[]> {
	const [found] = await query({ name: 'sessionTableOid', text: `SELECT pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid::pg_catalog.int8::pg_catalog.text AS "oid"`, values: [table.qualifiedName] }) as [{ oid: string | null }?];
	if (found?.oid === null || found?.oid === undefined) {
		return [{ what: `the table itself (${table.qualifiedName} does not exist)`, migration: 'init', table: true }];
	}
	const columns = await query({
		name: 'sessionTableColumns',
		text: `SELECT attname AS "name", pg_catalog.format_type(atttypid, NULL) AS "type" FROM pg_catalog.pg_attribute
		 WHERE attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND attnum OPERATOR(pg_catalog.>) 0::pg_catalog.int2 AND NOT attisdropped`,
		values: [found.oid],
	}) as { name: string; type: string }[];
	const typeOf = new Map(columns.map((column) => [column.name, column.type]));
	const missing: Missing[] = [];
	const needed: SessionField[] = ['id', 'key', 'data', 'createdOn', 'modifiedOn', 'expiresOn'];
	if (requirements.subject === true || (everyMigration && table.ownedByPackage)) {
		needed.push('subject');
	}
	for (const field of needed) {
		const column = table.columns[field];
		if (!typeOf.has(column)) {
			missing.push({ what: `column ${quoteIdentifier(column)}`, migration: field === 'subject' ? 'subject' : 'init' });
		}
	}
	const dataType = typeOf.get(table.columns.data);
	if (dataType !== undefined && dataType !== 'jsonb') {
		missing.push({ what: `column ${quoteIdentifier(table.columns.data)} of type jsonb (it is ${dataType})`, migration: 'init' });
	}
	// ON CONFLICT (key) needs a valid unique index on exactly that column, not a partial one.
	const [unique] = await query({
		name: 'sessionKeyUnique',
		text: `SELECT EXISTS (
			SELECT FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
			  ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
			WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND i.indisunique AND i.indisvalid
			  AND i.indnkeyatts OPERATOR(pg_catalog.=) 1::pg_catalog.int2 AND i.indpred IS NULL AND i.indexprs IS NULL
			  AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name
		) AS "exists"`,
		values: [found.oid, table.columns.key],
	}) as [{ exists: boolean }?];
	if (typeOf.has(table.columns.key) && unique?.exists !== true) {
		missing.push({ what: `a unique index on ${quoteIdentifier(table.columns.key)}`, migration: 'init' });
	}
	if (everyMigration && table.ownedByPackage) {
		// Optional for the store (without them its statements run as plain SQL), but shipped: this
		// package's table gets them, for stores with and without the `subject` option.
		const functions = [...new Map([...sessionFunctions(table, false), ...sessionFunctions(table, true)].map((created) => [created.name, created])).values()];
		const absent = await functionsMissing(query, table, functions);
		if (absent.length > 0) {
			missing.push({ what: `its session functions (${absent.length} of ${functions.length} missing)`, migration: 'functions' });
		}
	}
	return missing;
}

function missingMigrations(missing: Missing[], migrations: ShippedMigration[]): string {
	const suffix = { init: '_init', subject: '_session_subject', functions: '_session_functions' } as const;
	const names = [...new Set(missing.map((item) => item.migration))].map((kind) => migrations.findLast((migration) => migration.name.endsWith(suffix[kind]))?.name ?? kind);
	return `${names.length > 1 ? 's' : ''} ${names.map((name) => `\`${name}\``).join(' and ')}`;
}



// The table exactly as Prisma's migration engine creates it.
const createMigrationsTable = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;
