// PostgreSQL CPU per statement of one backend (/proc), one statement at a time: each request
// statement prepared (the store's own client), unnamed (an app's Prisma client), and as a call of
// its session function, shipped and without its SET clauses. Rounds interleaved; medians.
// Run: npx tsx bench/session-functions.ts   (ROWS per statement, N statements, ROUNDS)
import pg from 'pg';
import { readFileSync, readdirSync } from 'node:fs';
import { startPostgres } from '../scripts/embedded-postgres.js';
import { sessionStatements, type FunctionKind } from '../src/sql/statements.js';
import { sessionFunctions, type SessionFunction } from '../src/sql/session-functions.js';
import { packageTable } from '../src/sql/session-table.js';
const root = '.';
const server = await startPostgres();
const client = new pg.Client({ connectionString: server.url });
await client.connect();
for (const name of readdirSync(`${root}/prisma/migrations`).filter((n) => !n.endsWith('.toml')).sort()) await client.query(readFileSync(`${root}/prisma/migrations/${name}/migration.sql`, 'utf8'));
await client.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) SELECT 'k'||n, '{"views":1,"_expire":1,"_maxAge":3600000}', now(), now(), now() + interval '1 day' FROM generate_series(1,10000) n`);
await client.query('ANALYZE http_sessions');
const statements = sessionStatements(packageTable, false);
const fns = Object.fromEntries(sessionFunctions(packageTable, false).map((f) => [f.kind, f])) as Record<FunctionKind, SessionFunction>;
// Variants of the function: without any SET (table qualified), with search_path only.
for (const kind of ['selectLive', 'updateLive', 'insert', 'upsert', 'delete'] as const) {
	const f = fns[kind];
	const def = f.definition() as string;
	await client.query(def.replace(f.name, `${f.name}_noset`).replace(' SET plan_cache_mode = force_generic_plan\n', '').replaceAll('"http_sessions"', 'public."http_sessions"'));
	await client.query(def.replace(f.name, `${f.name}_path`).replace(' SET plan_cache_mode = force_generic_plan\n', ' SET search_path = pg_catalog, public, pg_temp\n'));
	await client.query(def.replace(f.name, `${f.name}_generic`).replace(' SET plan_cache_mode = force_generic_plan\n', ' SET plan_cache_mode = force_generic_plan SET search_path = pg_catalog, public, pg_temp\n'));
}
const { rows: [{ pid }] } = await client.query('SELECT pg_backend_pid() AS pid');
const cpu = () => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ').map(Number); return (f[11]! + f[12]!) * 10_000; };
const rows = Number(process.env['ROWS'] ?? 2);
const digests = (i: number) => Array.from({ length: rows }, (_, k) => `k${(i * rows + k) % 10000 + 1}`);
let fresh = 0;
const make = {
	selectLive: (i: number) => statements.selectLive({ digests: digests(i), now: new Date() }),
	updateLive: (i: number) => statements.updateLive(digests(i).map((digest) => ({ digest, replace: false, patch: `{"views":${i}}`, removed: '[]', now: new Date(), expiresOn: new Date(Date.now() + 3_600_000), keepExpiry: false, subject: undefined })), 4096),
	upsert: (i: number) => statements.upsert(digests(i).map((digest) => ({ digest, json: `{"views":${i}}`, now: new Date(), expiresOn: new Date(Date.now() + 3_600_000), subject: undefined })), 4096),
	delete: (i: number) => statements.delete(digests(i).map((digest) => ({ digest: `gone-${digest}`, id: String(20_000_000 + i) }))),
	insert: (i: number) => statements.insert(Array.from({ length: rows }, () => ({ digest: `new${fresh++}`, json: '{"user":"v"}', now: new Date(), expiresOn: new Date(Date.now() + 3_600_000), subject: undefined })), 4096),
};
const n = Number(process.env['N'] ?? 3000);
const results = new Map<string, number[]>();
for (let round = 0; round < Number(process.env['ROUNDS'] ?? 3); round++) {
	for (const kind of ['selectLive', 'updateLive', 'insert', 'upsert', 'delete'] as const) {
		const f = fns[kind];
		const call = (suffix: string) => (f.call('"public"') as string).replace(`"${f.name}"`, `"${f.name}${suffix}"`);
		const variants: [string, (i: number) => pg.QueryConfig][] = [
			['inline named', (i) => { const q = make[kind](i); return { name: kind, text: q.text, values: q.values as unknown[] }; }],
			['inline unnamed', (i) => { const q = make[kind](i); return { text: q.text, values: q.values as unknown[] }; }],
			['fn unnamed (shipped)', (i) => { const q = make[kind](i); return { text: call(''), values: q.values as unknown[] }; }],
			['fn unnamed no SET', (i) => { const q = make[kind](i); return { text: call('_noset'), values: q.values as unknown[] }; }],
			['fn unnamed SET search_path', (i) => { const q = make[kind](i); return { text: call('_path'), values: q.values as unknown[] }; }],
			['fn unnamed both SET', (i) => { const q = make[kind](i); return { text: call('_generic'), values: q.values as unknown[] }; }],
		];
		for (const [name, config] of variants) {
			for (let i = 0; i < 50; i++) await client.query(config(i));
			const before = cpu();
			for (let i = 0; i < n; i++) await client.query(config(i));
			const us = (cpu() - before) / n;
			results.set(`${kind} ${name}`, [...results.get(`${kind} ${name}`) ?? [], us]);
		}
	}
}
for (const [name, values] of results) {
	const sorted = [...values].sort((a, b) => a - b);
	console.log(name.padEnd(42), 'median', sorted[Math.floor(sorted.length / 2)]!.toFixed(0), 'min', sorted[0]!.toFixed(0), 'µs PostgreSQL CPU/statement');
}
await client.end(); await server.stop();
