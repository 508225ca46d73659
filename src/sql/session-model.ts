import { Redacted, invalid, isRecord } from '../base/validate.js';

/** The fields of the `PGSession` model the store uses. */
export type SessionField = 'id' | 'key' | 'data' | 'createdOn' | 'modifiedOn' | 'expiresOn' | 'subject';

/** The table the client's `PGSession` model maps to, by its names in PostgreSQL (unquoted). */
export interface SessionModel {
	/** The model's `@@schema`, else the connection's schema (the `schema` option); `undefined`: the search_path decides. */
	readonly schema: string | undefined;
	readonly table: string;
	/** Each field's column; `undefined` for a field the model lacks. */
	readonly columns: Readonly<Record<SessionField, string | undefined>>;
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
export function sessionModel(client: object, connectionSchema: string | undefined): SessionModel {
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
	const columns = Object.fromEntries((Object.keys(packageColumns) as SessionField[]).map((field) => [field, columnOf(field)])) as Record<SessionField, string | undefined>;
	const modelSchema = typeof model['schema'] === 'string' ? model['schema'] : undefined;
	const table = typeof model['dbName'] === 'string' ? model['dbName'] : 'PGSession';
	return {
		schema: modelSchema ?? connectionSchema,
		table,
		columns,
		ownedByPackage: table === 'http_sessions' && modelSchema === undefined
			&& (Object.keys(packageColumns) as SessionField[]).every((field) => columns[field] === undefined || columns[field] === packageColumns[field]),
	};
}
