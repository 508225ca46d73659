// `npm run check:readme` (in `npm run lint`): every ```ts block of README.md and of the guides in
// docs/ must compile as written in a fresh strict app (see readme-snippets.ts), here against the
// package's sources. All blocks are one program, as the files of one app.
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkSnippets, readmeSnippets } from './readme-snippets.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const guides = (existsSync(`${root}docs`) ? readdirSync(`${root}docs`, { recursive: true, encoding: 'utf8' }) : [])
	.filter((name) => name.endsWith('.md'))
	.map((name) => `docs/${name.split('\\').join('/')}`)
	.sort();
const documents = ['README.md', ...guides];
const snippets = documents.flatMap((document) => readmeSnippets(`${root}${document}`, document));
const errors = checkSnippets({
	snippets,
	directory: root,
	readme: 'README.md',
	paths: { 'koa-pgstore': [`${root}src/index.ts`] },
	// A client generated from an app's schema with the PGSession model (the own-schema example's).
	prisma: { import: `import type { PrismaClient as __AppClient } from './examples/own-schema/generated/client.js';`, type: '__AppClient' },
	// docs/own-prisma-client.md generates the app's client into ./generated/prisma/ and imports it
	// from there: here that client is the own-schema example's, generated from the same model.
	modules: { 'generated/prisma/client.ts': 'export * from \'../../examples/own-schema/generated/client.js\';\n' },
});
for (const error of errors) {
	console.error(error);
}
for (const document of documents) {
	const count = snippets.filter((snippet) => snippet.file === document).length;
	if (count > 0) {
		console.log(`${document}: ${count} TypeScript block${count === 1 ? '' : 's'}`);
	}
}
console.log(`${snippets.length} TypeScript blocks in ${documents.length} files, ${errors.length} error${errors.length === 1 ? '' : 's'}`);
process.exitCode = errors.length === 0 ? 0 : 1;
