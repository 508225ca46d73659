import { startPostgres } from './helpers/postgres.ts';
import { PrismaClient } from '../src/generated/prisma/client.ts';
import { PrismaPg } from '@prisma/adapter-pg';
import { readFileSync } from 'node:fs';
const s = await startPostgres();
const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: s.url }) });
console.log(await prisma.$executeRawUnsafe(readFileSync('prisma/migrations/20261122000000_init/migration.sql','utf8')));
const now = new Date();
await prisma.pGSession.create({ data: { key: 'a', data: { x: 1 }, createdOn: now, modifiedOn: now, expiresOn: now } });
try { await prisma.pGSession.create({ data: { key: 'a', data: { x: 1 }, createdOn: now, modifiedOn: now, expiresOn: now } }); } catch (e: any) { console.log('DUP', e.constructor.name, e.code, JSON.stringify(e.meta), Object.keys(e), e.cause); }
try { await prisma.pGSession.create({ data: { key: 'b', data: { x: 'a\u0000b' }, createdOn: now, modifiedOn: now, expiresOn: now } }); } catch (e: any) { console.log('NUL', e.constructor.name, e.code, JSON.stringify(e.meta), e.message); }
try { await prisma.$executeRawUnsafe('select 1/0'); } catch (e: any) { console.log('DIV', e.constructor.name, e.code, JSON.stringify(e.meta), e.message); }
await s.stop({keepData: true});
try { await prisma.pGSession.findUnique({ where: { key: 'a' } }); } catch (e: any) { console.log('DOWN', e.constructor.name, e.code, JSON.stringify(e.meta), e.message, e.cause); }
await prisma.$disconnect();
