// Type-checks the ```ts blocks of the README (and of the guides in docs/) as files of a fresh app:
// `tsc --init`'s strict options, ESM with top-level await, each block a module of its own, the
// blocks checked together in one program (a `declare module 'koa-pgstore'` block types the others,
// as in an app). Used by scripts/check-readme.ts (the README and each guide, against src/) and
// scripts/check-package.ts (the README, against the packed package).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** One ```ts block of a Markdown file. */
export interface Snippet {
	/** Line of the block's first line of code in its file (1-based). */
	readonly line: number;
	readonly code: string;
	/** The Markdown file, as messages name it; `undefined`: the one `checkSnippets` is given as `readme`. */
	readonly file?: string;
}

/**
 * The ```ts blocks of a Markdown file.
 * @param file How messages name the file (e.g. `docs/deploying.md`); without it, `checkSnippets`'s `readme`.
 */
export function readmeSnippets(readmePath: string, file?: string): Snippet[] {
	const lines = readFileSync(readmePath, 'utf8').split('\n');
	const snippets: Snippet[] = [];
	let start: number | undefined;
	for (const [index, line] of lines.entries()) {
		if (start === undefined && /^```ts\s*$/.test(line)) {
			start = index + 1;
		} else if (start !== undefined && /^```\s*$/.test(line)) {
			const code = lines.slice(start, index).join('\n');
			snippets.push(file === undefined ? { line: start + 1, code } : { line: start + 1, code, file });
			start = undefined;
		}
	}
	return snippets;
}

/** What `tsc --init` (TypeScript 5.9) writes, with Node's types and no output. */
export const freshAppOptions: ts.CompilerOptions = {
	module: ts.ModuleKind.NodeNext,
	moduleResolution: ts.ModuleResolutionKind.NodeNext,
	target: ts.ScriptTarget.ESNext,
	types: ['node'],
	noUncheckedIndexedAccess: true,
	exactOptionalPropertyTypes: true,
	strict: true,
	verbatimModuleSyntax: true,
	isolatedModules: true,
	noUncheckedSideEffectImports: true,
	moduleDetection: ts.ModuleDetectionKind.Force,
	skipLibCheck: true,
	noEmit: true,
};

// What the snippets take for granted in the app around them. Each name is declared only in the
// blocks that do not declare it themselves.
const assumed: Record<string, string> = {
	app: 'declare const app: __Koa;',
	store: 'declare const store: __pgstore.PgStore;',
	connectionString: 'declare const connectionString: string;',
	userId: 'declare const userId: string;',
	// The app's own login check; it throws (a 401) when the credentials are wrong.
	authenticate: 'declare function authenticate(credentials: unknown): Promise<{ id: string }>;',
	// A router in the style of @koa/router: path parameters in `ctx.params`.
	router: `declare const router: Record<'get' | 'post', (path: string, handler: (ctx: __Koa.ParameterizedContext & { params: Record<string, string> }) => Promise<void>) => void>;`,
};

// Shared by all blocks, in a file of its own.
const globals = `import 'koa';
declare module 'koa' {
	// A body parser (e.g. @koa/bodyparser) fills it.
	interface Request {
		body?: unknown;
	}
}
`;

function declaredNames(code: string): Set<string> {
	const source = ts.createSourceFile('snippet.ts', code, ts.ScriptTarget.ESNext, false, ts.ScriptKind.TS);
	const names = new Set<string>();
	const bind = (name: ts.BindingName) => {
		if (ts.isIdentifier(name)) {
			names.add(name.text);
		} else {
			for (const element of name.elements) {
				if (ts.isBindingElement(element)) {
					bind(element.name);
				}
			}
		}
	};
	for (const statement of source.statements) {
		if (ts.isImportDeclaration(statement) && statement.importClause !== undefined) {
			const { name, namedBindings } = statement.importClause;
			if (name !== undefined) {
				names.add(name.text);
			}
			if (namedBindings !== undefined && ts.isNamespaceImport(namedBindings)) {
				names.add(namedBindings.name.text);
			} else if (namedBindings !== undefined) {
				for (const element of namedBindings.elements) {
					names.add(element.name.text);
				}
			}
		} else if (ts.isVariableStatement(statement)) {
			for (const declaration of statement.declarationList.declarations) {
				bind(declaration.name);
			}
		} else if ((ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement)) && statement.name !== undefined) {
			names.add(statement.name.text);
		}
	}
	return names;
}

