import { debug } from '../base/debug.js';
import { sqlStateOf, sqlStates } from '../base/driver-error.js';
import { functionLookup, type SessionFunction } from '../sql/session-functions.js';
import type { SessionTable } from '../sql/session-table.js';
import type { Statement } from '../sql/text.js';
import type { StatementRunner } from './driver.js';

/** A statement runner that calls the session functions the database has, and what it found. */
export interface FunctionCalls {
	readonly run: StatementRunner;
	/** Reads the catalog again before the next statement (after `ensureSchema()` created them, say). */
	forget(): void;
}

/**
 * Runs each request statement of `inline` (its text, by kind) as a call of its session function
 * when the database has that function, and as it is otherwise: an app whose own migrations made
 * the table without them loses nothing but the speed. The catalog is read once, before the first
 * such statement; a function dropped later (SQLSTATE 42883 on its call) is forgotten and its
 * statement runs as it is, in the same request.
 */
export function callingFunctions(
	run: StatementRunner,
	inline: Readonly<Record<SessionFunction['kind'], string>>,
	functions: readonly SessionFunction[],
	table: SessionTable,
): FunctionCalls {
	const byText = new Map(functions.map((found) => [inline[found.kind], found]));
	/** Function name → the statement that calls it. */
	let calls: Promise<Map<string, string>> | undefined;
	const lookUp = async (operation: Parameters<StatementRunner>[1]): Promise<Map<string, string>> => {
		const rows = await run(functionLookup(functions, table), operation) as { schema: string; name: string }[];
		const found = new Map(rows.map((row) => [row.name, functions.find((candidate) => candidate.name === row.name)?.call(row.schema)]));
		const present = new Map([...found].filter((entry): entry is [string, string] => entry[1] !== undefined));
		debug('session functions: %d of %d found%s', present.size, functions.length, present.size < functions.length ? ' (the others run as plain statements)' : '');
		return present;
	};
	return {
		async run(statement, operation) {
			const replaced = byText.get(statement.text);
			if (replaced === undefined) {
				return run(statement, operation);
			}
			calls ??= lookUp(operation);
			let found: Map<string, string>;
			try {
				found = await calls;
			} catch (error) {
				// The catalog could not be read (the database is away, say): this statement runs as it
				// is and reports that failure itself; the next one reads the catalog again.
				debug('session functions: the catalog could not be read (%s); this statement runs as it is', error instanceof Error ? error.name : typeof error);
				calls = undefined;
				return run(statement, operation);
			}
			const call = found.get(replaced.name);
			if (call === undefined) {
				return run(statement, operation);
			}
			const called: Statement = { name: statement.name, text: call, values: statement.values };
			try {
				return await run(called, operation);
			} catch (error) {
				if (sqlStateOf(error) !== sqlStates.undefinedFunction) {
					throw error;
				}
				debug('session function %s is gone (SQLSTATE %s): its statement runs as it is from now on', replaced.name, sqlStates.undefinedFunction);
				found.delete(replaced.name);
				return run(statement, operation);
			}
		},
		forget() {
			calls = undefined;
		},
	};
}
