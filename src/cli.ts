#!/usr/bin/env node
// `koa-pgstore`: the operator's command for cron jobs and deploy pipelines where the Prisma CLI is
// not installed. Connects with DATABASE_URL to this package's own table (`http_sessions`).
import { parseArgs } from 'node:util';
import { SchemaMismatchError } from './base/errors.js';
import { PgStore, type CleanupReport } from './index.js';
import { tableName, type InternalOptions } from './store/internal-options.js';
import type { StoreStatus } from './store/store.js';

/** Exit codes a scheduler can act on. */
const exitCodes = {
	/** Done: swept, migrated, or the status is complete. */
	ok: 0,
	/** The database failed or could not be reached. */
	databaseError: 1,
	/** Bad arguments or no DATABASE_URL. */
	usage: 2,
	// 3 meant "another instance was sweeping": sweeps no longer take turns, so it is never
	// returned. It stays unused, so that crontab lines written for it (`|| [ $? -eq 3 ]`) never
	// swallow a new failure.
	/** `status`: the table lacks something the store needs; `migrate`: it could not add it. */
	schemaIncomplete: 4,
	/**
	 * `cleanup`: expired sessions remain that other transactions held past --lock-wait. A failure,
	 * so that cron reports it: something keeps rows locked, and the table grows.
	 */
	held: 5,
} as const;

const help = `Usage: koa-pgstore <command> [options]

Commands:
  cleanup   Delete every expired session now (one full sweep) and print what was done
  migrate   Apply this package's migrations that are missing (what ensureSchema() does)
  status    Show the migrations applied or missing, live and expired sessions, table size

Options:
  --schema <name>       PostgreSQL schema of the table (default: DATABASE_URL's ?schema=, else
                        the search_path)
  --table <name>        The session table, when your Prisma schema renamed it with @@map
                        (default: http_sessions); its columns as this package names them.
                        Such a table is your app's: migrate never changes it
  --batch-size <rows>   cleanup: rows per DELETE, 1 to 100000 (default 1000)
  --lock-wait <ms>      cleanup: how long to keep trying for expired rows other transactions
                        hold, 0 to 86400000 (default 60000; 0: give up at once)
  --json                Print the result as JSON
  -h, --help            Show this help

Environment:
  DATABASE_URL          PostgreSQL connection string (required)

Exit codes:
  0  done (status: everything is there)
  1  the database failed or could not be reached
  2  bad arguments, or DATABASE_URL missing or not a PostgreSQL connection string
  4  status: the table lacks something the store needs; migrate: could not add it
  5  cleanup: expired sessions remain that other transactions held past --lock-wait
     (look for long transactions in pg_stat_activity)
  (3 is no longer returned: other instances sweeping at the same time are no reason to stop)

Statements of cleanup may wait ten times pool.query_timeout (30 s by default), those of migrate
two minutes: they are not held to the short bounds of requests.`;

/** Runs the command line `args` (without `node` and the script); resolves to the exit code. */
async function main(args: string[], env: NodeJS.ProcessEnv, out: (line: string) => void, err: (line: string) => void): Promise<number> {
	let parsed;
	try {
		parsed = parseArgs({
			args,
			allowPositionals: true,
			options: {
				'schema': { type: 'string' },
				'table': { type: 'string' },
				'lock-wait': { type: 'string' },
				'batch-size': { type: 'string' },
				'json': { type: 'boolean', default: false },
				'help': { type: 'boolean', short: 'h', default: false },
			},
		});
	} catch (error) {
		err(`koa-pgstore: ${error instanceof Error ? error.message : String(error)}\n\n${help}`);
		return exitCodes.usage;
	}
	const { values, positionals } = parsed;
	if (values.help) {
		out(help);
		return exitCodes.ok;
	}
	const [command, ...extra] = positionals;
	if (command === undefined || !['cleanup', 'migrate', 'status'].includes(command) || extra.length > 0) {
		err(`koa-pgstore: ${command === undefined ? 'no command given' : `unknown command or argument: ${[command, ...extra].join(' ')}`}\n\n${help}`);
		return exitCodes.usage;
	}
	const connectionString = env['DATABASE_URL'];
	if (connectionString === undefined || connectionString === '') {
		err('koa-pgstore: DATABASE_URL is not set: export the PostgreSQL connection string, e.g. DATABASE_URL=postgresql://user:password@host:5432/app');
		return exitCodes.usage;
	}
	if (!isPostgresUrl(connectionString)) {
		// Never echoed: it holds the password.
		err('koa-pgstore: DATABASE_URL is not a PostgreSQL connection string: expected postgresql://user:password@host:5432/app');
		return exitCodes.usage;
	}
	const batchSize = wholeNumber(values['batch-size'], 1, maxSweepBatchSize);
	if (batchSize === 'invalid') {
		err(`koa-pgstore: --batch-size must be a whole number from 1 to ${maxSweepBatchSize}, got ${JSON.stringify(values['batch-size'])}`);
		return exitCodes.usage;
	}
	const lockWait = wholeNumber(values['lock-wait'], 0, maxLockWait);
	if (lockWait === 'invalid') {
		err(`koa-pgstore: --lock-wait must be a whole number of milliseconds from 0 to ${maxLockWait}, got ${JSON.stringify(values['lock-wait'])}`);
		return exitCodes.usage;
	}
	if (values.table !== undefined && values.table === '') {
		err('koa-pgstore: --table must name a table');
		return exitCodes.usage;
	}
	const print = (json: unknown, text: string) => out(values.json ? JSON.stringify(json) : text);

	const options: ConstructorParameters<typeof PgStore>[0] & InternalOptions = {
		connectionString,
		cleanupInterval: 0,
		...values.schema === undefined ? {} : { schema: values.schema },
		...values.table === undefined ? {} : { [tableName]: values.table },
		// An operator's one-off command has no request waiting: report on stderr what the pool says.
		onError: (error) => err(`koa-pgstore: ${error.message}`),
	};
	let store: PgStore;
	try {
		store = new PgStore(options);
	} catch (error) {
		// A bad --schema, say: the store's TypeError names it.
		err(`koa-pgstore: ${error instanceof Error ? error.message : String(error)}`);
		return exitCodes.usage;
	}
	try {
		switch (command) {
			case 'cleanup': {
				const report = await store.cleanup({
					...batchSize === undefined ? {} : { batchSize },
					...lockWait === undefined ? {} : { lockWait },
				});
				print({ ...report, ms: Math.round(report.ms) }, describeReport(report));
				return report.skipped ? exitCodes.held : exitCodes.ok;
			}
			case 'migrate': {
				const applied = await store.ensureSchema();
				print({ applied }, applied.length === 0 ? 'Up to date: nothing to apply' : `Applied ${applied.join(', ')}`);
				return exitCodes.ok;
			}
			default: {
				const status = await store.status();
				print(status, describeStatus(status));
				// The catalog decides, as for ensureSchema(): a table made by hand from the migration SQL
				// is complete though nothing is recorded.
				return status.missing.length === 0 ? exitCodes.ok : exitCodes.schemaIncomplete;
			}
		}
	} catch (error) {
		const mismatch = error instanceof SchemaMismatchError ? error : error instanceof Error && error.cause instanceof SchemaMismatchError ? error.cause : undefined;
		if (mismatch !== undefined) {
			err(`koa-pgstore: ${mismatch.message}`);
			return exitCodes.schemaIncomplete;
		}
		err(`koa-pgstore: ${command} failed: ${error instanceof Error ? error.message : String(error)}`);
		return exitCodes.databaseError;
	} finally {
		await store.close();
	}
}

