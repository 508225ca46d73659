import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import test from 'ava';
import pg from 'pg';
import { PrismaClient } from '../../src/generated/prisma/client.js';
import { readSessionTable } from '../../src/sql/session-table.js';

// What the store assumes of Prisma and its adapter, pinned without a database. The versions this
// run checked are in the titles; `npm run test:prisma-range` runs this file (with the rest) on the
// lowest and newest versions the peer ranges admit. The shape of Prisma's errors (the SQLSTATE
// under meta.driverAdapterError.cause) needs a server: test/errors.test.ts.
const require = createRequire(import.meta.url);
// Neither package exports its package.json: found from its entry point.
function versionOf(name: string): string {
	for (let directory = path.dirname(require.resolve(name)); directory !== path.dirname(directory); directory = path.dirname(directory)) {
		const manifest = path.join(directory, 'package.json');
		if (existsSync(manifest)) {
			const { name: found, version } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version: string };
			if (found === name) {
				return version;
			}
		}
	}
	throw new Error(`No package.json of ${name}`);
}
const checked = `@prisma/client ${versionOf('@prisma/client')}, @prisma/adapter-pg ${versionOf('@prisma/adapter-pg')}`;

test(`a generated client carries its data model as _runtimeDataModel, with table and column names (${checked})`, (t) => {
	const client = new PrismaClient({ adapter: new PrismaPg({ connectionString: 'postgresql://nobody@127.0.0.1:1/none' }) });
	const table = readSessionTable(client, undefined);
	t.is(table.qualifiedName, '"http_sessions"');
	t.deepEqual(table.columns, { id: 'id', key: 'key', data: 'data', createdOn: 'created_on', modifiedOn: 'modified_on', expiresOn: 'expires_on', subject: 'subject' });
	t.true(table.ownedByPackage);
	// An $extends-ed client keeps it.
	t.is(readSessionTable(client.$extends({}), 'tenant').qualifiedName, '"tenant"."http_sessions"');
});

test(`PrismaPg takes a pg.Pool the store built, and connects nothing until asked (${checked})`, (t) => {
	const pool = new pg.Pool({ connectionString: 'postgresql://nobody@127.0.0.1:1/none' });
	t.notThrows(() => new PrismaClient({ adapter: new PrismaPg(pool, { schema: 'tenant' }) }));
	t.is(pool.totalCount, 0);
});
