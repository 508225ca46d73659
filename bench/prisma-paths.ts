// Where the time goes: the store's own client (named prepared statements on a pg pool) against an
// app's Prisma client ($queryRawUnsafe, unnamed), per request and per statement kind.
// Three stores driven by store.get/set in-process at 8 and 32 requests in flight: the store's own
// client (prepared statements), an app's Prisma client on a database without the session
// functions (plain statements), and one with them. CPU per request (Node: process.cpuUsage; all of
// PostgreSQL's processes: /proc) and, per statement, pg_stat_statements' plan and execution times.
// Run: npm run generate && npx tsx bench/prisma-paths.ts   (KP_COUNT, KP_WARM, KP_ROUNDS, KP_SPREAD,
// KP_ROWS other sessions in the table; KP_STORES, KP_WORKLOADS, KP_CONNECTIONS to run some cells only)
import { readFileSync, readdirSync } from 'node:fs';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { startPostgres } from '../scripts/embedded-postgres.js';
import { PgStore } from '../src/index.js';
import { PrismaClient } from '../src/generated/prisma/client.js';
const root = '.';

const server = await startPostgres({ postgresFlags: ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all', '-c', 'pg_stat_statements.track_planning=on'] });
const bootstrap = new pg.Pool({ connectionString: server.url, max: 1 });
await bootstrap.query('CREATE EXTENSION pg_stat_statements');
await bootstrap.query('CREATE DATABASE plain');
await bootstrap.end();
const plainUrl = server.url.replace(/\/postgres$/, '/plain');
const admin = new pg.Pool({ connectionString: server.url, max: 2 });
admin.on('error', () => {});
const plainAdmin = new pg.Pool({ connectionString: plainUrl, max: 2 });
plainAdmin.on('error', () => {});
for (const db of [admin, plainAdmin]) {
	for (const name of readdirSync(`${root}/prisma/migrations`).filter((n) => !n.endsWith('.toml')).sort()) {
		await db.query(readFileSync(`${root}/prisma/migrations/${name}/migration.sql`, 'utf8'));
	}
}
{
	const { rows } = await plainAdmin.query(`SELECT p.oid::regprocedure::text AS f FROM pg_proc p WHERE p.proname LIKE 'koa_pgstore%'`);
	for (const row of rows) await plainAdmin.query(`DROP FUNCTION ${row.f}`);
}
const clockTicks = 100;
// Only this server's backends: filter by port via postmaster pid.
const { rows: [me] } = await admin.query('SELECT pg_backend_pid() AS pid');
const postmaster = Number(readFileSync(`/proc/${me.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
function serverCpu(): number {
	let total = 0;
	for (const entry of readdirSync('/proc')) {
		if (!/^\d+$/.test(entry)) continue;
		let stat: string;
		try { stat = readFileSync(`/proc/${entry}/stat`, 'utf8'); } catch { continue; }
		const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
		if (Number(entry) !== postmaster && f[1] !== postmaster) continue;
		total += (((f[11] ?? 0) + (f[12] ?? 0)) * 1e6) / clockTicks;
		// Backends that exited: counted in the postmaster's children times.
		if (Number(entry) === postmaster) total += (((f[13] ?? 0) + (f[14] ?? 0)) * 1e6) / clockTicks;
	}
	return total;
}

const hour = 3_600_000;
const prismaClient = new PrismaClient({ adapter: new PrismaPg({ connectionString: server.url, max: 10 }) });
const plainClient = new PrismaClient({ adapter: new PrismaPg({ connectionString: plainUrl, max: 10 }) });
const allStores = {
	owned: new PgStore({ connectionString: server.url, cleanupInterval: 0, pool: { max: 10 } }),
	'prisma-plain': new PgStore({ prisma: plainClient, cleanupInterval: 0 }),
	'prisma-fn': new PgStore({ prisma: prismaClient, cleanupInterval: 0 }),
};
// KP_STORES, KP_WORKLOADS, KP_CONNECTIONS: comma-separated subsets of the cells.
const only = (name: string) => (process.env[name] ?? '').split(',').filter(Boolean);
const stores = Object.fromEntries(Object.entries(allStores).filter(([name]) => only('KP_STORES').length === 0 || only('KP_STORES').includes(name))) as typeof allStores;
const sessionOf = (views: number) => ({ views, _expire: Date.now() + hour, _maxAge: hour });
let fresh = 0;
const workloads = {
	read: async (store: typeof stores.owned, key: string) => { await store.get(key, hour, { ctx: {} }); },
	write: async (store: typeof stores.owned, key: string) => {
		const ctx = {};
		const session = await store.get(key, hour, { ctx }) as Record<string, unknown>;
		await store.set(key, { ...session, views: Number(session['views'] ?? 0) + 1 }, hour, { changed: true, ctx });
	},
	new: async (store: typeof stores.owned) => { await store.set(`new-${process.pid}-${fresh++}`, { user: 'visitor', _expire: Date.now() + hour, _maxAge: hour }, hour, { changed: true, ctx: {} }); },
};
async function drive(store: typeof stores.owned, workload: keyof typeof workloads, keys: string[], concurrency: number, count: number) {
	let next = 0;
	await Promise.all(Array.from({ length: concurrency }, async () => {
		while (next < count) {
			const i = next++;
			for (let hop = Math.floor(Math.random() * spread); hop > 0; hop--) await new Promise((resolve) => setImmediate(resolve));
			await workloads[workload](store, keys[i % keys.length]!);
		}
	}));
}
const kinds: [RegExp, string][] = [[/^SELECT .* AS "key", .*"json"/, 'selectLive'], [/^WITH v AS \(SELECT r\.key, r\.new_key/, 'updateLive'], [/ON CONFLICT/, 'upsert'], [/^WITH v AS \(SELECT r\.key, r\.data/, 'insert'], [/^DELETE/, 'delete'], [/koa_pgstore_\w+/, 'fn']];
async function statementStats() {
	const { rows } = await admin.query(`SELECT query, calls::int, plans::int, total_plan_time, total_exec_time, rows::int, toplevel FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE 'ANALYZE%'`);
	const out: Record<string, { calls: number; plans: number; plan: number; exec: number; rows: number }> = {};
	for (const row of rows) {
		const called = /koa_pgstore_([a-z_]+)_[0-9a-f]{12}/.exec(row.query);
		const match = kinds.find(([re]) => re.test(row.query));
		const name = `${called !== null ? `call ${called[1]}` : match?.[1] ?? row.query.slice(0, 40)}${row.toplevel ? '' : ' (nested)'}`;
		const entry = out[name] ??= { calls: 0, plans: 0, plan: 0, exec: 0, rows: 0 };
		entry.calls += row.calls; entry.plans += row.plans; entry.plan += row.total_plan_time; entry.exec += row.total_exec_time; entry.rows += row.rows;
	}
	return out;
}
const keysOf: Record<string, string[]> = {};
for (const [name, store] of Object.entries(stores)) {
	keysOf[name] = Array.from({ length: 200 }, (_, i) => `${name}-key-${i}`);
	await Promise.all(keysOf[name]!.map((key) => store.set(key, sessionOf(0), hour, { changed: true })));
}
// KP_ROWS: live rows of other sessions in the table, as in an app with many users.
for (const db of [admin, plainAdmin]) {
	await db.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) SELECT pg_catalog.md5(i::text), '{"views":1}', now(), now(), now() + interval '1 hour' FROM generate_series(1, $1::int) AS i`, [Number(process.env['KP_ROWS'] ?? 0)]);
}
const count = Number(process.env['KP_COUNT'] ?? 4000);
const spread = Number(process.env['KP_SPREAD'] ?? 0);
const warm = Number(process.env['KP_WARM'] ?? 1500);
const rounds = Number(process.env['KP_ROUNDS'] ?? 2);
const results: Record<string, number[][]> = {};
for (let round = 0; round < rounds; round++) {
	for (const concurrency of only('KP_CONNECTIONS').length === 0 ? [8, 32] : only('KP_CONNECTIONS').map(Number)) {
		for (const workload of (only('KP_WORKLOADS').length === 0 ? ['read', 'write', 'new'] : only('KP_WORKLOADS')) as (keyof typeof workloads)[]) {
			for (const [name, store] of Object.entries(stores)) {
				await drive(store, workload, keysOf[name]!, concurrency, warm); // warm
				await admin.query('ANALYZE http_sessions');
				await plainAdmin.query('ANALYZE http_sessions');
				await admin.query('SELECT pg_stat_statements_reset()');
				const db0 = serverCpu(); const cpu0 = process.cpuUsage(); const t0 = performance.now();
				await drive(store, workload, keysOf[name]!, concurrency, count);
				const ms = performance.now() - t0; const cpu = process.cpuUsage(cpu0); const db = serverCpu() - db0;
				const stats = await statementStats();
				const node = (cpu.user + cpu.system) / count; const pgus = db / count;
				const cell = `${workload}@${concurrency} ${name}`;
				(results[cell] ??= []).push([node, pgus, count / ms * 1000]);
				const detail = Object.entries(stats).filter(([, s]) => s.calls > 0).map(([k, s]) => `${k}: ${(s.calls / count).toFixed(2)}/req plan ${(s.plan * 1000 / s.calls).toFixed(0)}µs(${s.plans}) exec ${(s.exec * 1000 / s.calls).toFixed(0)}µs rows/call ${(s.rows / s.calls).toFixed(1)}`).join('; ');
				console.log(`r${round} ${cell.padEnd(24)} node ${node.toFixed(0)}µs/req  pg ${pgus.toFixed(0)}µs/req  ${(count / ms * 1000).toFixed(0)} req/s | ${detail}`);
			}
		}
	}
}
console.log('\nmedians (node µs/req, pg µs/req, req/s):');
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
for (const [cell, rs] of Object.entries(results)) {
	console.log(cell.padEnd(24), [0, 1, 2].map((i) => median(rs.map((r) => r[i]!)).toFixed(0)).join('\t'));
}
await Promise.all(Object.values(allStores).map((s) => s.close()));
await prismaClient.$disconnect();
await plainClient.$disconnect();
await plainAdmin.end();
await admin.end();
await server.stop();
