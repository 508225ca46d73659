import { createConnection, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ExecutionContext } from 'ava';

/** What the proxy does with the traffic between the store and PostgreSQL. */
export type ProxyMode = 'pass' | 'black-hole';

/**
 * A TCP proxy on 127.0.0.1 in front of a PostgreSQL server, whose network the test breaks on
 * purpose. Nothing about PostgreSQL is faked: in pass-through mode bytes go both ways untouched.
 */
export interface FaultProxy {
	/** `target` with the proxy's host and port in place of the server's. */
	readonly url: string;
	readonly port: number;
	/** Connections the proxy holds open on the client side (forwarded or black-holed). */
	readonly openConnections: number;
	/**
	 * Packets are dropped, sockets stay open: bytes from either side go nowhere, and new
	 * connections are accepted but never forwarded. What a partition or a dead firewall state
	 * table looks like to the store: no error, only silence.
	 */
	blackHole(): void;
	/** Destroys every connection with a TCP RST (what a server crash or failover looks like) and passes again. */
	reset(): void;
	/** Closes every connection cleanly (FIN, no error message: a proxy or load balancer ending it) and passes again. */
	hangUp(): void;
	/**
	 * Passes traffic again for new connections and for the connections that sent nothing while
	 * black-holed; the bytes dropped meanwhile stay lost, so a connection that was waiting for
	 * an answer then waits forever (unless the store gives it up).
	 */
	heal(): void;
	close(): Promise<void>;
}

interface Pair {
	readonly client: Socket;
	server: Socket | undefined;
}

/** Starts a proxy to the server of `target` (a PostgreSQL URL); it closes when the test ends. */
export async function startFaultProxy(t: ExecutionContext, target: string): Promise<FaultProxy> {
	const upstream = new URL(target);
	let mode: ProxyMode = 'pass';
	const pairs = new Set<Pair>();

	// Half-open sockets are allowed so that a FIN, too, is dropped while black-holed (the kernel
	// would otherwise pass it on as the end of the stream).
	const forward = (pair: Pair) => {
		const server = createConnection({ host: upstream.hostname, port: Number(upstream.port), allowHalfOpen: true });
		pair.server = server;
		server.on('data', (chunk: Buffer) => {
			if (mode === 'pass') {
				pair.client.write(chunk);
			}
		});
		server.on('end', () => {
			if (mode === 'pass') {
				pair.client.end();
			}
		});
		server.on('error', () => pair.client.destroy());
		server.on('close', () => {
			if (mode === 'pass') {
				pair.client.destroy();
			}
		});
	};

	const proxy = createServer({ allowHalfOpen: true }, (client) => {
		const pair: Pair = { client, server: undefined };
		pairs.add(pair);
		client.on('data', (chunk: Buffer) => {
			if (mode === 'pass') {
				pair.server?.write(chunk);
			}
		});
		client.on('end', () => {
			if (mode === 'pass') {
				pair.server?.end();
			}
		});
		client.on('error', () => {});
		client.on('close', () => {
			pairs.delete(pair);
			pair.server?.destroy();
		});
		if (mode === 'pass') {
			forward(pair);
		}
	});
	await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
	const { port } = proxy.address() as AddressInfo;
	const url = new URL(target);
	url.hostname = '127.0.0.1';
	url.port = String(port);

	const destroyAll = (reset: boolean) => {
		for (const pair of pairs) {
			for (const socket of [pair.client, pair.server]) {
				if (socket !== undefined && !socket.destroyed) {
					if (reset) {
						socket.resetAndDestroy();
					} else {
						socket.destroy();
					}
				}
			}
		}
		pairs.clear();
	};
	let closing: Promise<void> | undefined;
	const close = () => {
		closing ??= new Promise<void>((resolve) => {
			proxy.close(() => resolve());
			destroyAll(false);
		});
		return closing;
	};
	t.teardown(close);
	return {
		url: url.toString(),
		port,
		get openConnections() {
			return pairs.size;
		},
		blackHole() {
			mode = 'black-hole';
		},
		reset() {
			destroyAll(true);
			mode = 'pass';
		},
		hangUp() {
			destroyAll(false);
			mode = 'pass';
		},
		heal() {
			mode = 'pass';
		},
		close,
	};
}
