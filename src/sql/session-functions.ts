import { createHash } from 'node:crypto';
import type { SessionTable } from './session-table.js';
import { sessionStatements, type FunctionKind } from './statements.js';
import { quoteIdentifier, type Statement } from './text.js';

/**
 * A PL/pgSQL function that runs one of the store's statements (src/sql/statements.ts), with the
 * statement's parameters and result columns.
 *
 * Why: an app's Prisma client sends raw SQL as unnamed statements, which PostgreSQL parses and
 * plans on every call, and the write statements cost more to plan than to run. A PL/pgSQL
 * function keeps the plan of its statement per server connection, whoever the client is, so it
 * also works behind a pooler in transaction mode (bench/NOTES.md has the figures).
 */
export interface SessionFunction {
	readonly kind: FunctionKind;
	/**
	 * `koa_pgstore_<kind>_<digest>`, unquoted. The digest is of the definition, so one name never
	 * stands for two statements: a release that changes a statement calls a function of another
	 * name, and instances of the older release keep calling theirs while both run.
	 */
	readonly name: string;
	/** The argument types, as in `to_regprocedure`: `pg_catalog.jsonb,pg_catalog.int4`. */
	readonly argumentTypes: string;
	/**
	 * `CREATE OR REPLACE FUNCTION …`: in `schema` (quoted) with its search_path pinned to
	 * `pg_catalog`, that schema and `pg_temp`; without a schema, in the current one, its
	 * search_path not yet pinned (see `functionsMigration`).
	 */
	definition(schema?: string): string;
	/** The statement the store sends instead, in `schema` (a quoted name). */
	call(schema: string): string;
}

interface Signature {
	readonly arguments: readonly string[];
	readonly returns: readonly (readonly [string, string])[];
	readonly volatility: 'STABLE' | 'VOLATILE';
}

const text = 'pg_catalog.text';

function signatureOf(kind: FunctionKind, withSubject: boolean): Signature {
	switch (kind) {
		case 'selectLive':
			return {
				arguments: ['pg_catalog.text[]', 'pg_catalog.float8'],
				returns: [['key', text], ['id', text], ['json', text], ['expiresOn', 'pg_catalog.float8'], ...withSubject ? [['subject', text] as const] : []],
				volatility: 'STABLE',
			};
		case 'updateLive':
			return {
				arguments: ['pg_catalog.jsonb', 'pg_catalog.int4'],
				returns: [['key', text], ['size', 'pg_catalog.int4'], ['written', 'pg_catalog.bool'], ['busy', 'pg_catalog.bool']],
				volatility: 'VOLATILE',
			};
		case 'upsert':
		case 'insert':
			return {
				arguments: ['pg_catalog.jsonb', 'pg_catalog.int4'],
				returns: [['key', text], ['id', text], ['size', 'pg_catalog.int4'], ['written', 'pg_catalog.bool']],
				volatility: 'VOLATILE',
			};
		case 'delete':
			return { arguments: ['pg_catalog.text[]', 'pg_catalog.int8[]'], returns: [['key', text], ['id', text]], volatility: 'VOLATILE' };
	}
}

const functionKinds: readonly FunctionKind[] = ['selectLive', 'updateLive', 'upsert', 'insert', 'delete'];
const snakeCase: Record<FunctionKind, string> = { selectLive: 'select_live', updateLive: 'update_live', upsert: 'upsert', insert: 'insert', delete: 'delete' };

/**
 * The functions for the statements of `table` (with the `subject` column when `withSubject`).
 * Each lives in the table's schema and names the table without a schema: its search_path, pinned
 * to `pg_catalog` and that schema, finds it there. So the functions of one table in two schemas
 * have the same names, and a store with a `schema` option calls the ones its migration made.
 */
