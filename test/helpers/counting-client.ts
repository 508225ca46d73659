import { PrismaPg } from '@prisma/adapter-pg';
import type { ExecutionContext } from 'ava';
import { PrismaClient } from '../../src/generated/prisma/client.js';

/**
 * A real Prisma client on `url` that counts the SQL statements the store sends through it
 * (raw statements; cleanup's are not counted). Nothing is faked: every call reaches PostgreSQL.
 */
export function countingClient(t: ExecutionContext, url: string): { prisma: PrismaClient; statements: () => number } {
	const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
	t.teardown(() => prisma.$disconnect());
	let statements = 0;
	const counted = new Proxy(prisma, {
		get(target, property, receiver) {
			const value: unknown = Reflect.get(target, property, receiver);
			if ((property === '$queryRawUnsafe' || property === '$executeRawUnsafe') && typeof value === 'function') {
				return (...args: unknown[]) => {
					statements += 1;
					return Reflect.apply(value, target, args);
				};
			}
			return value;
		},
	});
	return { prisma: counted, statements: () => statements };
}
