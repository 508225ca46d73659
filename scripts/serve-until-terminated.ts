// For app-server child processes of the tests and the bench: listen, tell the parent the port,
// and shut down cleanly when it sends SIGTERM.
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';

/**
 * Listens on a free loopback port, prints it on a line of its own (what the parent waits for),
 * and on SIGTERM closes the connections and the store, then exits.
 */
export async function serveUntilTerminated(app: Koa, store: { close(): Promise<void> }): Promise<void> {
	const server = app.listen(0, '127.0.0.1');
	await new Promise((resolve) => server.once('listening', resolve));
	process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
	process.once('SIGTERM', async () => {
		server.closeAllConnections();
		server.close();
		await store.close();
		process.exit(0);
	});
}
