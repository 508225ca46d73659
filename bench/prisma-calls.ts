// Node CPU per call, 8 in flight: raw `pg` against the ways of sending the store's read through
// Prisma, then the store's own coalesced select and field-level update of 10 sessions through
// Prisma (`$queryRawUnsafe`, as with an app's client) and through the pool (as the store's own
// client sends them: src/driver/owned-driver.ts).
// Run: npx tsx bench/prisma-calls.ts
import { startPostgres } from '../scripts/embedded-postgres.js';
import { PrismaClient } from '../src/generated/prisma/client.js';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { readFileSync } from 'node:fs';
import { digestKey } from '../src/codec/key-digest.js';
import { readSessionTable } from '../src/sql/session-table.js';
import { sessionStatements } from '../src/sql/statements.js';
const s = await startPostgres();
const pool = new pg.Pool({ connectionString: s.url, max: 10 });
pool.on('error', () => {}); // the server stopping at the end
await pool.query(readFileSync('prisma/migrations/20261122000000_init/migration.sql', 'utf8'));
await pool.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) SELECT 'k'||n, '{"a":1}', now(), now(), now() + interval '1 day' FROM generate_series(1,1000) n`);
const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: s.url, max: 10 }), errorFormat: 'minimal' });
async function run(name: string, op: (i: number) => Promise<unknown>, n = 20000) {
  for (let i = 0; i < 500; i++) await op(i);
  const cpu0 = process.cpuUsage(); const t0 = performance.now();
  let i = 0;
  await Promise.all(Array.from({ length: 8 }, async () => { while (i < n) await op(i++); }));
  const ms = performance.now() - t0; const cpu = process.cpuUsage(cpu0);
  console.log(name, (n / ms * 1000).toFixed(0), 'ops/s', ((cpu.user + cpu.system) / n).toFixed(0), 'µs CPU/op');
}
await run('raw pg select', (i) => pool.query('SELECT data, expires_on FROM http_sessions WHERE key=$1 AND expires_on > $2', ['k' + (i % 1000), new Date()]));
await run('prisma findUnique key only', (i) => prisma.pGSession.findUnique({ where: { key: 'k' + (i % 1000) }, select: { data: true, expiresOn: true } }));
await run('prisma findUnique key+expires', (i) => prisma.pGSession.findUnique({ where: { key: 'k' + (i % 1000), expiresOn: { gt: new Date() } }, select: { data: true, expiresOn: true } }));
await run('prisma findFirst key+expires', (i) => prisma.pGSession.findFirst({ where: { key: 'k' + (i % 1000), expiresOn: { gt: new Date() } }, select: { data: true, expiresOn: true } }));
await run('prisma $queryRawUnsafe', (i) => prisma.$queryRawUnsafe('SELECT data, expires_on FROM http_sessions WHERE key=$1 AND expires_on > $2', 'k' + (i % 1000), new Date()));
await run('prisma $queryRaw tagged', (i) => prisma.$queryRaw`SELECT data, expires_on FROM http_sessions WHERE key=${'k' + (i % 1000)} AND expires_on > ${new Date()}`);
const statements = sessionStatements(readSessionTable(prisma, undefined), false);
await pool.query(`UPDATE http_sessions SET key = encode(sha256(key::bytea), 'hex')`);
const tenDigests = (i: number) => Array.from({ length: 10 }, (_, k) => digestKey(`k${(i * 10 + k) % 1000 + 1}`));
const tenWrites = (i: number) => tenDigests(i).map((digest) => ({
  digest, replace: false, patch: `{"views":${i},"_expire":${Date.now() + 3_600_000},"_maxAge":3600000}`, removed: '[]', now: new Date(), expiresOn: new Date(Date.now() + 3_600_000), keepExpiry: false, subject: undefined,
}));
const select = (i: number) => statements.selectLive({ digests: tenDigests(i), now: new Date() });
const update = (i: number) => statements.updateLive(tenWrites(i), 4096);
await run('store select of 10, Prisma $queryRawUnsafe', (i) => { const q = select(i); return prisma.$queryRawUnsafe(q.text, ...q.values); }, 5000);
await run('store select of 10, pg pool.query', (i) => { const q = select(i); return pool.query(q.text, q.values as unknown[]); }, 5000);
await run('store update of 10, Prisma $queryRawUnsafe', (i) => { const q = update(i); return prisma.$queryRawUnsafe(q.text, ...q.values); }, 5000);
await run('store update of 10, pg pool.query', (i) => { const q = update(i); return pool.query(q.text, q.values as unknown[]); }, 5000);
await prisma.$disconnect(); await pool.end(); await s.stop();
