import type { SessionStatements } from '../../src/sql/statements.js';
import type { SweepStatements } from '../../src/sql/sweep-statements.js';
import type { Statement } from '../../src/sql/text.js';

// What the store's SQL resolves by name. Every operator, function and cast type must be named with
// its schema (`OPERATOR(pg_catalog.=)`, `pg_catalog.now()`, `::pg_catalog.text`); read from the
// statements' own text, so that a new statement, or a new operator in an old one, is checked too.

// Words followed by `(` that are SQL syntax, not functions looked up by name. EXTRACT is parsed
// into `pg_catalog.extract`; COALESCE, GREATEST, ANY and ARRAY resolve no name.
const syntax = new Set(['ANY', 'ARRAY', 'COALESCE', 'GREATEST', 'EXISTS', 'EXTRACT', 'VALUES']);

/** Every statement the store can send, built with placeholder values. */
export function everyStatement(statements: SessionStatements, sweep: SweepStatements): Statement[] {
	const now = new Date(0);
	const subject = statements.bySubject;
	return [
		statements.selectLive({ digests: [], now }), statements.updateLive([], 0), statements.upsert([], 0), statements.insert([], 0),
		statements.delete([]), statements.tableStatus(), sweep.deleteExpired({ limit: 1 }),
		...subject === undefined ? [] : [
			subject.deleteBatch({ subject: 's', keep: [], limit: 1, watch: [] }), subject.list({ subject: 's', now, limit: 1, candidates: 1 }),
			subject.deleteOne({ subject: 's', id: '1' }),
		],
	];
}

// The text with string literals and quoted identifiers emptied, and the `=` of assignments
// (`SET "data" = …`) taken out: what is left names operators, functions and types.
function code(text: string): string {
	return text
		.replaceAll(/'(?:[^']|'')*'/g, "''")
		.replaceAll(/"(?:[^"]|"")*"/g, '""')
		.replaceAll(/\bSET\s[\s\S]*?(?=\s(?:FROM|WHERE|RETURNING)\s|$)/g, (assignments) => assignments.replaceAll(/((?:SET|,)\s*"")\s*=/g, '$1 '));
}

/** What `text` resolves through `search_path`: operators, functions and cast types not named with `pg_catalog.`. */
export function unqualifiedNames(text: string): string[] {
	const rest = code(text).replaceAll(/OPERATOR\(pg_catalog\.[^)]+\)/g, ' ');
	const found: string[] = [];
	for (const match of rest.matchAll(/[+\-*/<>=~!@#%^&|`?]+/g)) {
		// `count(*)`: not an operator.
		if (match[0] === '*' && rest[match.index - 1] === '(' && rest[match.index + 1] === ')') {
			continue;
		}
		found.push(`operator ${match[0]}`);
	}
	for (const match of rest.matchAll(/(?<![.\w])([A-Za-z_]\w*)\(/g)) {
		const name = match[1] ?? '';
		// `AS r(key pg_catalog.text, …)`: a column definition list, not a call.
		if (!syntax.has(name.toUpperCase()) && !/AS\s+$/.test(rest.slice(0, match.index))) {
			found.push(`function ${name}`);
		}
	}
	for (const match of rest.matchAll(/::\s*([A-Za-z_][\w.]*)/g)) {
		if (!match[1]?.startsWith('pg_catalog.')) {
			found.push(`type ${match[1]}`);
		}
	}
	return found;
}

/** The pg_catalog functions and operators `text` uses: what a hostile role would shadow. */
export function catalogNames(text: string): { functions: string[]; operators: string[] } {
	const rest = code(text);
	return {
		functions: [...new Set([...rest.matchAll(/pg_catalog\.(\w+)\(/g)].map((match) => match[1] ?? ''))],
		operators: [...new Set([...rest.matchAll(/OPERATOR\(pg_catalog\.([^)]+)\)/g)].map((match) => match[1] ?? ''))],
	};
}
