import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { PgStorePrismaClient, RawSqlClient } from './prisma-client.js';
import { quoteIdentifier } from './sql.js';

/** One migration shipped in `prisma/migrations`, as `prisma migrate deploy` sees it. */
export interface ShippedMigration {
	/** The folder name, e.g. `20261122000000_init`. */
	readonly name: string;
	readonly sql: string;
	/** SHA-256 of `migration.sql` in hex: what Prisma records in `_prisma_migrations.checksum`. */
	readonly checksum: string;
}

const migrationsDirectory = new URL('../prisma/migrations/', import.meta.url);

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

async function appliedMigrationNames(client: RawSqlClient): Promise<Set<string>> {
	const [table] = await client.$queryRawUnsafe(
		`SELECT to_regclass('_prisma_migrations') IS NOT NULL AS "exists"`,
	) as [{ exists: boolean }];
	if (!table?.exists) {
		return new Set();
	}
	const rows = await client.$queryRawUnsafe(
		`SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
	) as { migration_name: string }[];
	return new Set(rows.map((row) => row.migration_name));
}

/**
 * Applies the shipped migrations that the database has not recorded yet, recording each in
 * `_prisma_migrations` as `prisma migrate deploy` does, and returns the names applied.
 *
 * A database that is already up to date is only read, so a user without CREATE privilege can
 * call this at every start. Otherwise all pending migrations run in one transaction, under
 * Prisma's migration lock, so instances starting together apply each migration once.
 */
export async function applyMigrations(client: PgStorePrismaClient, schema: string | undefined): Promise<string[]> {
	const migrations = await shippedMigrations();
	const applied = await appliedMigrationNames(client);
	if (migrations.every((migration) => applied.has(migration.name))) {
		return [];
	}
	return client.$transaction(async (transaction) => {
		await transaction.$executeRawUnsafe(`SELECT pg_advisory_xact_lock(${prismaMigrateLockId})`);
		if (schema !== undefined) {
			// As `prisma migrate deploy` does for the schema named in its URL.
			await transaction.$executeRawUnsafe(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`);
		}
		await transaction.$executeRawUnsafe(createMigrationsTable);
		// Another instance may have finished while this one waited for the lock.
		const appliedNow = await appliedMigrationNames(transaction);
		const pending = migrations.filter((migration) => !appliedNow.has(migration.name));
		for (const migration of pending) {
			const startedAt = new Date();
			await transaction.$executeRawUnsafe(migration.sql);
			await transaction.$executeRawUnsafe(
				`INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
				 VALUES ($1, $2, $3, $4, now(), 1)`,
				randomUUID(), migration.checksum, migration.name, startedAt,
			);
		}
		return pending.map((migration) => migration.name);
	}, { maxWait: 10_000, timeout: 120_000 });
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
