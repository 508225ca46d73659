import type { ExecutionContext } from 'ava';
import pg from 'pg';
import type { TestDatabase } from './database.js';

const gateLock = 4242;

/**
 * A gate inside PostgreSQL: while closed, every INSERT or UPDATE of a session row waits in a
 * trigger, after the statement has locked its rows, until the test opens it. It holds a statement
 * of the store where an in-process gate cannot (between the row lock and the write), so the test
 * decides what lands while it waits. Reads and deletes pass.
 *
 * @example
 * ```ts
 * const gate = await databaseGate(t, database);
 * await gate.close();
 * const regenerating = request(`${url}/regenerate`, jar);
 * await gate.writersWaiting(1);   // its write waits in the trigger
 * const signOut = store.destroyAll('alice');
 * await Promise.race([signOut, gate.lockWaiters(1)]);
 * await gate.open();
 * ```
 */
export async function databaseGate(t: ExecutionContext, database: TestDatabase) {
	await database.query(`CREATE FUNCTION public.test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock_shared(${gateLock}); RETURN NEW; END $$`);
	await database.query('CREATE TRIGGER test_gate BEFORE INSERT OR UPDATE ON http_sessions FOR EACH ROW EXECUTE FUNCTION public.test_gate()');
	const holder = new pg.Client({ connectionString: database.url });
	await holder.connect();
	t.teardown(() => holder.end());
	return {
		/** From now on writes wait. */
		close: async () => { await holder.query('SELECT pg_advisory_lock($1)', [gateLock]); },
		/** Lets every waiting write, and every later one, through. */
		open: async () => { await holder.query('SELECT pg_advisory_unlock($1)', [gateLock]); },
		/** Resolves once `count` writes of this database wait at the gate (advisory locks are per database). */
		writersWaiting: (count: number) => waiting(database, `SELECT count(*)::int AS count FROM pg_locks WHERE locktype = 'advisory' AND objid = ${gateLock} AND NOT granted `
			+ 'AND database = (SELECT oid FROM pg_database WHERE datname = current_database())', count),
		/** See {@link lockWaiters}. */
		lockWaiters: (count: number) => lockWaiters(database, count),
	};
}

/** Resolves once `count` statements of this database wait for a row or transaction lock (not an advisory one). */
export function lockWaiters(database: TestDatabase, count: number): Promise<void> {
	return waiting(database, `SELECT count(*)::int AS count FROM pg_stat_activity WHERE datname = current_database() `
		+ `AND wait_event_type = 'Lock' AND wait_event <> 'advisory'`, count);
}

// Polls the catalog until `sql` counts `count`: what waits where is PostgreSQL's to say.
async function waiting(database: TestDatabase, sql: string, count: number): Promise<void> {
	for (let tries = 0; tries < 2000; tries += 1) {
		const [row] = await database.query<{ count: number }>(sql);
		if ((row?.count ?? 0) >= count) {
			return;
		}
		await new Promise((resolve) => setTimeout(resolve, 10));
	}
	throw new Error(`Fewer than ${count} statements waited: ${sql}`);
}
