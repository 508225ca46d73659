// Generates the Prisma clients the package and its tests compile against.
//
// `prisma generate` runs in WebAssembly, yet Prisma 7 first downloads its native schema engine,
// which fails without network. Generation never calls that engine, so unless the caller chose an
// engine binary, Prisma is pointed at a stand-in that only reports it is not there.
//
// A client is generated again only when what it is made from changed: its schema, prisma.config.ts
// or the installed Prisma. Generating rewrites every file, which would make each `npm test` find
// dist/ older than src/generated/ and rebuild it. What a client was made from is stamped into its
// output directory once generation succeeded; `--force` generates regardless.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const force = args.includes('--force');
const schemas = ['prisma/schema.prisma', ...args.filter((arg) => arg !== '--force')];
const env = {
	...process.env,
	PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY
		?? fileURLToPath(new URL('no-schema-engine', import.meta.url)),
	PRISMA_HIDE_UPDATE_MESSAGE: '1',
};
const stampName = '.generated-from.json';

/** The schema's files (one, or a folder of them), each with its text, in a stable order. */
function schemaFiles(schema) {
	const full = path.resolve(root, schema);
	const files = statSync(full).isDirectory()
		? readdirSync(full).filter((name) => name.endsWith('.prisma')).sort().map((name) => path.join(full, name))
		: [full];
	return files.map((file) => ({ file, text: readFileSync(file, 'utf8') }));
}

/**
 * Where the schema's one generator writes, or `undefined` (then it is always generated): read
 * from its `output`, relative to the file that declares it.
 */
function outputDirectory(files) {
	const outputs = files.flatMap(({ file, text }) => [...text.matchAll(/^\s*output\s*=\s*"([^"]+)"/gmu)]
		.map((match) => path.resolve(path.dirname(file), match[1])));
	return outputs.length === 1 ? outputs[0] : undefined;
}

function stamp(files) {
	const hash = createHash('sha256');
	for (const name of ['prisma/package.json', '@prisma/client/package.json']) {
		hash.update(`${name}@${JSON.parse(readFileSync(require.resolve(name), 'utf8')).version}\n`);
	}
	hash.update(readFileSync(path.join(root, 'prisma.config.ts')));
	for (const { file, text } of files) {
		hash.update(`\n${path.relative(root, file)}\n${text}`);
	}
	return JSON.stringify({ sha256: hash.digest('hex') });
}

for (const schema of schemas) {
	const files = schemaFiles(schema);
	const output = outputDirectory(files);
	const stampFile = output === undefined ? undefined : path.join(output, stampName);
	const made = stamp(files);
	if (!force && stampFile !== undefined && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === made) {
		console.log(`Prisma client of ${schema} is current (${path.relative(root, output)})`);
		continue;
	}
	// Gone until this generation succeeds: an interrupted one must not pass for current.
	if (stampFile !== undefined) {
		rmSync(stampFile, { force: true });
	}
	const result = spawnSync('npx', ['--no-install', 'prisma', 'generate', '--schema', schema], {
		cwd: root, env, stdio: 'inherit',
	});
	if (result.status !== 0) {
		process.exit(result.status ?? 1);
	}
	if (stampFile !== undefined) {
		writeFileSync(stampFile, made);
	}
}
