// `npm run lint` runs this: every ```ts block of README.md must compile as written in a fresh
// strict app (see readme-snippets.ts), here against the package's sources.
import { fileURLToPath } from 'node:url';
import { checkSnippets, readmeSnippets } from './readme-snippets.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const snippets = readmeSnippets(`${root}README.md`);
const errors = checkSnippets({
	snippets,
	directory: root,
	readme: 'README.md',
	paths: { 'koa-pgstore': [`${root}src/index.ts`] },
	// A client generated from an app's schema with the PGSession model (the own-schema example's).
	prisma: { import: `import type { PrismaClient as __AppClient } from './examples/own-schema/generated/client.js';`, type: '__AppClient' },
});
for (const error of errors) {
	console.error(error);
}
console.log(`README.md: ${snippets.length} TypeScript blocks, ${errors.length} error${errors.length === 1 ? '' : 's'}`);
process.exitCode = errors.length === 0 ? 0 : 1;
