// `npm run check:package` (CI): the packed package as a new user meets it.
//
// 1. `npm pack`; every source map in the tarball names only files the tarball holds.
// 2. A fresh app installs the tarball with the README's install lines (Quick start), and
//    - `npm ls` finds one @prisma/client and no missing or invalid peer;
//    - `tsc` passes on the Quick start with `tsc --init`'s options (and with skipLibCheck off,
//      so every type the published .d.ts imports resolves); every README ts block compiles
//      against the published types too;
//    - the package loads from ESM and from CommonJS;
// 3. without @prisma/adapter-pg installed, the package still loads (for `{ prisma }` users with
//    another adapter), and `connectionString` says what to install.
//
// Needs the npm registry. KEEP_APP=1 keeps the app's directory.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkSnippets, readmeSnippets } from './readme-snippets.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const failures: string[] = [];

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
	for (const line of installs) {
		const args = line.split(/\s+/).slice(1).map((arg) => arg === 'koa-pgstore' ? tarball : arg);
		run('npm', [...args, '--no-audit', '--no-fund'], { cwd: app, stdio: ['ignore', 'pipe', 'inherit'] });
	}
	const clients = run('npm', ['ls', '@prisma/client', '--all', '--parseable'], { cwd: app }).trim().split('\n').filter(Boolean);
	check(clients.length === 1, `one @prisma/client in the app, shared with koa-pgstore (${clients.length})`);
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

	// 3. Without @prisma/adapter-pg.
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
process.exitCode = failures.length === 0 ? 0 : 1;
