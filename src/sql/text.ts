// SQL text helpers. Loads neither Prisma nor pg, so the statements can be built and read (and
// snapshot-tested) without a database.

/** `name` as a quoted SQL identifier. */
export function quoteIdentifier(name: string): string {
	return `"${name.replaceAll('"', '""')}"`;
}

/** `schema.name`, quoted; just `name` when no schema is given (the connection's search_path decides). */
export function qualifiedName(schema: string | undefined, name: string): string {
	return schema === undefined ? quoteIdentifier(name) : `${quoteIdentifier(schema)}.${quoteIdentifier(name)}`;
}

/** A statement and its parameters, built together so `$n` can be checked against `values[n - 1]`. */
export interface Statement {
	/** Stable name, for prepared statements and traces. */
	readonly name: string;
	readonly text: string;
	readonly values: readonly unknown[];
}
