import { Described, invalid } from './invalid.js';
import { qualifiedName, quoteIdentifier, type Statement } from './sql.js';

/** The session table as the client's `PGSession` model maps it: quoted names, ready for SQL. */
export interface SessionTable {
	/** The table, with its schema when one is known. */
	readonly name: string;
	readonly id: string;
	readonly key: string;
	readonly data: string;
	readonly createdOn: string;
	readonly modifiedOn: string;
	readonly expiresOn: string;
	/** Present when the store keeps a subject per session (its `subject` option). */
	readonly subject: string | undefined;
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
 * Reads the table the client's `PGSession` model maps to.
 * @param connectionSchema Where a model without `@@schema` lives (the `schema` option).
 * @param withSubject Whether the store keeps a subject per session (its `subject` option).
 */
export function sessionTable(client: object, connectionSchema: string | undefined, withSubject: boolean): SessionTable {
	const model = modelOf(client);
	const column = (field: string): string | undefined => {
		const found = model.fields?.find((candidate) => candidate.name === field);
		return found === undefined ? undefined : quoteIdentifier(found.dbName ?? field);
	};
	const required = (field: string): string => column(field)
		?? invalid('prisma', `a client whose \`PGSession\` model has the field \`${field}\``, new Described('a model without it'));
	return {
		// A model without @@schema lives where the connection's queries go: `schema`, else search_path.
		name: qualifiedName(model.schema ?? connectionSchema, model.dbName ?? 'PGSession'),
		id: required('id'),
		key: required('key'),
		data: required('data'),
		createdOn: required('createdOn'),
		modifiedOn: required('modifiedOn'),
		expiresOn: required('expiresOn'),
		subject: withSubject
			? column('subject') ?? invalid('subject', 'used with a `PGSession` model that has the `subject` field (apply the migration `…_session_subject`)', new Described('a model without it'))
			: undefined,
	};
}

/** One row of a coalesced write: what `set` stores for one key. */
export interface RowWrite {
	readonly digest: string;
	/** The session as JSON text. */
	readonly json: string;
	readonly now: Date;
	readonly expiresOn: Date;
	/** `undefined`: the store keeps no subject; `null`: the session has none. */
	readonly subject: string | null | undefined;
}

/** The store's statements on one table. Each takes named fields and returns its text with its values. */
export interface SessionStatements {
	/** Key, data and expiry of the live rows among `digests`. */
	selectLive(fields: { digests: readonly string[]; now: Date }): Statement;
	/** Updates the rows that are still live; returns the keys it updated. */
	updateLive(rows: readonly RowWrite[]): Statement;
	/** Inserts the rows, replacing a row of the same key. The digests must be distinct. */
	upsert(rows: readonly RowWrite[]): Statement;
	delete(fields: { digests: readonly string[] }): Statement;
	/** Present when the store keeps a subject per session. */
	readonly bySubject: SubjectStatements | undefined;
	/** Statement text to name, for the client that prepares them. */
	readonly names: ReadonlyMap<string, string>;
}

/** Statements on a subject's sessions. */
export interface SubjectStatements {
	/** Deletes the subject's sessions but those in `keep`. */
	deleteAll(fields: { subject: string; keep: readonly string[] }): Statement;
	/** The subject's live sessions, most recently written first. */
	list(fields: { subject: string; now: Date }): Statement;
	/** Deletes the subject's session of row `id`. */
	deleteOne(fields: { subject: string; id: string }): Statement;
}

// Coalesced writes send one array per column; times go as ISO text and are cast in SQL.
const columns = (rows: readonly RowWrite[]) => ({
	digests: rows.map((row) => row.digest),
	json: rows.map((row) => row.json),
	now: rows.map((row) => row.now.toISOString()),
	expires: rows.map((row) => row.expiresOn.toISOString()),
	subjects: rows.map((row) => row.subject ?? null),
});

/** Builds the statements for `table`. Their texts are made once; each call only pairs values with them. */
export function sessionStatements(table: SessionTable): SessionStatements {
	const { name: t, id, key, data, createdOn, modifiedOn, expiresOn, subject } = table;
	const names = new Map<string, string>();
	const named = (name: string, text: string) => {
		names.set(text, name);
		return (values: readonly unknown[]): Statement => ({ name, text, values });
	};

	const selectLive = named('selectLive', `SELECT ${key} AS "key", ${data} AS "data", ${expiresOn} AS "expiresOn" FROM ${t} `
		+ `WHERE ${key} = ANY($1::text[]) AND ${expiresOn} > $2`);

	const updateLive = named('updateLive', subject === undefined
		? `UPDATE ${t} AS t SET ${data} = v.data::jsonb, ${modifiedOn} = v.now::timestamptz, ${expiresOn} = v.expires::timestamptz `
			+ `FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS v(key, data, now, expires) `
			+ `WHERE t.${key} = v.key AND t.${expiresOn} > v.now::timestamptz RETURNING t.${key} AS "key"`
		: `UPDATE ${t} AS t SET ${data} = v.data::jsonb, ${modifiedOn} = v.now::timestamptz, ${expiresOn} = v.expires::timestamptz, ${subject} = v.subject `
			+ `FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS v(key, data, now, expires, subject) `
			+ `WHERE t.${key} = v.key AND t.${expiresOn} > v.now::timestamptz RETURNING t.${key} AS "key"`);

	const upsert = named('upsert', subject === undefined
		? `INSERT INTO ${t} (${key}, ${data}, ${createdOn}, ${modifiedOn}, ${expiresOn}) `
			+ `SELECT v.key, v.data::jsonb, v.now::timestamptz, v.now::timestamptz, v.expires::timestamptz `
			+ `FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS v(key, data, now, expires) `
			+ `ON CONFLICT (${key}) DO UPDATE SET ${data} = EXCLUDED.${data}, ${modifiedOn} = EXCLUDED.${modifiedOn}, ${expiresOn} = EXCLUDED.${expiresOn}`
		: `INSERT INTO ${t} (${key}, ${data}, ${createdOn}, ${modifiedOn}, ${expiresOn}, ${subject}) `
			+ `SELECT v.key, v.data::jsonb, v.now::timestamptz, v.now::timestamptz, v.expires::timestamptz, v.subject `
			+ `FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS v(key, data, now, expires, subject) `
			+ `ON CONFLICT (${key}) DO UPDATE SET ${data} = EXCLUDED.${data}, ${modifiedOn} = EXCLUDED.${modifiedOn}, ${expiresOn} = EXCLUDED.${expiresOn}, ${subject} = EXCLUDED.${subject}`);

	const deleteKeys = named('delete', `DELETE FROM ${t} WHERE ${key} = ANY($1::text[])`);

	const rowValues = (rows: readonly RowWrite[]): unknown[] => {
		const { digests, json, now, expires, subjects } = columns(rows);
		return subject === undefined ? [digests, json, now, expires] : [digests, json, now, expires, subjects];
	};

	let bySubject: SubjectStatements | undefined;
	if (subject !== undefined) {
		const deleteAll = named('deleteAllOfSubject', `DELETE FROM ${t} WHERE ${subject} = $1 AND NOT (${key} = ANY($2::text[]))`);
		const list = named('listOfSubject', `SELECT ${id}::text AS "id", ${key} AS "key", ${createdOn} AS "createdOn", `
			+ `${modifiedOn} AS "modifiedOn", ${expiresOn} AS "expiresOn" FROM ${t} `
			+ `WHERE ${subject} = $1 AND ${expiresOn} > $2 ORDER BY ${modifiedOn} DESC, ${id} DESC`);
		const deleteOne = named('deleteOneOfSubject', `DELETE FROM ${t} WHERE ${subject} = $1 AND ${id} = $2::bigint`);
		bySubject = {
			deleteAll: ({ subject: who, keep }) => deleteAll([who, keep]),
			list: ({ subject: who, now }) => list([who, now]),
			deleteOne: ({ subject: who, id: row }) => deleteOne([who, row]),
		};
	}

	return {
		selectLive: ({ digests, now }) => selectLive([digests, now]),
		updateLive: (rows) => updateLive(rowValues(rows)),
		upsert: (rows) => upsert(rowValues(rows)),
		delete: ({ digests }) => deleteKeys([digests]),
		bySubject,
		names,
	};
}
