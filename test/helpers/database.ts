import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { ExecutionContext } from 'ava';
import pg from 'pg';

/** The server the test command started (or DATABASE_URL), as a superuser connection string. */
export function adminUrl(): string {
	const url = process.env['PGSTORE_TEST_ADMIN_URL'] ?? process.env['DATABASE_URL'];
	if (url === undefined || url === '') {
		throw new Error('No PostgreSQL for the tests: run them with `npm test`, which starts one, or set DATABASE_URL');
	}
	return url;
}

export function withDatabase(url: string, database: string): string {
	const parsed = new URL(url);
	parsed.pathname = `/${database}`;
	return parsed.toString();
}

const migrationsDirectory = new URL('../../prisma/migrations/', import.meta.url);

/** The SQL of every shipped migration, in the order Prisma applies them. */
export async function migrationFiles(): Promise<{ name: string; sql: string }[]> {
	const entries = await readdir(migrationsDirectory, { withFileTypes: true });
	const names = entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
	return Promise.all(names.map(async (name) => ({
		name,
		sql: await readFile(new URL(`${name}/migration.sql`, migrationsDirectory), 'utf8'),
	})));
}

/** A database of one test file's own, dropped when the test (or hook) that made it ends. */
export interface TestDatabase {
	readonly name: string;
	readonly url: string;
	/** Runs SQL as superuser in this database. */
	query<Row extends pg.QueryResultRow = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<Row[]>;
}

/**
 * Creates a database of the test's own on the test server, dropped when the test ends. With
 * `migrate` (the default) it has the shipped migrations applied, exactly as `prisma migrate
 * deploy` would run their SQL: it is cloned from a template database that has them (see
 * `migratedTemplate`). With `migrate: false` it is empty.
 */
export async function createDatabase(
	t: ExecutionContext,
	{ migrate = true, serverUrl = adminUrl() }: { migrate?: boolean; serverUrl?: string } = {},
): Promise<TestDatabase> {
	const name = `pgstore_test_${randomBytes(6).toString('hex')}`;
	const template = migrate ? await migratedTemplate(serverUrl) : undefined;
	await withClient(serverUrl, (admin) => admin.query(`CREATE DATABASE ${name}${template === undefined ? '' : ` TEMPLATE ${template}`}`));
	const url = withDatabase(serverUrl, name);
	const pool = new pg.Pool({ connectionString: url, max: 2 });
	// Tests that stop or drop a server end these connections on purpose.
	pool.on('error', () => {});
	t.teardown(async () => {
		await pool.end();
		const dropper = new pg.Client({ connectionString: serverUrl });
		await dropper.connect().then(
			() => dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
			() => undefined, // The server was stopped on purpose: its data directory goes with it.
		).finally(() => dropper.end());
	});
	return {
		name,
		url,
		async query(sql, values) {
			return (await pool.query(sql, values)).rows;
		},
	};
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
	const client = new pg.Client({ connectionString: url });
	await client.connect();
	try {
		return await use(client);
	} finally {
		await client.end();
	}
}

// Advisory lock (on the server's admin database) held while one process makes the template.
const templateLockId = 0x6b70_7465_6d70_6c31n; // the bytes of "kptempl1"

const templates = new Map<string, Promise<string>>();

/**
 * The name of a database on the server of `serverUrl` that has the shipped migrations applied
 * and nothing else, to clone with `CREATE DATABASE … TEMPLATE`: a clone costs the server a file
 * copy, where applying the migrations to every new database cost a round of DDL each.
 *
 * Its name carries a digest of the migrations' SQL, so a changed migration gets a template of its
 * own, and a template left on a server of DATABASE_URL by an earlier run is used again only while
 * the migrations are the same. AVA's worker processes may ask for it at once: one makes it while
 * holding an advisory lock, the others wait for the lock and find it made. It is marked
 * `IS_TEMPLATE` last, once complete, and allows no connections: a clone fails while anyone is
 * connected to its template.
 */
export function migratedTemplate(serverUrl: string): Promise<string> {
	let template = templates.get(serverUrl);
	if (template === undefined) {
		template = makeTemplate(serverUrl);
		templates.set(serverUrl, template);
		// A failure is not remembered: the next test tries again.
		template.catch(() => templates.delete(serverUrl));
	}
	return template;
}

async function makeTemplate(serverUrl: string): Promise<string> {
	const migrations = await migrationFiles();
	const digest = createHash('sha256');
	for (const migration of migrations) {
		digest.update(`${migration.name}\0${migration.sql}\0`);
	}
	const name = `pgstore_template_${digest.digest('hex').slice(0, 16)}`;
	return withClient(serverUrl, async (admin) => {
		await admin.query('SELECT pg_advisory_lock($1)', [templateLockId.toString()]);
		try {
			const [found] = (await admin.query<{ ready: boolean }>('SELECT datistemplate AS ready FROM pg_database WHERE datname = $1', [name])).rows;
			if (found?.ready === true) {
				return name;
			}
			if (found !== undefined) {
				// Left half made by a process that died while making it.
				await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
			}
			await admin.query(`CREATE DATABASE ${name}`);
			await withClient(withDatabase(serverUrl, name), async (client) => {
				for (const migration of migrations) {
					await client.query(migration.sql);
				}
			});
			await admin.query(`ALTER DATABASE ${name} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`);
			return name;
		} finally {
			await admin.query('SELECT pg_advisory_unlock($1)', [templateLockId.toString()]);
		}
	});
}
