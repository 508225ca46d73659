// `npx tsx bench/bloat.ts`: what saves do to the table with `touchAfter: 0` (every save rewrites
// the indexed `expires_on`) and with the default window. Each of 2,000 sessions is read and saved
// 25 times, in two workloads: `rolling`, saved unchanged as koa-session's `rolling: true` does, and
// `changed`, a field changed on every save (koa-session moves `_expire` on each). Autovacuum is off
// for the table so that the dead rows stay countable. Prints one Markdown table.
// BLOAT_FILLFACTOR sets the table's fillfactor first (default: PostgreSQL's, 100).
import { readdir, readFile } from 'node:fs/promises';
import pg from 'pg';
import { startPostgres } from '../scripts/embedded-postgres.js';
import { PgStore } from '../src/index.js';

const sessions = Number(process.env['BLOAT_SESSIONS'] ?? 2_000);
const rounds = Number(process.env['BLOAT_ROUNDS'] ?? 25);
const hour = 3_600_000;
const fillfactor = process.env['BLOAT_FILLFACTOR'];

const server = await startPostgres();
const rows: string[] = [];
try {
	for (const [workload, touchAfter] of [['rolling', 0], ['rolling', 60_000], ['changed', 0], ['changed', 60_000]] as const) {
		const admin = new pg.Client({ connectionString: server.url });
		await admin.connect();
		const name = `bloat_${workload}_${touchAfter}`;
		await admin.query(`CREATE DATABASE ${name}`);
		await admin.end();
		const url = server.url.replace(/\/postgres$/, `/${name}`);
		const db = new pg.Client({ connectionString: url });
		await db.connect();
		for (const migration of (await readdir('prisma/migrations', { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort()) {
			await db.query(await readFile(`prisma/migrations/${migration}/migration.sql`, 'utf8'));
		}
		await db.query(`ALTER TABLE http_sessions SET (autovacuum_enabled = false${fillfactor === undefined ? '' : `, fillfactor = ${Number(fillfactor)}`})`);
		const store = new PgStore({ connectionString: url, cleanupInterval: 0, touchAfter });
		const keys = Array.from({ length: sessions }, (_, index) => `session-${index}`);
		for (let start = 0; start < keys.length; start += 200) {
			await Promise.all(keys.slice(start, start + 200).map((key) => store.set(key, { userId: key, views: 1, _expire: Date.now() + hour, _maxAge: hour }, hour)));
		}
		await db.query('VACUUM ANALYZE http_sessions');
		const size = async () => (await db.query<{ table: string; indexes: string }>(
			`SELECT pg_relation_size('http_sessions') AS table, pg_indexes_size('http_sessions') AS indexes`)).rows[0];
		const before = await size();
		for (let round = 0; round < rounds; round += 1) {
			for (let start = 0; start < keys.length; start += 200) {
				await Promise.all(keys.slice(start, start + 200).map(async (key) => {
					const ctx = {};
					const data = await store.get(key, hour, { ctx });
					if (workload === 'rolling') {
						await store.set(key, { ...data, _expire: Date.now() + hour }, hour, { ctx, changed: false });
					} else {
						await store.set(key, { ...data, views: Number(data?.['views']) + 1, _expire: Date.now() + hour }, hour, { ctx, changed: true });
					}
				}));
			}
		}
		// The store's backends report their counts when they exit: close it, then wait for them.
		await store.close();
		const counts = async () => (await db.query<{ updates: string; hot: string; dead: string }>(
			`SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot, n_dead_tup AS dead FROM pg_stat_user_tables WHERE relname = 'http_sessions'`)).rows[0];
		let stats = await counts();
		for (let tries = 0; tries < 50; tries++) {
			await new Promise((resolve) => setTimeout(resolve, 100));
			const next = await counts();
			if (next?.updates === stats?.updates && tries >= 3) {
				break;
			}
			stats = next;
		}
		const after = await size();
		rows.push(`| ${workload} | ${touchAfter} | ${sessions * rounds} | ${stats?.updates ?? '?'} | ${stats?.hot ?? '?'} | ${stats?.dead ?? '?'} | ${Math.round(Number(before?.table) / 1024)} → ${Math.round(Number(after?.table) / 1024)} | ${Math.round(Number(before?.indexes) / 1024)} → ${Math.round(Number(after?.indexes) / 1024)} |`);
		await db.end();
	}
} finally {
	await server.stop();
}
console.log(`fillfactor ${fillfactor ?? '100 (PostgreSQL\'s default)'}`);
console.log('| workload | touchAfter ms | saves | row updates | of them HOT | dead rows | table KiB | indexes KiB |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
console.log(rows.join('\n'));
