// `npm test`: generates the Prisma clients, starts a throwaway PostgreSQL (unless DATABASE_URL
// names one), runs AVA against it and stops the server again, whatever the tests did.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startPostgres, type PostgresServer } from './embedded-postgres.js';

const root = fileURLToPath(new URL('..', import.meta.url));

const generated = spawnSync(process.execPath, ['scripts/generate.mjs', 'test/fixtures/app-schema/schema.prisma', 'examples/own-schema/prisma/schema'], {
	cwd: root,
	stdio: 'inherit',
});
if (generated.status !== 0) {
	process.exit(generated.status ?? 1);
}

let server: PostgresServer | undefined;
let adminUrl = process.env['DATABASE_URL'];
if (adminUrl === undefined || adminUrl === '') {
	server = await startPostgres();
	adminUrl = server.url;
	console.log(`Started PostgreSQL for the tests on port ${server.port}`);
} else {
	console.log('Testing against the PostgreSQL in DATABASE_URL (each test file makes its own database)');
}

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
