// `npm test`: generates the Prisma clients, starts a throwaway PostgreSQL (unless DATABASE_URL
// names one), runs AVA against it and stops the server again, whatever the tests did.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { migratedTemplate } from '../test/helpers/database.js';
import { startPostgres, type PostgresServer } from './embedded-postgres.js';

const root = fileURLToPath(new URL('..', import.meta.url));

// Generating the clients and starting the server do not wait for each other.
const generating = new Promise<number>((resolve) => {
	const child = spawn(process.execPath, ['scripts/generate.mjs', 'test/fixtures/app-schema/schema.prisma', 'examples/own-schema/prisma/schema'], {
		cwd: root,
		stdio: 'inherit',
	});
	child.on('error', () => resolve(1));
	child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
});

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
	ava.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
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
