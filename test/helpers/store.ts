import type { ExecutionContext } from 'ava';
import { PgStore, type PgStoreOptions } from '../../src/index.js';
import { createDatabase, type TestDatabase } from './database.js';

/** A migrated database of the test's own and a store that owns its client on it. */
export async function createStore(
	t: ExecutionContext,
	options: Omit<PgStoreOptions, 'prisma' | 'connectionString'> = {},
): Promise<{ store: PgStore; database: TestDatabase }> {
	const database = await createDatabase(t);
	// No background sweeps unless a test asks: they would delete the expired rows tests look at.
	const store = new PgStore({ connectionString: database.url, cleanupInterval: 0, ...options });
	t.teardown(() => store.close());
	return { store, database };
}

/** The rows of the session table, oldest first. */
export async function sessionRows(database: TestDatabase): Promise<{
	id: string;
	key: string;
	data: Record<string, unknown>;
	created_on: Date;
	modified_on: Date;
	expires_on: Date;
}[]> {
	return database.query('SELECT id, key, data, created_on, modified_on, expires_on FROM http_sessions ORDER BY id');
}
