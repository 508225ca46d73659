// `npm run check:readme` (in `npm run lint`): every ```ts block of README.md and of the guides in
// docs/ must compile as written in a fresh strict app (see readme-snippets.ts), here against the
// package's sources. The blocks of one file are one program, as the files of one app.
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkSnippets, readmeSnippets } from './readme-snippets.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const guides = (existsSync(`${root}docs`) ? readdirSync(`${root}docs`, { recursive: true, encoding: 'utf8' }) : [])
	.filter((name) => name.endsWith('.md'))
	.map((name) => `docs/${name.split('\\').join('/')}`)
	.sort();
const documents = ['README.md', ...guides];
// Each file is an app of its own: a guide's blocks compile without the README's declarations.
const results = documents.map((document) => {
	const snippets = readmeSnippets(`${root}${document}`, document);
	const errors = snippets.length === 0 ? [] : checkSnippets({
		snippets,
		directory: root,
		readme: document,
		paths: { 'koa-pgstore': [`${root}src/index.ts`] },
		// A client generated from an app's schema with the PGSession model (the own-schema example's).
		prisma: { import: `import type { PrismaClient as __AppClient } from './examples/own-schema/generated/client.js';`, type: '__AppClient' },
		// docs/own-prisma-client.md generates the app's client into ./generated/prisma/ and imports
		// it from there: here that client is the own-schema example's, generated from the same model.
		modules: { 'generated/prisma/client.ts': 'export * from \'../../examples/own-schema/generated/client.js\';\n' },
	});
	for (const error of errors) {
		console.error(error);
	}
	if (snippets.length > 0) {
		console.log(`${document}: ${snippets.length} TypeScript block${snippets.length === 1 ? '' : 's'}, ${errors.length} error${errors.length === 1 ? '' : 's'}`);
	}
	return { blocks: snippets.length, errors: errors.length };
});
const blocks = results.reduce((sum, result) => sum + result.blocks, 0);
const errors = results.reduce((sum, result) => sum + result.errors, 0);
console.log(`${blocks} TypeScript blocks in ${documents.length} files, ${errors} error${errors === 1 ? '' : 's'}`);
process.exitCode = errors === 0 ? 0 : 1;
