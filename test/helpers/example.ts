import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import type { ExecutionContext } from 'ava';
import type Koa from 'koa';

/** Serves a Koa app on a free loopback port until the test ends. */
export async function serve(t: ExecutionContext, app: Koa): Promise<string> {
	app.silent = true;
	const server = app.listen(0, '127.0.0.1');
	await new Promise<void>((resolve) => server.once('listening', resolve));
	t.teardown(() => new Promise<void>((resolve) => {
		server.closeAllConnections();
		server.close(() => resolve());
	}));
	return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** An example's server, started as `npm run example:…` starts it, in a process of its own. */
export interface ExampleProcess {
	/** Where it listens, from its "listening on http://localhost:<port>" line. */
	readonly url: string;
	/** Everything it printed so far. */
	output(): string;
	/** Sends SIGTERM and resolves with its exit code (`null`: still running after 20 s, killed). */
	stop(): Promise<number | null>;
}

/**
 * Runs `script` (TypeScript, from the repository root) with PORT=0 and `env`, and waits until it
 * prints the address it listens on. The process is stopped when the test ends, if the test did
 * not stop it.
 */
export async function startExample(t: ExecutionContext, script: string, env: Record<string, string>): Promise<ExampleProcess> {
	const child = spawn(process.execPath, ['--import=tsx', script], {
		env: { ...process.env, PORT: '0', ...env },
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let output = '';
	const exited = new Promise<number | null>((resolve) => {
		child.once('exit', (code) => resolve(code));
	});
	const stop = async () => {
		if (child.exitCode === null && child.signalCode === null) {
			child.kill('SIGTERM');
		}
		const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
		const code = await exited;
		clearTimeout(timer);
		return child.signalCode === 'SIGKILL' ? null : code;
	};
	t.teardown(async () => {
		await stop();
	});
	const url = await new Promise<string>((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`${script} did not say where it listens within 50 s:\n${output}`)), 50_000);
		const onData = (chunk: Buffer) => {
			output += chunk.toString();
			const port = /listening on http:\/\/localhost:(\d+)/.exec(output)?.[1];
			if (port !== undefined) {
				clearTimeout(timer);
				resolve(`http://127.0.0.1:${port}`);
			}
		};
		child.stdout.on('data', onData);
		child.stderr.on('data', onData);
		void exited.then((code) => {
			clearTimeout(timer);
			reject(new Error(`${script} exited (${code}) before listening:\n${output}`));
		});
	});
	return { url, output: () => output, stop };
}
