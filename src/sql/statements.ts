import { sqlStateOf, sqlStates } from '../base/driver-error.js';
import { SchemaMismatchError } from '../base/errors.js';
import { Redacted, invalid } from '../base/validate.js';
import type { SessionField, SessionTable } from './session-table.js';
import { quoteIdentifier, type Statement } from './text.js';

/** The session table's names, quoted for SQL. */
interface QuotedTable {
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

// The names the statements use, checking that the model has the fields they need.
function quoted(table: SessionTable, withSubject: boolean): QuotedTable {
	const required = (field: SessionField): string => (table.fields.has(field)
		? quoteIdentifier(table.columns[field])
		: invalid('prisma', `a client whose \`PGSession\` model has the field \`${field}\``, new Redacted('a model without it')));
	return {
		name: table.qualifiedName,
		id: required('id'),
		key: required('key'),
		data: required('data'),
		createdOn: required('createdOn'),
		modifiedOn: required('modifiedOn'),
		expiresOn: required('expiresOn'),
		subject: !withSubject ? undefined : table.fields.has('subject')
			? quoteIdentifier(table.columns.subject)
			: invalid('subject', 'used with a `PGSession` model that has the `subject` field (apply the migration `…_session_subject`)', new Redacted('a model without it')),
	};
}

/** A whole session written under a key: a new one, or one that replaces whatever the key held. */
export interface WholeWrite {
	readonly digest: string;
	/** The session as JSON text. */
	readonly json: string;
	readonly now: Date;
	readonly expiresOn: Date;
	/** `undefined`: the store keeps no subject; `null`: the session has none. */
	readonly subject: string | null | undefined;
}

/** A save of a session whose row this request knows: applied to the live row only. */
export interface LiveWrite {
	readonly digest: string;
	/**
	 * `true`: `patch` is the whole session and replaces the stored one. `false`: the stored session
	 * loses the fields in `removed` and takes those of `patch`, and keeps every other field.
	 */
	readonly replace: boolean;
	/** A JSON object: the fields written. */
	readonly patch: string;
	/** A JSON array: the names of the fields removed. */
	readonly removed: string;
	readonly now: Date;
	readonly expiresOn: Date;
	/** The row keeps its stored expiry, and `expiresOn` is not written. */
	readonly keepExpiry: boolean;
	/** Written only when defined; `null`: the session has none. */
	readonly subject: string | null | undefined;
}

/** The store's statements on one table. Each takes named fields and returns its text with its values. */
export interface SessionStatements {
	/** Key, data as JSON text, expiry (and subject, with the option) of the live rows among `digests`. */
	selectLive(fields: { digests: readonly string[]; now: Date }): Statement;
	/**
	 * Applies each write to its row if the row is still live and the session stored after it fits
	 * `maxLength` (or is no larger than before). One result row per live row found: `key`, `size`
	 * (bytes of the stored session's text after the write) and `written`.
	 */
	updateLive(writes: readonly LiveWrite[], maxLength: number): Statement;
	/**
	 * Inserts each session, replacing a row of the same key, if it fits `maxLength`. One result
	 * row per write: `key`, `size`, `written`. The digests must be distinct.
	 */
	upsert(writes: readonly WholeWrite[], maxLength: number): Statement;
	/**
	 * As `upsert`, for keys expected to be new: a key already stored fails the statement with a
	 * unique violation (SQLSTATE 23505), and nothing is written.
	 */
	insert(writes: readonly WholeWrite[], maxLength: number): Statement;
	/** Deletes the rows of `digests`; returns the keys it deleted. */
	delete(fields: { digests: readonly string[] }): Statement;
	/**
	 * Takes the sweep lock for the rest of the transaction, if no other transaction holds it:
	 * returns `locked`. One instance at a time sweeps a database.
	 */
	lockSweep(): Statement;
	/**
	 * Deletes up to `limit` rows expired by PostgreSQL's clock, skipping rows another transaction
	 * holds; returns the number deleted as `deleted`.
	 */
	deleteExpired(fields: { limit: number }): Statement;
	/** Live and expired rows (`live`, `expired`) and the bytes of the table with its indexes and TOAST (`bytes`), as text. */
	tableStatus(): Statement;
	/** Present when the store keeps a subject per session. */
	readonly bySubject: SubjectStatements | undefined;
	/**
	 * The actionable error for a statement that failed because the table lacks the `subject`
	 * column the store's `subject` option needs (SQLSTATE 42703): for a store whose
	 * `ensureSchema()` was never called. `undefined` for any other failure.
	 */
	missingSubjectColumn(error: unknown): SchemaMismatchError | undefined;
}

/** Statements on a subject's sessions. */
export interface SubjectStatements {
	/**
	 * Deletes up to `limit` of the subject's sessions, but those in `keep`. One result row:
	 * `deleted`, how many it deleted, and `watched`, those of `watch` among them (comma-separated
	 * digests), so that a million deleted keys never travel back.
	 */
	deleteBatch(fields: { subject: string; keep: readonly string[]; limit: number; watch: readonly string[] }): Statement;
	/**
	 * The subject's live sessions, most recently written first, at most `limit`, taken from at most
	 * `candidates` of them (all, when it has no more).
	 */
	list(fields: { subject: string; now: Date; limit: number; candidates: number }): Statement;
	/** Deletes the subject's session of row `id` (decimal digits within `bigint`); returns its key. */
	deleteOne(fields: { subject: string; id: string }): Statement;
}

/**
 * Builds the statements for `table` (with the `subject` column when `withSubject`). Their texts are made once; each call only pairs values with
 * them. Coalesced writes send their rows as one JSON array (`jsonb_to_recordset`).
 *
 * The size a session is measured by, for `maxLength`, is the byte length of PostgreSQL's text
 * form of the stored `jsonb` (`octet_length(data::text)`): the one measure that SQL can take of
 * a session merged in the statement, so merges and whole writes are measured alike.
 */
export function sessionStatements(table: SessionTable, withSubject: boolean): SessionStatements {
	const { name: t, id, key, data, createdOn, modifiedOn, expiresOn, subject } = quoted(table, withSubject);
	const named = (name: string, text: string) => (values: readonly unknown[]): Statement => ({ name, text, values });

	// $1 digests, $2 now (milliseconds since the epoch, as every time here: see `fromMillis` and
	// `epochMillis`). The data come as text: each reader parses its own copy, and the text is what
	// a later save is compared with, field by field, only if there is a save.
	const selectLive = named('selectLive', subject === undefined
		? `SELECT ${key} AS "key", ${data}::text AS "json", ${epochMillis(expiresOn)} AS "expiresOn" FROM ${t} `
			+ `WHERE ${key} = ANY($1::text[]) AND ${expiresOn} > ${fromMillis('$2::float8')}`
		: `SELECT ${key} AS "key", ${data}::text AS "json", ${epochMillis(expiresOn)} AS "expiresOn", ${subject} AS "subject" FROM ${t} `
			+ `WHERE ${key} = ANY($1::text[]) AND ${expiresOn} > ${fromMillis('$2::float8')}`);

	// $1 the writes as one JSON array of rows (named fields, see `liveRows`), $2 maxLength (0:
	// none). One text parameter rather than an array per column: node-postgres and Prisma then
	// encode one string, not every element of seven arrays (bench/profile.ts; bench/NOTES.md).
	// The live row is locked first (FOR UPDATE), so the merge applies to its newest version even
	// when another request wrote it meanwhile. Every write statement locks its rows in key order,
	// so two statements in flight on overlapping keys (two instances, or two turns of one) never
	// deadlock.
	const updateLive = named('updateLive', `WITH v AS (SELECT r.key, r.replace, r.patch, r.removed, ${fromMillis('r.now')} AS now, `
		+ `${fromMillis('r.expires')} AS expires, r.keep_expiry${subject === undefined ? '' : ', r.subject, r.write_subject'} `
		+ `FROM jsonb_to_recordset($1::jsonb) AS r(key text, replace boolean, patch jsonb, removed jsonb, now float8, expires float8, keep_expiry boolean`
		+ `${subject === undefined ? '' : ', subject text, write_subject boolean'})), `
		+ `live AS (SELECT s.${key} AS key, octet_length(s.${data}::text) AS size_before, `
		+ `CASE WHEN v.replace THEN v.patch ELSE (s.${data} - ARRAY(SELECT jsonb_array_elements_text(v.removed))) || v.patch END AS merged `
		+ `FROM ${t} AS s JOIN v ON s.${key} = v.key WHERE s.${expiresOn} > v.now ORDER BY s.${key} FOR UPDATE OF s), `
		+ `written AS (UPDATE ${t} AS s SET ${data} = live.merged, ${modifiedOn} = v.now, `
		+ `${expiresOn} = CASE WHEN v.keep_expiry THEN s.${expiresOn} ELSE v.expires END`
		+ `${subject === undefined ? '' : `, ${subject} = CASE WHEN v.write_subject THEN v.subject ELSE s.${subject} END`} `
		+ `FROM live JOIN v ON v.key = live.key WHERE s.${key} = live.key `
		+ `AND ($2 = 0 OR octet_length(live.merged::text) <= $2 OR octet_length(live.merged::text) <= live.size_before) `
		+ `RETURNING s.${key} AS key) `
		+ `SELECT live.key AS "key", octet_length(live.merged::text) AS "size", written.key IS NOT NULL AS "written" `
		+ `FROM live LEFT JOIN written ON written.key = live.key`);

	// $1 the sessions as one JSON array of rows (see `wholeRows`), $2 maxLength (0: none). `insert`
	// is the same without ON CONFLICT, for new keys, the most common whole write: a speculative
	// insertion costs PostgreSQL more CPU per row (bench/NOTES.md).
	const wholeWrite = (onConflict: boolean) => `WITH v AS (SELECT r.key, r.data, ${fromMillis('r.now')} AS now, ${fromMillis('r.expires')} AS expires`
		+ `${subject === undefined ? '' : ', r.subject'} FROM jsonb_to_recordset($1::jsonb) `
		+ `AS r(key text, data jsonb, now float8, expires float8${subject === undefined ? '' : ', subject text'})), `
		+ `written AS (INSERT INTO ${t} (${key}, ${data}, ${createdOn}, ${modifiedOn}, ${expiresOn}${subject === undefined ? '' : `, ${subject}`}) `
		+ `SELECT v.key, v.data, v.now, v.now, v.expires${subject === undefined ? '' : ', v.subject'} FROM v WHERE $2 = 0 OR octet_length(v.data::text) <= $2 ORDER BY v.key `
		+ `${!onConflict ? '' : `ON CONFLICT (${key}) DO UPDATE SET ${data} = EXCLUDED.${data}, ${modifiedOn} = EXCLUDED.${modifiedOn}, ${expiresOn} = EXCLUDED.${expiresOn}`
			+ `${subject === undefined ? '' : `, ${subject} = EXCLUDED.${subject}`} `}`
		+ `RETURNING ${key} AS key) `
		+ `SELECT v.key AS "key", octet_length(v.data::text) AS "size", written.key IS NOT NULL AS "written" FROM v LEFT JOIN written ON written.key = v.key`;
	const upsert = named('upsert', wholeWrite(true));
	const insert = named('insert', wholeWrite(false));

	// $1 digests.
	const deleteKeys = named('delete', `DELETE FROM ${t} WHERE ${key} IN `
		+ `(SELECT ${key} FROM ${t} WHERE ${key} = ANY($1::text[]) ORDER BY ${key} FOR UPDATE) RETURNING ${key} AS "key"`);

	// $1 limit. The sweep goes by the database's clock: one app server whose clock runs ahead must
	// not delete sessions that are live for every other. The rows are found through the index on
	// the expiry and deleted by their ctid (a TID scan): an `IN (subquery)` here was planned as a
	// hash join over the whole table, every batch (several times slower, and reads slowed during a
	// sweep: bench/NOTES.md).
	const deleteExpired = named('deleteExpired', `WITH deleted AS (DELETE FROM ${t} WHERE ctid = ANY(ARRAY(`
		+ `SELECT ctid FROM ${t} WHERE ${expiresOn} < now() LIMIT $1 FOR UPDATE SKIP LOCKED)) RETURNING 1) `
		+ `SELECT count(*)::int AS "deleted" FROM deleted`);

	// $1 the table's name, for pg_total_relation_size.
	const tableStatus = named('tableStatus', `SELECT count(*) FILTER (WHERE ${expiresOn} > now())::int8::text AS "live", `
		+ `count(*) FILTER (WHERE ${expiresOn} <= now())::int8::text AS "expired", pg_total_relation_size($1::regclass)::text AS "bytes" FROM ${t}`);

	const lockSweep = named('lockSweep', `SELECT pg_try_advisory_xact_lock(${sweepLockId}) AS "locked"`);

	let bySubject: SubjectStatements | undefined;
	if (subject !== undefined) {
		// Both statements below take at most a batch of a subject's rows, through the index on the
		// subject, written as a range of one value in that index's order (`subject >= $1 AND subject
		// <= $1 ORDER BY subject`; for text, equality is that range): with `subject = $1` and a LIMIT,
		// PostgreSQL chose a sequential scan for a subject of many rows, expecting to meet them early,
		// and read the whole table before them when they were its last rows (1.7 s a batch for a
		// million behind three million). Ordered by the index, no other plan avoids a sort of them all.
		const ofSubject = `${subject} >= $1 AND ${subject} <= $1`;
		// $1 subject, $2 digests to keep, $3 most rows, $4 digests to report. The rows are locked
		// first (FOR UPDATE), then deleted by `id`: a row that another statement changed meanwhile (a
		// save, or a regenerated session moved to its new key) is locked in its newest version,
		// which the DELETE then finds through the id it kept.
		const deleteBatch = named('deleteBatchOfSubject', `WITH deleted AS (DELETE FROM ${t} WHERE ${id} = ANY(ARRAY(`
			+ `SELECT ${id} FROM ${t} WHERE ${ofSubject} AND NOT (${key} = ANY($2::text[])) ORDER BY ${subject} LIMIT $3 FOR UPDATE)) `
			+ `RETURNING ${key} AS key) `
			+ `SELECT count(*)::int AS "deleted", coalesce(string_agg(key, ',') FILTER (WHERE key = ANY($4::text[])), '') AS "watched" FROM deleted`);
		// $1 subject, $2 now in milliseconds since the epoch, $3 most rows, $4 most candidates: the sort
		// reads at most $4 rows however many the subject has. An index that gave the most recently
		// written first would hold `modified_on`, which every save writes: no save could then be a
		// HOT update.
		const list = named('listOfSubject', `SELECT c.${id}::text AS "id", c.${key} AS "key", ${epochMillis(`c.${createdOn}`)} AS "createdOn", `
			+ `${epochMillis(`c.${modifiedOn}`)} AS "modifiedOn", ${epochMillis(`c.${expiresOn}`)} AS "expiresOn" `
			+ `FROM (SELECT ${id}, ${key}, ${createdOn}, ${modifiedOn}, ${expiresOn} FROM ${t} `
			+ `WHERE ${ofSubject} AND ${expiresOn} > ${fromMillis('$2::float8')} ORDER BY ${subject} LIMIT $4) AS c `
			+ `ORDER BY c.${modifiedOn} DESC, c.${id} DESC LIMIT $3`);
		// $1 subject, $2 row id.
		const deleteOne = named('deleteOneOfSubject', `DELETE FROM ${t} WHERE ${subject} = $1 AND ${id} = $2::bigint RETURNING ${key} AS "key"`);
		bySubject = {
			deleteBatch: ({ subject: who, keep, limit, watch }) => deleteBatch([who, keep, limit, watch]),
			list: ({ subject: who, now, limit, candidates }) => list([who, now.getTime(), limit, candidates]),
			deleteOne: ({ subject: who, id: row }) => deleteOne([who, row]),
		};
	}

	return {
		selectLive: ({ digests, now }) => selectLive([digests, now.getTime()]),
		updateLive: (writes, maxLength) => updateLive([liveRows(writes, subject !== undefined), maxLength]),
		upsert: (writes, maxLength) => upsert([wholeRows(writes, subject !== undefined), maxLength]),
		insert: (writes, maxLength) => insert([wholeRows(writes, subject !== undefined), maxLength]),
		delete: ({ digests }) => deleteKeys([digests]),
		lockSweep: () => lockSweep([]),
		tableStatus: () => tableStatus([t]),
		deleteExpired: ({ limit }) => deleteExpired([limit]),
		bySubject,
		missingSubjectColumn: (error) => (subject !== undefined && sqlStateOf(error) === sqlStates.undefinedColumn
			? new SchemaMismatchError(
				`The session table ${t} has no column ${subject}, which the store's \`subject\` option needs: apply this package's `
				+ 'migration `…_session_subject` (`await store.ensureSchema()`, `npx koa-pgstore migrate`, or '
				+ '`prisma migrate deploy --config node_modules/koa-pgstore/prisma.config.ts`), or add the field to your own model and migrate',
				t,
				[`column ${subject}`],
				{ cause: error },
			)
			: undefined),
	};
}

/** The transaction-scoped advisory lock that lets one instance at a time sweep a database (the bytes of "koapgst1"). */
export const sweepLockId = 0x6b6f_6170_6773_7431n;

// Milliseconds since the epoch (float8) as a timestamptz, exact to the millisecond the columns
// keep. Times go in as numbers: formatting a `Date` (`toISOString`, or node-postgres' own) costs
// many times more than a number, twice per row written (bench/NOTES.md).
function fromMillis(value: string): string {
	return `to_timestamp(${value} / 1000)`;
}

// A timestamp column as milliseconds since the epoch (float8): a plain number through either
// driver, whatever type parsers an app installs in node-postgres (one that keeps timestamptz as
// text would otherwise turn every stored session into none), and no date string to parse.
function epochMillis(column: string): string {
	return `(extract(epoch FROM ${column}) * 1000)::float8`;
}

// The rows of `updateLive`, as `jsonb_to_recordset` reads them. `patch` and `removed` are JSON
// already (checked by the codec) and go in as they are.
function liveRows(writes: readonly LiveWrite[], withSubject: boolean): string {
	return `[${writes.map((write) => `{"key":${JSON.stringify(write.digest)},"replace":${write.replace},"patch":${write.patch},`
		+ `"removed":${write.removed},"now":${write.now.getTime()},"expires":${write.expiresOn.getTime()},"keep_expiry":${write.keepExpiry}`
		+ `${withSubject ? `,"subject":${JSON.stringify(write.subject ?? null)},"write_subject":${write.subject !== undefined}` : ''}}`).join(',')}]`;
}

// The rows of `upsert`, as `jsonb_to_recordset` reads them; `json` is the session's JSON.
function wholeRows(writes: readonly WholeWrite[], withSubject: boolean): string {
	return `[${writes.map((write) => `{"key":${JSON.stringify(write.digest)},"data":${write.json},`
		+ `"now":${write.now.getTime()},"expires":${write.expiresOn.getTime()}`
		+ `${withSubject ? `,"subject":${JSON.stringify(write.subject ?? null)}` : ''}}`).join(',')}]`;
}
