// Node CPU per call, 8 in flight: raw `pg` against the ways of sending the store's read through Prisma.
// Run: npx tsx bench/prisma-calls.ts
import { startPostgres } from '../scripts/embedded-postgres.js';
import { PrismaClient } from '../src/generated/prisma/client.js';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { readFileSync } from 'node:fs';
const s = await startPostgres();
const pool = new pg.Pool({ connectionString: s.url, max: 10 });
await pool.query(readFileSync('prisma/migrations/20261122000000_init/migration.sql', 'utf8'));
await pool.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) SELECT 'k'||n, '{"a":1}', now(), now(), now() + interval '1 day' FROM generate_series(1,1000) n`);
const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: s.url, max: 10 }) });
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
await prisma.$disconnect(); await pool.end(); await s.stop();
