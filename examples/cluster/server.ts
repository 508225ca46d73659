// `npm run example:cluster`, then open http://localhost:3003 and reload (in a browser that keeps
// connections alive, one tab may stick to one worker: try `curl -b jar -c jar` twice).
//
// The primary process starts the database and forks WORKERS workers (default: 2); each worker
// has its own PgStore, and so its own pool and its own cleanup schedule. Sweeps at once skip the
// rows another holds (SKIP LOCKED), so they share the work. Every worker calls ensureSchema() at
// start: that is safe from many processes at once.
import cluster from 'node:cluster';
import { createServer, type AddressInfo } from 'node:net';
import { PgStore } from 'koa-pgstore';
import { openDatabase } from '../database.js';
import { createClusterApp } from './app.js';

// Never use a fixed secret in production: `openssl rand -base64 32`, kept out of the code.
const secrets = process.env['SESSION_KEYS'] ?? 'cluster-example-secret-0123456789abcdef0123';

// Every worker must listen on the same port: for PORT=0 the primary picks a free one.
async function freePort(): Promise<number> {
	const probe = createServer().listen(0);
	await new Promise((resolve) => probe.once('listening', resolve));
	const { port } = probe.address() as AddressInfo;
	await new Promise((resolve) => probe.close(resolve));
	return port;
}

if (cluster.isPrimary) {
	const database = await openDatabase('cluster', 54_332);
	const requested = Number(process.env['PORT'] ?? 3003);
	const port = requested === 0 ? await freePort() : requested;
	const count = Number(process.env['WORKERS'] ?? 2);
	let listening = 0;
	cluster.on('listening', () => {
		listening += 1;
		if (listening === count) {
			console.log(`Cluster example listening on http://localhost:${port} (${count} workers)`);
		}
	});
	let stopping = false;
	cluster.on('exit', (worker, code) => {
		if (!stopping) {
			console.error(`worker ${worker.id} exited (${code}): stopping`);
			void shutdown(1);
		}
	});
	for (let index = 0; index < count; index += 1) {
		cluster.fork({ DATABASE_URL: database.url, PORT: String(port), EMBEDDED_DATABASE: process.env['DATABASE_URL'] ? '' : '1' });
	}

	async function shutdown(exitCode = 0): Promise<void> {
		stopping = true;
		const workers = Object.values(cluster.workers ?? {}).filter((worker) => worker !== undefined);
		await Promise.all(workers.map((worker) => new Promise<void>((resolve) => {
			if (worker.isDead()) {
				resolve();
				return;
			}
			worker.once('exit', () => resolve());
			worker.process.kill('SIGTERM');
		})));
		await database.stop();
		process.exit(exitCode);
	}
	process.once('SIGINT', () => void shutdown());
	process.once('SIGTERM', () => void shutdown());
} else {
	const store = new PgStore({
		connectionString: process.env['DATABASE_URL'] ?? '',
		pool: { max: 5 },
		cleanupInterval: Number(process.env['CLEANUP_INTERVAL'] ?? 300_000),
		onError: (error, { source }) => {
			// An embedded database stops together with the primary, possibly before this worker
			// has closed its pool: its idle connections then end with 57P01 (admin_shutdown).
			if (process.env['EMBEDDED_DATABASE'] === '1' && (error as { code?: unknown }).code === '57P01') {
				return;
			}
			console.error(`worker ${cluster.worker?.id}: koa-pgstore: ${source}: ${error.message}`);
		},
	});
	await store.ensureSchema();
	const server = createClusterApp(store, secrets).listen(Number(process.env['PORT']));
	// The primary stops workers with SIGTERM; Ctrl-C reaches every process of the group.
	const stop = async () => {
		server.close();
		server.closeAllConnections();
		await store.close(); // stops this worker's cleanup schedule and ends its pool
		process.exit(0);
	};
	process.once('SIGTERM', () => void stop());
	process.once('SIGINT', () => void stop());
}
