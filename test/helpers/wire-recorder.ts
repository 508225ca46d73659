import { createConnection, createServer, type Socket } from 'node:net';
import type { ExecutionContext } from 'ava';

/** What a client asked PostgreSQL to parse: the statement's name (`''` for an unnamed one) and text. */
export interface ParsedStatement {
	readonly name: string;
	readonly text: string;
}

/**
 * A TCP proxy in front of PostgreSQL that reads the frontend protocol as it passes and records
 * every Parse message, so a test sees whether statements are prepared by name. Plain TCP only
 * (the tests' server speaks no TLS). `url` is the given URL through the proxy.
 */
export async function recordParses(t: ExecutionContext, databaseUrl: string): Promise<{ url: string; parses: ParsedStatement[] }> {
	const upstream = new URL(databaseUrl);
	const parses: ParsedStatement[] = [];
	const sockets = new Set<Socket>();
	const server = createServer((client) => {
		const server = createConnection(Number(upstream.port), upstream.hostname);
		sockets.add(client).add(server);
		let pending = Buffer.alloc(0);
		let started = false;
		client.on('data', (chunk: Buffer) => {
			pending = Buffer.concat([pending, chunk]);
			// The startup message has a length but no type byte; every later one has both.
			while (true) {
				const header = started ? 5 : 4;
				if (pending.length < header) {
					break;
				}
				const length = pending.readInt32BE(started ? 1 : 0);
				const total = (started ? 1 : 0) + length;
				if (pending.length < total) {
					break;
				}
				if (started && pending[0] === 0x50) {
					const body = pending.subarray(5, total);
					const nameEnd = body.indexOf(0);
					const textEnd = body.indexOf(0, nameEnd + 1);
					parses.push({ name: body.subarray(0, nameEnd).toString(), text: body.subarray(nameEnd + 1, textEnd).toString() });
				}
				started = true;
				pending = pending.subarray(total);
			}
			server.write(chunk);
		});
		server.on('data', (chunk) => client.write(chunk));
		for (const [from, to] of [[client, server], [server, client]] as const) {
			from.on('close', () => to.destroy());
			from.on('error', () => to.destroy());
		}
	});
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	t.teardown(() => new Promise<void>((resolve) => {
		for (const socket of sockets) {
			socket.destroy();
		}
		server.close(() => resolve());
	}));
	const address = server.address();
	const proxied = new URL(databaseUrl);
	proxied.host = `127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
	return { url: proxied.toString(), parses };
}
