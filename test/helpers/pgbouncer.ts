import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ExecutionContext, ImplementationFn, TestFn } from 'ava';
import { freePort } from '../../scripts/embedded-postgres.js';

/** A PgBouncer of the test's own, in transaction pooling mode. */
export interface PgBouncer {
	/** The server's URL with PgBouncer's host and port: same user, password and database. */
	readonly url: string;
	readonly port: number;
	/** Stops PgBouncer; its server connections close with it. */
	stop(): Promise<void>;
	/**
	 * Stops it and starts a new PgBouncer process on the same port and configuration (a bouncer
	 * restart or failover: every server connection is new afterwards).
	 */
	restart(): Promise<void>;
}

// Debian installs it in /usr/sbin, which is not on every user's PATH.
const searchPath = [...(process.env['PATH'] ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin'];

/**
 * The `pgbouncer` binary: the file PGBOUNCER names (only that one, when set), else the first on
 * the PATH or in the sbin directories; `undefined` when there is none.
 */
export function pgbouncerBinary(): string | undefined {
	const chosen = process.env['PGBOUNCER'];
	const candidates = chosen === undefined || chosen === ''
		? searchPath.filter(Boolean).map((directory) => path.join(directory, 'pgbouncer'))
		: [chosen];
	return candidates.find((candidate) => {
		try {
			accessSync(candidate, constants.X_OK);
			return true;
		} catch {
			return false;
		}
	});
}

const binary = pgbouncerBinary();

/** `[major, minor]` of the installed PgBouncer. */
function pgbouncerVersion(file: string): [number, number] {
	const { stdout } = spawnSync(file, ['--version'], { encoding: 'utf8' });
	const match = /PgBouncer (\d+)\.(\d+)/.exec(stdout);
	if (match === null) {
		throw new Error(`Could not read the version of ${file}: ${stdout}`);
	}
	return [Number(match[1]), Number(match[2])];
}

/**
 * AVA's `test` for tests that need PgBouncer: when no `pgbouncer` binary is installed they are
 * reported as skipped (their titles say why), never as passed. (AVA is passed in, so that this
 * module also loads outside AVA.)
 *
 * @example
 * ```ts
 * const bouncerTest = needsPgBouncer(test);
 * bouncerTest('sessions move between processes', async (t) => { … });
 * ```
 */
export function needsPgBouncer(test: TestFn): (title: string, implementation: ImplementationFn<[]>) => void {
	return (title, implementation) => {
		if (binary === undefined) {
			test.skip(`${title} (skipped: pgbouncer not installed)`, implementation);
		} else {
			test(title, implementation);
		}
	};
}

/**
 * Starts PgBouncer in transaction pooling mode in front of the server of `serverUrl`, on a free
 * loopback port, with its own configuration in a temporary directory; stopped when the test ends.
 * Its behaviour is pinned whatever the version: no prepared statement support (1.18 has none;
 * on 1.21 and later `max_prepared_statements = 0`), so statements prepared on a server
 * connection are visible to every client that gets it next, as on 1.18.
 *
 * @param users Roles besides the URL's own that may log in, with their passwords.
 */
export async function startPgBouncer(
	t: ExecutionContext,
	serverUrl: string,
	{ users = {}, poolSize = 4 }: { users?: Record<string, string>; poolSize?: number } = {},
): Promise<PgBouncer> {
	if (binary === undefined) {
		throw new Error('pgbouncer is not installed (apt-get install pgbouncer); declare the test with needsPgBouncer(test)');
	}
	const server = new URL(serverUrl);
	const port = await freePort();
	const directory = await mkdtemp(path.join(tmpdir(), 'koa-pgstore-pgbouncer-'));
	const [major, minor] = pgbouncerVersion(binary);
	const logins = { [decodeURIComponent(server.username)]: decodeURIComponent(server.password), ...users };
	const quote = (text: string) => `"${text.replaceAll('"', '""')}"`;
	await writeFile(path.join(directory, 'userlist.txt'), Object.entries(logins).map(([user, password]) => `${quote(user)} ${quote(password)}\n`).join(''));
	await writeFile(path.join(directory, 'pgbouncer.ini'), [
		'[databases]',
		`* = host=${server.hostname} port=${server.port}`,
		'[pgbouncer]',
		'listen_addr = 127.0.0.1',
		`listen_port = ${port}`,
		'unix_socket_dir =',
		'auth_type = md5',
		`auth_file = ${path.join(directory, 'userlist.txt')}`,
		`logfile = ${path.join(directory, 'pgbouncer.log')}`,
		'pool_mode = transaction',
		`default_pool_size = ${poolSize}`,
		'max_client_conn = 1000',
		...major > 1 || (major === 1 && minor >= 21) ? ['max_prepared_statements = 0'] : [],
		'',
	].join('\n'));
	// PgBouncer refuses to run as root; embedded-postgres already made a `postgres` user for that.
	const owner = process.getuid?.() === 0 ? osUser('postgres') : undefined;
	if (owner !== undefined) {
		await chown(directory, owner.uid, owner.gid);
		for (const file of ['userlist.txt', 'pgbouncer.ini']) {
			await chown(path.join(directory, file), owner.uid, owner.gid);
		}
	}

	let child: ChildProcess | undefined;
	const start = async () => {
		const started = spawn(binary, [path.join(directory, 'pgbouncer.ini')], {
			stdio: 'ignore',
			...owner === undefined ? {} : { uid: owner.uid, gid: owner.gid },
		});
		child = started;
		const exited = new Promise<never>((_resolve, reject) => {
			started.once('exit', (code) => {
				void readFile(path.join(directory, 'pgbouncer.log'), 'utf8').catch(() => '').then((log) => {
					reject(new Error(`pgbouncer exited with code ${code}:\n${log}`));
				});
			});
		});
		exited.catch(() => {});
		await Promise.race([untilListening(port), exited]);
	};
	const stop = async () => {
		const running = child;
		child = undefined;
		if (running === undefined || running.exitCode !== null || running.signalCode !== null) {
			return;
		}
		// SIGTERM: immediate shutdown, every client and server connection closed.
		const gone = new Promise<void>((resolve) => running.once('exit', () => resolve()));
		running.kill('SIGTERM');
		await gone;
	};
	await start();
	t.teardown(async () => {
		await stop();
		await rm(directory, { recursive: true, force: true });
	});
	const url = new URL(serverUrl);
	url.hostname = '127.0.0.1';
	url.port = String(port);
	return {
		url: url.toString(),
		port,
		stop,
		async restart() {
			await stop();
			await start();
		},
	};
}

function osUser(name: string): { uid: number; gid: number } {
	const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
	const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
	if (uid.status !== 0 || gid.status !== 0) {
		throw new Error(`PgBouncer cannot run as root and there is no \`${name}\` user to run it as`);
	}
	return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function untilListening(port: number): Promise<void> {
	const deadline = Date.now() + 10_000;
	for (;;) {
		const connected = await new Promise<boolean>((resolve) => {
			const socket = createConnection({ host: '127.0.0.1', port });
			socket.once('connect', () => {
				socket.destroy();
				resolve(true);
			});
			socket.once('error', () => resolve(false));
		});
		if (connected) {
			return;
		}
		if (Date.now() > deadline) {
			throw new Error(`pgbouncer did not listen on port ${port} within 10 s`);
		}
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
}
