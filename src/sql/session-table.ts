import { Redacted, invalid, isRecord } from '../base/validate.js';
import { qualifiedName } from './text.js';

/** The fields of the `PGSession` model the store uses. */
export type SessionField = 'id' | 'key' | 'data' | 'createdOn' | 'modifiedOn' | 'expiresOn' | 'subject';

/**
 * The table the client's `PGSession` model maps to: the one reading of it that the statements,
 * `ensureSchema()`, `status()` and the CLI share.
 */
export interface SessionTable {
	/** The model's `@@schema`, else the connection's schema (the `schema` option); `undefined`: the search_path decides. */
	readonly schema: string | undefined;
	/** The table's name in PostgreSQL, unquoted. */
	readonly table: string;
	/** `"schema"."table"` (or `"table"`), quoted: for SQL and for messages. */
	readonly qualifiedName: string;
	/** Each field's column, unquoted: the model's, or this package's name for a field the model lacks. */
	readonly columns: Readonly<Record<SessionField, string>>;
	/** The fields the model has. */
	readonly fields: ReadonlySet<SessionField>;
	/** `http_sessions` with this package's column names, in the connection's schema: the table this package's migrations create. */
	readonly ownedByPackage: boolean;
}

// This package's table, as prisma/schema.prisma maps it.
export const packageColumns: Readonly<Record<SessionField, string>> = {
	id: 'id', key: 'key', data: 'data', createdOn: 'created_on', modifiedOn: 'modified_on', expiresOn: 'expires_on', subject: 'subject',
};

/**
 * Reads the client's `PGSession` model. Prisma 7 clients (extended ones too) carry their data
 * model as `_runtimeDataModel`: table, schema and column names as the app's schema maps them, so
 * the store's SQL follows a copied model that was renamed (`@@map`, `@map`) or moved (`@@schema`).
 *
 * @param connectionSchema Where a model without `@@schema` lives (the `schema` option).
 * @throws {TypeError} The client has no `PGSession` model.
 */
export function readSessionTable(client: object, connectionSchema: string | undefined): SessionTable {
	const dataModel: unknown = Reflect.get(client, '_runtimeDataModel');
	const models: unknown = isRecord(dataModel) ? dataModel['models'] : undefined;
	const model: unknown = isRecord(models) ? models['PGSession'] : undefined;
	if (!isRecord(model)) {
		invalid('prisma', 'a Prisma 7 client whose data model has the `PGSession` model', new Redacted('a client without it'));
	}
	const fields = Array.isArray(model['fields']) ? model['fields'].filter(isRecord) : [];
	const columnOf = (field: SessionField): string | undefined => {
		const found = fields.find((candidate) => candidate['name'] === field);
		if (found === undefined) {
			return undefined;
		}
		return typeof found['dbName'] === 'string' ? found['dbName'] : field;
	};
	const allFields = Object.keys(packageColumns) as SessionField[];
	const fieldsFound = new Set(allFields.filter((field) => columnOf(field) !== undefined));
	const columns = Object.fromEntries(allFields.map((field) => [field, columnOf(field) ?? packageColumns[field]])) as Record<SessionField, string>;
	const modelSchema = typeof model['schema'] === 'string' ? model['schema'] : undefined;
	const table = typeof model['dbName'] === 'string' ? model['dbName'] : 'PGSession';
	const schema = modelSchema ?? connectionSchema;
	return {
		schema,
		table,
		qualifiedName: qualifiedName(schema, table),
		columns,
		fields: fieldsFound,
		ownedByPackage: table === 'http_sessions' && modelSchema === undefined
			&& allFields.every((field) => columns[field] === packageColumns[field]),
	};
}

/**
 * `table` under another name, with the same columns (the CLI's `--table`, for a model renamed
 * with `@@map`). It is this package's own table only under the name `http_sessions`.
 */
export function renamedTable(table: SessionTable, name: string): SessionTable {
	return { ...table, table: name, qualifiedName: qualifiedName(table.schema, name), ownedByPackage: table.ownedByPackage && name === 'http_sessions' };
}
