import { PrismaPg } from '@prisma/adapter-pg';
import type { ExecutionContext } from 'ava';
import { PrismaClient } from '../../src/generated/prisma/client.js';

/**
 * A real Prisma client on `url` that counts the SQL statements the store sends through it
 * (raw statements; cleanup's and the one catalog read for the session functions are not counted) and the interactive transactions it starts (each
 * try of a cleanup sweep at a batch is one), and knows how many of these have not ended yet.
 * Nothing is faked: every call reaches PostgreSQL.
 */
export function countingClient(t: ExecutionContext, url: string): {
	prisma: PrismaClient;
	statements: () => number;
	transactions: () => number;
	transactionsOpen: () => number;
} {
	const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
	t.teardown(() => prisma.$disconnect());
	let statements = 0;
	let transactions = 0;
	let transactionsOpen = 0;
	const counted = new Proxy(prisma, {
		get(target, property, receiver) {
			const value: unknown = Reflect.get(target, property, receiver);
			if ((property === '$queryRawUnsafe' || property === '$executeRawUnsafe') && typeof value === 'function') {
				return (...args: unknown[]) => {
					// The store's one read of the catalog for its session functions, before its first
					// request statement, is not one of a request's (test/session-functions.test.ts counts it).
					if (!String(args[0]).includes('pg_catalog.to_regprocedure')) {
						statements += 1;
					}
					return Reflect.apply(value, target, args);
				};
			}
			if (property === '$transaction' && typeof value === 'function') {
				return (...args: unknown[]) => {
					transactions += 1;
					transactionsOpen += 1;
					const result = Reflect.apply(value, target, args) as Promise<unknown>;
					void result.then(() => { transactionsOpen -= 1; }, () => { transactionsOpen -= 1; });
					return result;
				};
			}
			return value;
		},
	});
	return { prisma: counted, statements: () => statements, transactions: () => transactions, transactionsOpen: () => transactionsOpen };
}