/**
 * Type-checks `snippets` as files in `directory` (whose node_modules must hold koa, koa-session,
 * their types and, unless `paths` maps it, koa-pgstore). Returns the diagnostics of the snippets,
 * positioned in their Markdown file (`Snippet.file`, else `readme`).
 *
 * @param prisma The type of the `prisma` the snippets pass to `new PgStore()`, and the import it
 * needs (a client generated from a schema with the PGSession model).
 * @param modules Files of the app around the snippets that `directory` lacks, by path relative to
 * it: e.g. the Prisma client a guide's blocks import from where the guide generates it.
 */
export function checkSnippets({ snippets, directory, readme, paths, prisma, modules = {} }: {
	snippets: readonly Snippet[];
	directory: string;
	readme: string;
	paths?: Record<string, string[]>;
	prisma: { import?: string; type: string };
	modules?: Record<string, string>;
}): string[] {
	const options: ts.CompilerOptions = { ...freshAppOptions, ...paths === undefined ? {} : { paths } };
	const files = new Map<string, { text: string; snippet?: Snippet; prefixLines: number }>();
	files.set(path.join(directory, 'readme-globals.ts'), { text: globals, prefixLines: 0 });
	for (const [name, text] of Object.entries(modules)) {
		files.set(path.join(directory, name), { text, prefixLines: 0 });
	}
	for (const [index, snippet] of snippets.entries()) {
		const declared = declaredNames(snippet.code);
		const prefix = [
			'import type __Koa from \'koa\';',
			'import type * as __pgstore from \'koa-pgstore\';',
			...prisma.import === undefined ? [] : [prisma.import],
			...declared.has('prisma') ? [] : [`declare const prisma: ${prisma.type};`],
			...Object.entries(assumed).filter(([name]) => !declared.has(name)).map(([, declaration]) => declaration),
		];
		files.set(path.join(directory, `readme-block-${index + 1}.ts`), {
			text: `${prefix.join('\n')}\n${snippet.code}\n`,
			snippet,
			prefixLines: prefix.length,
		});
	}
	const host = ts.createCompilerHost(options);
	const { getSourceFile, fileExists, readFile, directoryExists } = host;
	host.fileExists = (name) => files.has(path.resolve(name)) || fileExists.call(host, name);
	// Module resolution looks for a file's folder first: `modules` may name folders `directory` lacks.
	host.directoryExists = (name) => [...files.keys()].some((file) => file.startsWith(`${path.resolve(name)}${path.sep}`))
		|| (directoryExists?.call(host, name) ?? true);
	host.readFile = (name) => files.get(path.resolve(name))?.text ?? readFile.call(host, name);
	host.getSourceFile = (name, version, ...rest) => {
		const file = files.get(path.resolve(name));
		return file === undefined
			? getSourceFile.call(host, name, version, ...rest)
			: ts.createSourceFile(name, file.text, version, true);
	};
	const program = ts.createProgram([...files.keys()], options, host);
	// The snippets' own diagnostics (and the program's), not those of every file they import:
	// `npm run typecheck` checks the sources, and checking them again for each file costs seconds.
	const diagnostics = [
		...program.getOptionsDiagnostics(),
		...program.getGlobalDiagnostics(),
		...[...files.keys()].flatMap((name) => {
			const source = program.getSourceFile(name);
			return source === undefined ? [] : [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)];
		}),
	];
	return diagnostics.map((diagnostic) => {
		const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n  ');
		if (diagnostic.file === undefined || diagnostic.start === undefined) {
			return `TS${diagnostic.code}: ${message}`;
		}
		const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
		const file = files.get(path.resolve(diagnostic.file.fileName));
		if (file?.snippet === undefined) {
			return `${path.relative(process.cwd(), diagnostic.file.fileName)}:${line + 1}:${character + 1} TS${diagnostic.code}: ${message}`;
		}
		const inSnippet = line - file.prefixLines;
		const where = inSnippet < 0 ? `(assumed declarations of the block at line ${file.snippet.line})` : `${line + 1 - file.prefixLines + file.snippet.line - 1}:${character + 1}`;
		return `${file.snippet.file ?? readme}:${where} TS${diagnostic.code}: ${message}`;
	});
}