export function sessionFunctions(table: SessionTable, withSubject: boolean): SessionFunction[] {
	const unqualified = { ...table, schema: undefined, qualifiedName: quoteIdentifier(table.table) };
	const { texts } = sessionStatements(unqualified, withSubject);
	return functionKinds.map((kind) => {
		const signature = signatureOf(kind, withSubject);
		const argumentTypes = signature.arguments.join(',');
		// `#variable_conflict use_column`: the result columns (`key`, `id`, …) are variables of the
		// function too; in the statement those names mean the table's columns.
		// A generic plan from the first call on: PostgreSQL would otherwise plan each of the first five
		// calls on a connection, and keep planning a read whose generic plan it estimates dearer.
		const head = `(${signature.arguments.join(', ')})\n`
			+ ` RETURNS TABLE (${signature.returns.map(([column, type]) => `${quoteIdentifier(column)} ${type}`).join(', ')})\n`
			+ ` LANGUAGE plpgsql ${signature.volatility}\n`
			+ ' SET plan_cache_mode = force_generic_plan\n';
		const body = ' AS $koa_pgstore$\n#variable_conflict use_column\nBEGIN\n'
			+ `RETURN QUERY ${texts[kind]};\n`
			+ 'END\n$koa_pgstore$';
		const rest = `${head}${body}`;
		const name = `koa_pgstore_${snakeCase[kind]}_${createHash('sha256').update(`${kind}\0${rest}`).digest('hex').slice(0, 12)}`;
		const parameters = signature.arguments.map((type, index) => `$${index + 1}::${type}`).join(', ');
		return {
			kind,
			name,
			argumentTypes,
			definition: (schema) => (schema === undefined
				? `CREATE OR REPLACE FUNCTION ${quoteIdentifier(name)}${rest};`
				: `CREATE OR REPLACE FUNCTION ${schema}.${quoteIdentifier(name)}${head} SET search_path = pg_catalog, ${schema}, pg_temp\n${body};`),
			call: (schema) => `SELECT * FROM ${schema}.${quoteIdentifier(name)}(${parameters})`,
		};
	});
}

/**
 * The SQL of a migration that creates the functions of `table` for stores with and without the
 * `subject` option (when the table has that column), each with its search_path pinned to
 * `pg_catalog`, the table's schema and `pg_temp`: nothing in a function resolves through the
 * search_path of the role that calls it. With a schema (`table.schema`) they are made there;
 * without one (this package's own migration) in the current schema, where `prisma migrate deploy`
 * or `ensureSchema()` made the table. Idempotent, as every migration here (ensureSchema() and
 * `prisma migrate deploy` may both run it).
 */
export function functionsMigration(table: SessionTable): string {
	const functions = new Map<string, SessionFunction>();
	for (const withSubject of table.fields.has('subject') ? [false, true] : [false]) {
		for (const created of sessionFunctions(table, withSubject)) {
			functions.set(created.name, created);
		}
	}
	const schema = table.schema === undefined ? undefined : quoteIdentifier(table.schema);
	const created = [...functions.values()].map((made) => `-- CreateFunction\n${made.definition(schema)}\n`).join('\n');
	const header = '-- Generated by koa-pgstore from its statements (src/sql/session-functions.ts): do not edit.\n'
		+ '-- Each function runs one of the store\'s statements; its name carries a digest of its definition.\n\n';
	if (schema !== undefined) {
		return `${header}${created}`;
	}
	const signatures = [...functions.values()].map((made) => `'${quoteIdentifier(made.name)}(${made.argumentTypes})'`).join(', ');
	return `${header}${created}
-- Pin each function's search_path to pg_catalog and the schema it was created in (the table's).
DO $koa_pgstore$
DECLARE
	signature pg_catalog.text;
BEGIN
	FOREACH signature IN ARRAY ARRAY[${signatures}]::pg_catalog.text[] LOOP
		EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s SET search_path = pg_catalog, %I, pg_temp', pg_catalog.current_schema(), signature, pg_catalog.current_schema());
	END LOOP;
END
$koa_pgstore$;
`;
}

/**
 * Finds which of `functions` the database has, as the store would call them: in `schema` (a model's
 * `@@schema` or the `schema` option), else through the search_path, as the table itself. Only a
 * function owned by the table's owner counts: the names are no secret, and one that another role
 * made first (where it may create objects) would run as the store's role. One row per function
 * found: `name`, and `schema`, quoted, for the call.
 */
export function functionLookup(functions: readonly SessionFunction[], table: SessionTable): Statement {
	const prefix = table.schema === undefined ? '' : `${quoteIdentifier(table.schema)}.`;
	return {
		name: 'sessionFunctions',
		text: 'SELECT pg_catalog.quote_ident(n.nspname) AS "schema", p.proname::pg_catalog.text AS "name" '
			+ 'FROM pg_catalog.unnest($1::pg_catalog.text[]) AS wanted(signature) '
			+ 'JOIN pg_catalog.pg_proc AS p ON p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(wanted.signature)::pg_catalog.oid '
			+ 'JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace '
			+ 'JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($2::pg_catalog.text)::pg_catalog.oid '
			+ 'WHERE p.proowner OPERATOR(pg_catalog.=) c.relowner',
		values: [functions.map((found) => `${prefix}${quoteIdentifier(found.name)}(${found.argumentTypes})`), table.qualifiedName],
	};
}
