import { invalid } from './options.js';
import { quoteIdentifier } from './prisma-client.js';

/** The SQL of the store's statements on one table, built once. */
export interface SessionStatements {
	/** $1 key digests (text[]), $2 now: key, data, expires_on of the live rows among them. */
	readonly selectLive: string;
	/** $1 digest, $2 data (JSON text), $3 now, $4 expiry: updates a live row only. */
	readonly updateLive: string;
	/** $1 digest, $2 data (JSON text), $3 now, $4 expiry: inserts, or replaces on conflict. */
	readonly upsert: string;
	/** $1 digest. */
	readonly delete: string;
	/** Many `updateLive` at once: $1 digests, $2 data, $3 now, $4 expiries (text[] each); returns the updated keys. */
	readonly updateLiveMany: string;
	/** Many `upsert` at once, with the arrays of `updateLiveMany`; keys must be distinct. */
	readonly upsertMany: string;
	/** $1 digests (text[]). */
	readonly deleteMany: string;
}

interface ModelField {
	name: string;
	dbName?: string | null;
}

const columnFields = ['key', 'data', 'createdOn', 'modifiedOn', 'expiresOn'] as const;

interface SessionModel {
	dbName?: string | null;
	schema?: string | null;
	fields?: ModelField[];
}

// Prisma 7 clients (extended ones too) carry their data model as `_runtimeDataModel`: table,
// schema and column names as the app's schema maps them. The store's SQL follows it, so a copied
// model that was renamed (@@map, @map) or moved (@@schema) just works.
function modelOf(client: object): SessionModel {
	const dataModel: unknown = Reflect.get(client, '_runtimeDataModel');
	const models: unknown = typeof dataModel === 'object' && dataModel !== null ? Reflect.get(dataModel, 'models') : undefined;
	const model: unknown = typeof models === 'object' && models !== null ? Reflect.get(models, 'PGSession') : undefined;
	if (typeof model !== 'object' || model === null) {
		invalid('prisma', 'a Prisma 7 client whose data model has the `PGSession` model', 'a client without it');
	}
	return model;
}

/** Builds the statements for the table the client's `PGSession` model maps to. */
export function sessionStatements(client: object, connectionSchema: string | undefined): SessionStatements {
	const model = modelOf(client);
	const name = model.dbName ?? 'PGSession';
	// A model without @@schema lives where the connection's queries go: `schema`, else search_path.
	const schema = model.schema ?? connectionSchema;
	const qualified = schema === undefined ? quoteIdentifier(name) : `${quoteIdentifier(schema)}.${quoteIdentifier(name)}`;
	const column = Object.fromEntries(columnFields.map((field) => {
		const mapped = model.fields?.find((candidate) => candidate.name === field);
		return [field, quoteIdentifier(mapped?.dbName ?? field)];
	})) as Record<typeof columnFields[number], string>;
	const { key, data, createdOn, modifiedOn, expiresOn } = column;
	return {
		selectLive: `SELECT ${key} AS "key", ${data} AS "data", ${expiresOn} AS "expiresOn" FROM ${qualified} WHERE ${key} = ANY($1::text[]) AND ${expiresOn} > $2`,
		updateLive: `UPDATE ${qualified} SET ${data} = $2::jsonb, ${modifiedOn} = $3, ${expiresOn} = $4 WHERE ${key} = $1 AND ${expiresOn} > $3`,
		upsert: `INSERT INTO ${qualified} (${key}, ${data}, ${createdOn}, ${modifiedOn}, ${expiresOn}) VALUES ($1, $2::jsonb, $3, $3, $4) `
			+ `ON CONFLICT (${key}) DO UPDATE SET ${data} = EXCLUDED.${data}, ${modifiedOn} = EXCLUDED.${modifiedOn}, ${expiresOn} = EXCLUDED.${expiresOn}`,
		delete: `DELETE FROM ${qualified} WHERE ${key} = $1`,
		updateLiveMany: `UPDATE ${qualified} AS t SET ${data} = v.data::jsonb, ${modifiedOn} = v.now::timestamptz, ${expiresOn} = v.expires::timestamptz `
			+ `FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS v(key, data, now, expires) `
			+ `WHERE t.${key} = v.key AND t.${expiresOn} > v.now::timestamptz RETURNING t.${key} AS "key"`,
		upsertMany: `INSERT INTO ${qualified} (${key}, ${data}, ${createdOn}, ${modifiedOn}, ${expiresOn}) `
			+ `SELECT v.key, v.data::jsonb, v.now::timestamptz, v.now::timestamptz, v.expires::timestamptz `
			+ `FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS v(key, data, now, expires) `
			+ `ON CONFLICT (${key}) DO UPDATE SET ${data} = EXCLUDED.${data}, ${modifiedOn} = EXCLUDED.${modifiedOn}, ${expiresOn} = EXCLUDED.${expiresOn}`,
		deleteMany: `DELETE FROM ${qualified} WHERE ${key} = ANY($1::text[])`,
	};
}
