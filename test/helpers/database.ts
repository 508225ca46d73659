import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { ExecutionContext } from 'ava';
import pg from 'pg';

/** The server the test command started (or DATABASE_URL), as a superuser connection string. */
export function adminUrl(): string {
	const url = process.env['PGSTORE_TEST_ADMIN_URL'] ?? process.env['DATABASE_URL'];
	if (url === undefined || url === '') {
		throw new Error('No PostgreSQL for the tests: run them with `npm test`, which starts one, or set DATABASE_URL');
	}
	return url;
}

export function withDatabase(url: string, database: string): string {
	const parsed = new URL(url);
	parsed.pathname = `/${database}`;
	return parsed.toString();
}

const migrationsDirectory = new URL('../../prisma/migrations/', import.meta.url);

/** The SQL of every shipped migration, in the order Prisma applies them. */
export async function migrationFiles(): Promise<{ name: string; sql: string }[]> {
	const entries = await readdir(migrationsDirectory, { withFileTypes: true });
	const names = entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
	return Promise.all(names.map(async (name) => ({
		name,
		sql: await readFile(new URL(`${name}/migration.sql`, migrationsDirectory), 'utf8'),
	})));
}

/** A database of one test file's own, dropped when the test (or hook) that made it ends. */
export interface TestDatabase {
	readonly name: string;
	readonly url: string;
	/** Runs SQL as superuser in this database. */
	query<Row extends pg.QueryResultRow = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<Row[]>;
}

/**
 * Creates an empty database on the test server and, unless `migrate: false`, applies the
 * shipped migrations to it, exactly as `prisma migrate deploy` would run their SQL.
 */
export async function createDatabase(
	t: ExecutionContext,
	{ migrate = true, serverUrl = adminUrl() }: { migrate?: boolean; serverUrl?: string } = {},
): Promise<TestDatabase> {
	const name = `pgstore_test_${randomBytes(6).toString('hex')}`;
	const admin = new pg.Client({ connectionString: serverUrl });
	await admin.connect();
	try {
		await admin.query(`CREATE DATABASE ${name}`);
	} finally {
		await admin.end();
	}
	const url = withDatabase(serverUrl, name);
	const pool = new pg.Pool({ connectionString: url, max: 2 });
	// Tests that stop or drop a server end these connections on purpose.
	pool.on('error', () => {});
	t.teardown(async () => {
		await pool.end();
		const dropper = new pg.Client({ connectionString: serverUrl });
		await dropper.connect().then(
			() => dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
			() => undefined, // The server was stopped on purpose: its data directory goes with it.
		).finally(() => dropper.end());
	});
	const database: TestDatabase = {
		name,
		url,
		async query(sql, values) {
			return (await pool.query(sql, values)).rows;
		},
	};
	if (migrate) {
		for (const migration of await migrationFiles()) {
			await database.query(migration.sql);
		}
	}
	return database;
}