function describeReport(report: CleanupReport): string {
	if (report.skipped) {
		return `Deleted ${report.deleted} expired sessions, but others remain: other transactions held their rows past --lock-wait `
			+ '(look for long transactions on the session table in pg_stat_activity)';
	}
	return `Deleted ${report.deleted} expired sessions in ${report.batches} batch${report.batches === 1 ? '' : 'es'} (${Math.round(report.ms)} ms)`;
}

function describeStatus(status: StoreStatus): string {
	const lines = [`Table: ${status.table}`];
	if (status.ownedByPackage) {
		lines.push(
			`Migrations applied: ${status.applied === undefined ? 'unknown (no access to _prisma_migrations)' : status.applied.join(', ') || 'none recorded'}`,
			`Migrations missing: ${status.pending.join(', ') || 'none'}`,
		);
	} else {
		lines.push('Migrations: your app\'s own (this is not the package\'s http_sessions; `migrate` never changes it)');
	}
	lines.push(`Table complete: ${status.missing.length === 0 ? 'yes' : `no, it lacks ${status.missing.join(', ')}`}`);
	lines.push(`Session functions: ${status.missingFunctions.length === 0 ? 'all there' : `${status.missingFunctions.length} missing (through an app's Prisma client their statements run as plain SQL, planned on every call)`}`);
	if (status.live !== undefined) {
		lines.push(`Live sessions: ${status.live}`, `Expired sessions: ${status.expired ?? 0}`, `Size: ${formatBytes(status.bytes ?? 0)} (table, indexes and TOAST)`);
	}
	return lines.join('\n');
}

function formatBytes(bytes: number): string {
	const units = ['bytes', 'kB', 'MB', 'GB', 'TB'];
	let value = bytes;
	let unit = 0;
	while (value >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit += 1;
	}
	return unit === 0 ? `${value} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

// The flags' bounds: a sweep batch of more rows holds its locks too long (and is no faster), and a
// lock wait past a day is a mistake.
const maxSweepBatchSize = 100_000;
const maxLockWait = 86_400_000;

// `undefined` when the flag is absent; digits only (no `1e9`, `0x10`, ` 5`).
function wholeNumber(text: string | undefined, minimum: number, maximum: number): number | undefined | 'invalid' {
	if (text === undefined) {
		return undefined;
	}
	const value = /^\d{1,15}$/.test(text) ? Number(text) : Number.NaN;
	return value >= minimum && value <= maximum ? value : 'invalid';
}

function isPostgresUrl(text: string): boolean {
	if (!URL.canParse(text)) {
		return false;
	}
	const url = new URL(text);
	return (url.protocol === 'postgresql:' || url.protocol === 'postgres:') && url.hostname !== '';
}

// The store's timers never keep a process alive (a sweep's pause between batches included): this
// command is waited for, so it holds the event loop itself until its work is done.
const keepAlive = setInterval(() => {}, 60_000);
try {
	process.exitCode = await main(process.argv.slice(2), process.env, console.log, console.error);
} finally {
	clearInterval(keepAlive);
}
