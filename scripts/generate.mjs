// Generates the Prisma clients the package and its tests compile against.
//
// `prisma generate` runs in WebAssembly, yet Prisma 7 first downloads its native schema engine,
// which fails without network. Generation never calls that engine, so unless the caller chose an
// engine binary, Prisma is pointed at a stand-in that only reports it is not there.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const schemas = ['prisma/schema.prisma', ...process.argv.slice(2)];
const env = {
	...process.env,
	PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY
		?? fileURLToPath(new URL('no-schema-engine', import.meta.url)),
	PRISMA_HIDE_UPDATE_MESSAGE: '1',
};
for (const schema of schemas) {
	const result = spawnSync('npx', ['--no-install', 'prisma', 'generate', '--schema', schema], {
		cwd: root, env, stdio: 'inherit',
	});
	if (result.status !== 0) {
		process.exit(result.status ?? 1);
	}
}
