import { Described, invalid } from './options.js';
import { quoteIdentifier } from './prisma-client.js';

/**
 * The SQL of the store's statements on one table, built once. Writes take $1 digest, $2 data
 * (JSON text), $3 now, $4 expiry and, when the store has a `subject` option, $5 subject; their
 * `…Many` forms take the same parameters as text arrays, one element per row.
 */
export interface SessionStatements {
	/** $1 key digests (text[]), $2 now: key, data and expiry of the live rows among them. */
	readonly selectLive: string;
	/** Updates a live row only. */
	readonly updateLive: string;
	/** Inserts, or replaces on conflict. */
	readonly upsert: string;
	/** $1 digest. */
	readonly delete: string;
	/** Many `updateLive`; returns the keys it updated. */
	readonly updateLiveMany: string;
	/** Many `upsert`; the keys must be distinct. */
	readonly upsertMany: string;
	/** $1 digests (text[]). */
	readonly deleteMany: string;
	/** Present when the table has the `subject` column and the store a `subject` option. */
	readonly bySubject: SubjectStatements | undefined;
}

/** Statements on a subject's sessions. */
export interface SubjectStatements {
	/** $1 subject, $2 digests to keep (text[]): deletes the others. */
	readonly deleteAll: string;
	/** $1 subject, $2 now: the live sessions, newest activity first. */
	readonly list: string;
	/** $1 subject, $2 row id: deletes that one. */
	readonly deleteOne: string;
}

interface ModelField {
	name: string;
	dbName?: string | null;
}

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
		invalid('prisma', 'a Prisma 7 client whose data model has the `PGSession` model', new Described('a client without it'));
	}
	return model;
}

/**
 * Builds the statements for the table the client's `PGSession` model maps to.
 * @param withSubject Whether the store keeps a subject per session (its `subject` option).
 */
export function sessionStatements(client: object, connectionSchema: string | undefined, withSubject: boolean): SessionStatements {
	const model = modelOf(client);
	const name = model.dbName ?? 'PGSession';
	// A model without @@schema lives where the connection's queries go: `schema`, else search_path.
	const schema = model.schema ?? connectionSchema;
	const table = schema === undefined ? quoteIdentifier(name) : `${quoteIdentifier(schema)}.${quoteIdentifier(name)}`;
	const column = (field: string): string | undefined => {
		const found = model.fields?.find((candidate) => candidate.name === field);
		return found === undefined ? undefined : quoteIdentifier(found.dbName ?? field);
	};
	const required = (field: string): string => column(field)
		?? invalid('prisma', `a client whose \`PGSession\` model has the field \`${field}\``, new Described('a model without it'));
	const [id, key, data, createdOn, modifiedOn, expiresOn] = ['id', 'key', 'data', 'createdOn', 'modifiedOn', 'expiresOn'].map(required) as [string, string, string, string, string, string];
	const subject = withSubject
		? column('subject') ?? invalid('subject', 'used with a `PGSession` model that has the `subject` field (apply the migration `…_session_subject`)', new Described('a model without it'))
		: undefined;

	const set = [`${data} = $2::jsonb`, `${modifiedOn} = $3`, `${expiresOn} = $4`, ...subject ? [`${subject} = $5`] : []].join(', ');
	const insertColumns = [key, data, createdOn, modifiedOn, expiresOn, ...subject ? [subject] : []].join(', ');
	const excluded = [data, modifiedOn, expiresOn, ...subject ? [subject] : []].map((target) => `${target} = EXCLUDED.${target}`).join(', ');
	const arrays = `unnest($1::text[], $2::text[], $3::text[], $4::text[]${subject ? ', $5::text[]' : ''}) AS v(key, data, now, expires${subject ? ', subject' : ''})`;
	return {
		selectLive: `SELECT ${key} AS "key", ${data} AS "data", ${expiresOn} AS "expiresOn" FROM ${table} WHERE ${key} = ANY($1::text[]) AND ${expiresOn} > $2`,
		updateLive: `UPDATE ${table} SET ${set} WHERE ${key} = $1 AND ${expiresOn} > $3`,
		upsert: `INSERT INTO ${table} (${insertColumns}) VALUES ($1, $2::jsonb, $3, $3, $4${subject ? ', $5' : ''}) ON CONFLICT (${key}) DO UPDATE SET ${excluded}`,
		delete: `DELETE FROM ${table} WHERE ${key} = $1`,
		updateLiveMany: `UPDATE ${table} AS t SET ${data} = v.data::jsonb, ${modifiedOn} = v.now::timestamptz, ${expiresOn} = v.expires::timestamptz`
			+ `${subject ? `, ${subject} = v.subject` : ''} FROM ${arrays} WHERE t.${key} = v.key AND t.${expiresOn} > v.now::timestamptz RETURNING t.${key} AS "key"`,
		upsertMany: `INSERT INTO ${table} (${insertColumns}) SELECT v.key, v.data::jsonb, v.now::timestamptz, v.now::timestamptz, v.expires::timestamptz`
			+ `${subject ? ', v.subject' : ''} FROM ${arrays} ON CONFLICT (${key}) DO UPDATE SET ${excluded}`,
		deleteMany: `DELETE FROM ${table} WHERE ${key} = ANY($1::text[])`,
		bySubject: subject === undefined ? undefined : {
			deleteAll: `DELETE FROM ${table} WHERE ${subject} = $1 AND NOT (${key} = ANY($2::text[]))`,
			list: `SELECT ${id}::text AS "id", ${key} AS "key", ${createdOn} AS "createdOn", ${modifiedOn} AS "modifiedOn", ${expiresOn} AS "expiresOn" `
				+ `FROM ${table} WHERE ${subject} = $1 AND ${expiresOn} > $2 ORDER BY ${modifiedOn} DESC, ${id} DESC`,
			deleteOne: `DELETE FROM ${table} WHERE ${subject} = $1 AND ${id} = $2::bigint`,
		},
	};
}
