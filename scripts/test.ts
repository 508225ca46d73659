// `npm test`: generates the Prisma clients, builds dist/ if it is older than src/, starts a
// throwaway PostgreSQL (unless DATABASE_URL names one), runs AVA against it and stops the server
// again, whatever the tests did.
import { spawn } from 'node:child_process';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { migratedTemplate } from '../test/helpers/database.js';
import { startPostgres, type PostgresServer } from './embedded-postgres.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function run(args: string[]): Promise<number> {
	return new Promise<number>((resolve) => {
		const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
		child.on('error', () => resolve(1));
		child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
	});
}

async function filesUnder(directory: string): Promise<string[]> {
	const entries = await readdir(path.join(root, directory), { recursive: true, withFileTypes: true });
	return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)));
}

const modified = async (file: string) => (await stat(path.join(root, file))).mtimeMs;

/**
 * Why dist/ is not what src/ builds to now, or `undefined` when it is: some source has no
 * compiled module, or a source or the build's tsconfig changed after the oldest module was
 * written (tsc writes them all on every build).
 */
async function staleDist(): Promise<string | undefined> {
	const inputs = [...await filesUnder('src'), 'tsconfig.build.json', 'tsconfig.json'];
	const modules = inputs.filter((file) => file.startsWith(`src${path.sep}`) && file.endsWith('.ts') && !file.endsWith('.d.ts'))
		.map((file) => path.join('dist', `${file.slice('src/'.length, -'.ts'.length)}.js`));
	let oldestModule = Number.POSITIVE_INFINITY;
	for (const module of modules) {
		const time = await modified(module).catch(() => undefined);
		if (time === undefined) {
			return `${module} is missing`;
		}
		oldestModule = Math.min(oldestModule, time);
	}
	for (const input of inputs) {
		if (await modified(input) > oldestModule) {
			return `${input} changed after it was built`;
		}
	}
	return undefined;
}

// The child processes that stand for what users run (the bin, scripts that import the package)
// run the built dist/, as users do: a dist/ older than src/ is built first, never tested
// silently. Generating the clients (the package's is compiled into dist/) and building take turns;
// they do not wait for the server, nor it for them.
const generating = (async () => {
	const generated = await run(['scripts/generate.mjs', 'test/fixtures/app-schema/schema.prisma', 'examples/own-schema/prisma/schema']);
	if (generated !== 0) {
		return generated;
	}
	const stale = await staleDist();
	if (stale === undefined) {
		console.log('dist/ is current');
		return 0;
	}
	console.log(`Building dist/ (${stale})`);
	// As `npm run build` does: a module whose source is gone must not stay importable.
	await rm(path.join(root, 'dist'), { recursive: true, force: true });
	return run([fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', 'tsconfig.build.json']);
})();

let server: PostgresServer | undefined;
const external = process.env['DATABASE_URL'];
const serving = (async () => {
	let url = external;
	if (url === undefined || url === '') {
		server = await startPostgres();
		url = server.url;
		console.log(`Started PostgreSQL for the tests on port ${server.port}`);
	} else {
		console.log('Testing against the PostgreSQL in DATABASE_URL (each test file makes its own database)');
	}
	// Made here once, rather than by the first test of each AVA worker at once (which would also
	// work: they take turns).
	await migratedTemplate(url);
	return url;
})();
const [generated, served] = await Promise.allSettled([generating, serving]);
if (served.status === 'rejected' || generated.status === 'rejected' || generated.value !== 0) {
	await server?.stop();
	if (served.status === 'rejected') {
		throw served.reason;
	}
	if (generated.status === 'rejected') {
		throw generated.reason;
	}
	process.exit(generated.status === 'fulfilled' ? generated.value : 1);
}
const adminUrl = served.value;

const ava = spawn(process.execPath, [fileURLToPath(new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url)), ...process.argv.slice(2)], {
	cwd: root,
	stdio: ['inherit', 'pipe', 'inherit'],
	env: { ...process.env, PGSTORE_TEST_ADMIN_URL: adminUrl, ...process.stdout.isTTY ? { FORCE_COLOR: '1' } : {} },
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
	process.on(signal, () => ava.kill(signal));
}
// AVA's output passes through; its summary is also read, to end with the plain
// "N passed, N failed" line that CI systems recognise.
let output = '';
ava.stdout.on('data', (chunk: Buffer) => {
	process.stdout.write(chunk);
	output += chunk.toString();
});
const exitCode = await new Promise<number>((resolve) => {
	// 'close', not 'exit': the summary is read from AVA's output, in full only once it closes.
	ava.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
});
const plain = output.replaceAll(/\u001B\[[0-9;]*m/g, '');
const count = (pattern: RegExp) => Number(pattern.exec(plain)?.[1] ?? 0);
// AVA lists every test (✔ or ✘) but prints a "passed" total only when none failed.
const passed = plain.match(/^\s*✔ /gmu)?.length ?? 0;
const failed = Math.max(count(/(\d+) tests? failed/), plain.match(/^\s*✘ /gmu)?.length ?? 0)
	+ count(/(\d+) uncaught exceptions?/) + count(/(\d+) unhandled rejections?/);
console.log(`\n${passed} passed, ${failed} failed`);
await server?.stop();
process.exit(exitCode);
