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
	 * `regenerate()`: the row moves to this key digest, in the same statement that writes it, and
	 * keeps its id and `created_on`. A sign-out that lands first leaves no live row to move.
	 */
	readonly newDigest?: string | undefined;
	/**
	 * `true`: `patch` is the whole session and replaces the stored one. `false`: the stored session
	 * loses the fields in `removed` and takes those of `patch`, and keeps every other field.
	 */
	readonly replace: boolean;
	/** A JSON object: the fields written. */
	readonly patch: string;
	/** A JSON array: the names of the fields removed. */
	readonly removed: string;
	/**
	 * Re-encryption: a JSON object of fields the request did not change, each sealed anew, written
	 * only where the stored value is still the one in `expected` (the form the request loaded), so
	 * a field another request changed meanwhile keeps that change.
	 */
	readonly reseal?: { readonly fields: string; readonly expected: string } | undefined;
	readonly now: Date;
	readonly expiresOn: Date;
	/** The row keeps its stored expiry, and `expiresOn` is not written. */
	readonly keepExpiry: boolean;
	/** Written only when defined; `null`: the session has none. */
	readonly subject: string | null | undefined;
}

/** A delete of the row stored under a key digest and, when known, of the row the request loaded. */
export interface DeleteTarget {
	readonly digest: string;
	/**
	 * The id of the row the request loaded under that key: deleted wherever it is now, so a logout
	 * also ends the key another tab's `regenerate()` moved that row to.
	 */
	readonly id: string | undefined;
}

/** The store's statements on one table. Each takes named fields and returns its text with its values. */
export interface SessionStatements {
	/** Key, row id, data as JSON text, expiry (and subject, with the option) of the live rows among `digests`. */
	selectLive(fields: { digests: readonly string[]; now: Date }): Statement;
	/**
	 * Applies each write to its row if the row is still live and the session stored after it fits
	 * `maxLength` (or is no larger than before). One result row per write: `key` (the digest
	 * written to, before any move), `size` (bytes of the stored session's text after the write;
	 * null when no live row was locked), `written`, and `busy`: the live row was held by another
	 * transaction and skipped, nothing was written. Unless the save's `_maxAge` differs from the stored one, neither the
	 * expiry nor the stored `_expire` moves backwards: a save computed earlier that lands later
	 * does not shorten the session.
	 */
	updateLive(writes: readonly LiveWrite[], maxLength: number): Statement;
	/**
	 * Inserts each session, replacing a row of the same key, if it fits `maxLength`. One result
	 * row per write: `key`, `id` (of the row written), `size`, `written`. The digests must be distinct.
	 */
	upsert(writes: readonly WholeWrite[], maxLength: number): Statement;
	/**
	 * As `upsert`, for keys expected to be new: a key already stored fails the statement with a
	 * unique violation (SQLSTATE 23505), and nothing is written.
	 */
	insert(writes: readonly WholeWrite[], maxLength: number): Statement;
	/** Deletes the rows of the targets' digests and ids; returns the `key` and `id` of each row it deleted. */
	delete(targets: readonly DeleteTarget[]): Statement;
	/** Live and expired rows (`live`, `expired`) and the bytes of the table with its indexes and TOAST (`bytes`), as text. */
	tableStatus(): Statement;
	/** Present when the store keeps a subject per session. */
	readonly bySubject: SubjectStatements | undefined;
	/** The text of each statement a session function can run instead (src/sql/session-functions.ts). */
	readonly texts: Readonly<Record<FunctionKind, string>>;
	/**
	 * The actionable error for a statement that failed because the table lacks the `subject`
	 * column the store's `subject` option needs (SQLSTATE 42703): for a store whose
	 * `ensureSchema()` was never called. `undefined` for any other failure.
	 */
	missingSubjectColumn(error: unknown): SchemaMismatchError | undefined;
}

/** The statements of a request, each of which a session function may run instead (their parameters are the function's). */
export type FunctionKind = 'selectLive' | 'updateLive' | 'upsert' | 'insert' | 'delete';

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
	const selectLive = named('selectLive', `SELECT ${key} AS "key", ${id}::pg_catalog.text AS "id", ${data}::pg_catalog.text AS "json", `
		+ `${epochMillis(expiresOn)} AS "expiresOn"${subject === undefined ? '' : `, ${subject} AS "subject"`} FROM ${t} `
		+ `WHERE ${key} ${eq} ANY(${opaque('$1::pg_catalog.text[]')}) AND ${expiresOn} ${gt} ${fromMillis('$2::pg_catalog.float8')}`);

	// $1 the writes as one JSON array of rows (named fields, see `liveRows`), $2 maxLength (0:
	// none). One text parameter rather than an array per column: node-postgres and Prisma then
	// encode one string, not every element of seven arrays (bench/profile.ts; bench/NOTES.md).
	// The live row is locked first (FOR UPDATE), so the merge applies to its newest version even
	// when another request wrote it meanwhile. A row another transaction holds is skipped, not
	// waited for (SKIP LOCKED): its result row says `busy` and that write alone is tried again in a
	// later statement, so a hot or locked session never holds up the other sessions of a batch.
	// Every write statement locks its rows in key order, so two statements in flight on
	// overlapping keys (two instances, or two turns of one) never deadlock.
	//
	// The merge, in order: the removed fields go, re-sealed fields are kept only where the stored
	// value is still the one the request loaded (`reseal`), the patch applies. Then the expiry
	// floor: unless the save changes `_maxAge` (the app shortened the session on purpose), a stored
	// `_expire` or `expires_on` later than the save's stays. `key` is set to itself unless the row
	// moves (`regenerate()`): an unchanged indexed value keeps the update HOT. The merge and the
	// floored merge are each computed once per row (`OFFSET 0` keeps PostgreSQL from pulling the
	// LATERAL subqueries up, which would copy the whole merge into every expression that reads it;
	// bench/NOTES.md).
	const updateLive = named('updateLive', `WITH v AS (SELECT r.key, r.new_key, r.replace, r.patch, r.removed, r.reseal, r.expected, `
		+ `${fromMillis('r.now')} AS now, ${fromMillis('r.expires')} AS expires, r.keep_expiry${subject === undefined ? '' : ', r.subject, r.write_subject'} `
		+ `FROM pg_catalog.jsonb_to_recordset($1::pg_catalog.jsonb) AS r(key pg_catalog.text, new_key pg_catalog.text, replace pg_catalog.bool, `
		+ `patch pg_catalog.jsonb, removed pg_catalog.jsonb, reseal pg_catalog.jsonb, expected pg_catalog.jsonb, now pg_catalog.float8, `
		+ `expires pg_catalog.float8, keep_expiry pg_catalog.bool${subject === undefined ? '' : ', subject pg_catalog.text, write_subject pg_catalog.bool'})), `
		+ `live AS (SELECT s.${key} AS key, ${size(`s.${data}`)} AS size_before, floored.merged, measured.size, kept.floor `
		+ `FROM ${t} AS s JOIN v ON s.${key} ${eq} v.key `
		+ `CROSS JOIN LATERAL (SELECT CASE WHEN v.replace THEN v.patch ELSE `
		+ `(s.${data} ${minus} ARRAY(SELECT pg_catalog.jsonb_array_elements_text(v.removed))) `
		+ `${concat} COALESCE((SELECT pg_catalog.jsonb_object_agg(e.key, e.value) FROM pg_catalog.jsonb_each(v.reseal) AS e `
		+ `WHERE (s.${data} ${arrow} e.key) ${eq} (v.expected ${arrow} e.key)), '{}'::pg_catalog.jsonb) `
		+ `${concat} v.patch END AS merged OFFSET 0) AS m `
		+ `CROSS JOIN LATERAL (SELECT COALESCE((s.${data} ${arrow} '_maxAge'::pg_catalog.text) ${eq} (m.merged ${arrow} '_maxAge'::pg_catalog.text), `
		+ `s.${data} ${arrow} '_maxAge'::pg_catalog.text IS NULL AND m.merged ${arrow} '_maxAge'::pg_catalog.text IS NULL) AS floor) AS kept `
		+ `CROSS JOIN LATERAL (SELECT CASE WHEN kept.floor `
		+ `AND pg_catalog.jsonb_typeof(s.${data} ${arrow} '_expire'::pg_catalog.text) ${eq} 'number'::pg_catalog.text `
		+ `AND pg_catalog.jsonb_typeof(m.merged ${arrow} '_expire'::pg_catalog.text) ${eq} 'number'::pg_catalog.text `
		+ `AND (s.${data} ${arrow} '_expire'::pg_catalog.text) ${gt} (m.merged ${arrow} '_expire'::pg_catalog.text) `
		+ `THEN pg_catalog.jsonb_set(m.merged, '{_expire}'::pg_catalog.text[], s.${data} ${arrow} '_expire'::pg_catalog.text) ELSE m.merged END AS merged OFFSET 0) AS floored `
		+ `CROSS JOIN LATERAL (SELECT ${size('floored.merged')} AS size) AS measured `
		+ `WHERE s.${expiresOn} ${gt} v.now ORDER BY s.${key} FOR UPDATE OF s SKIP LOCKED), `
		+ `written AS (UPDATE ${t} AS s SET ${key} = COALESCE(v.new_key, s.${key}), ${data} = live.merged, ${modifiedOn} = v.now, `
		+ `${expiresOn} = CASE WHEN v.keep_expiry THEN s.${expiresOn} WHEN live.floor THEN GREATEST(s.${expiresOn}, v.expires) ELSE v.expires END`
		+ `${subject === undefined ? '' : `, ${subject} = CASE WHEN v.write_subject THEN v.subject ELSE s.${subject} END`} `
		+ `FROM live JOIN v ON v.key ${eq} live.key WHERE s.${key} ${eq} live.key `
		+ `AND ($2::pg_catalog.int4 ${eq} 0 OR live.size ${le} $2::pg_catalog.int4 OR live.size ${le} live.size_before) `
		+ `RETURNING live.key AS key) `
		+ `SELECT v.key AS "key", live.size AS "size", written.key IS NOT NULL AS "written", live.key IS NULL AND EXISTS `
		+ `(SELECT FROM ${t} AS s WHERE s.${key} ${eq} v.key AND s.${expiresOn} ${gt} v.now) AS "busy" `
		+ `FROM v LEFT JOIN live ON live.key ${eq} v.key LEFT JOIN written ON written.key ${eq} live.key`);

	// $1 the sessions as one JSON array of rows (see `wholeRows`), $2 maxLength (0: none). `insert`
	// is the same without ON CONFLICT, for new keys, the most common whole write: a speculative
	// insertion costs PostgreSQL more CPU per row (bench/NOTES.md).
	const wholeWrite = (onConflict: boolean) => `WITH v AS (SELECT r.key, r.data, ${size('r.data')} AS size, ${fromMillis('r.now')} AS now, ${fromMillis('r.expires')} AS expires`
		+ `${subject === undefined ? '' : ', r.subject'} FROM pg_catalog.jsonb_to_recordset($1::pg_catalog.jsonb) `
		+ `AS r(key pg_catalog.text, data pg_catalog.jsonb, now pg_catalog.float8, expires pg_catalog.float8${subject === undefined ? '' : ', subject pg_catalog.text'})), `
		+ `written AS (INSERT INTO ${t} (${key}, ${data}, ${createdOn}, ${modifiedOn}, ${expiresOn}${subject === undefined ? '' : `, ${subject}`}) `
		+ `SELECT v.key, v.data, v.now, v.now, v.expires${subject === undefined ? '' : ', v.subject'} FROM v `
		+ `WHERE $2::pg_catalog.int4 ${eq} 0 OR v.size ${le} $2::pg_catalog.int4 ORDER BY v.key `
		+ `${!onConflict ? '' : `ON CONFLICT (${key}) DO UPDATE SET ${data} = EXCLUDED.${data}, ${modifiedOn} = EXCLUDED.${modifiedOn}, ${expiresOn} = EXCLUDED.${expiresOn}`
			+ `${subject === undefined ? '' : `, ${subject} = EXCLUDED.${subject}`} `}`
		+ `RETURNING ${key} AS key, ${id} AS id) `
		+ `SELECT v.key AS "key", written.id::pg_catalog.text AS "id", v.size AS "size", written.key IS NOT NULL AS "written" `
		+ `FROM v LEFT JOIN written ON written.key ${eq} v.key`;
	const upsert = named('upsert', wholeWrite(true));
	const insert = named('insert', wholeWrite(false));

	// $1 digests, $2 row ids (a row a request loaded, wherever `regenerate()` moved it since).
	// Rows are locked in key order (see `updateLive`), then deleted by id: a row that another
	// statement moved to a new key while this one waited for it is found by its id, which a move
	// keeps, and not missed by a match on the key this statement's snapshot saw.
	const deleteKeys = named('delete', `DELETE FROM ${t} WHERE ${id} ${eq} ANY(ARRAY(`
		+ `SELECT ${id} FROM ${t} WHERE ${key} ${eq} ANY(${opaque('$1::pg_catalog.text[]')}) OR ${id} ${eq} ANY(${opaque('$2::pg_catalog.int8[]')}) ORDER BY ${key} FOR UPDATE)) `
		+ `RETURNING ${key} AS "key", ${id}::pg_catalog.text AS "id"`);

	// $1 the table's name, for pg_total_relation_size.
	const tableStatus = named('tableStatus', `SELECT pg_catalog.count(*) FILTER (WHERE ${expiresOn} ${gt} pg_catalog.now())::pg_catalog.text AS "live", `
		+ `pg_catalog.count(*) FILTER (WHERE ${expiresOn} ${le} pg_catalog.now())::pg_catalog.text AS "expired", `
		+ `pg_catalog.pg_total_relation_size($1::pg_catalog.regclass)::pg_catalog.text AS "bytes" FROM ${t}`);

	let bySubject: SubjectStatements | undefined;
	if (subject !== undefined) {
		// Both statements below take at most a batch of a subject's rows, through the index on the
		// subject, written as a range of one value in that index's order (`subject >= $1 AND subject
		// <= $1 ORDER BY subject`; for text, equality is that range): with `subject = $1` and a LIMIT,
		// PostgreSQL chose a sequential scan for a subject of many rows, expecting to meet them early,
		// and read the whole table before them when they were its last rows (1.7 s a batch for a
		// million behind three million). Ordered by the index, no other plan avoids a sort of them all.
		const ofSubject = `${subject} ${operator('>=')} $1::pg_catalog.text AND ${subject} ${le} $1::pg_catalog.text`;
		// $1 subject, $2 digests to keep, $3 most rows, $4 digests to report. The rows are locked
		// first (FOR UPDATE), then deleted by `id`: a row that another statement changed meanwhile (a
		// save, or a regenerated session moved to its new key) is locked in its newest version,
		// which the DELETE then finds through the id it kept.
		const deleteBatch = named('deleteBatchOfSubject', `WITH deleted AS (DELETE FROM ${t} WHERE ${id} ${eq} ANY(ARRAY(`
			+ `SELECT ${id} FROM ${t} WHERE ${ofSubject} AND NOT (${key} ${eq} ANY($2::pg_catalog.text[])) ORDER BY ${subject} LIMIT $3::pg_catalog.int8 FOR UPDATE)) `
			+ `RETURNING ${key} AS key) `
			+ `SELECT pg_catalog.count(*)::pg_catalog.int4 AS "deleted", COALESCE(pg_catalog.string_agg(key, ','::pg_catalog.text) `
			+ `FILTER (WHERE key ${eq} ANY($4::pg_catalog.text[])), ''::pg_catalog.text) AS "watched" FROM deleted`);
		// $1 subject, $2 now in milliseconds since the epoch, $3 most rows, $4 most candidates: the sort
		// reads at most $4 rows however many the subject has. An index that gave the most recently
		// written first would hold `modified_on`, which every save writes: no save could then be a
		// HOT update.
		const list = named('listOfSubject', `SELECT c.${id}::pg_catalog.text AS "id", c.${key} AS "key", ${epochMillis(`c.${createdOn}`)} AS "createdOn", `
			+ `${epochMillis(`c.${modifiedOn}`)} AS "modifiedOn", ${epochMillis(`c.${expiresOn}`)} AS "expiresOn" `
			+ `FROM (SELECT ${id}, ${key}, ${createdOn}, ${modifiedOn}, ${expiresOn} FROM ${t} `
			+ `WHERE ${ofSubject} AND ${expiresOn} ${gt} ${fromMillis('$2::pg_catalog.float8')} ORDER BY ${subject} LIMIT $4::pg_catalog.int8) AS c `
			+ `ORDER BY c.${modifiedOn} DESC, c.${id} DESC LIMIT $3::pg_catalog.int8`);
		// $1 subject, $2 row id.
		const deleteOne = named('deleteOneOfSubject', `DELETE FROM ${t} WHERE ${subject} ${eq} $1::pg_catalog.text `
			+ `AND ${id} ${eq} $2::pg_catalog.int8 RETURNING ${key} AS "key"`);
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
		delete: (targets) => deleteKeys([targets.map((target) => target.digest), targets.flatMap((target) => (target.id === undefined ? [] : [target.id]))]),
		tableStatus: () => tableStatus([t]),
		bySubject,
		texts: { selectLive: selectLive([]).text, updateLive: updateLive([]).text, upsert: upsert([]).text, insert: insert([]).text, delete: deleteKeys([]).text },
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

// Every operator, function and type of the statements is named with its schema: resolved through
// the app role's `search_path`, an operator without an exact match in pg_catalog (say `float8 /
// integer`) would run whatever a role with CREATE on a schema earlier in that path defined for
// those types, as the app role, on every request. test/unit/statements.test.ts reads the texts and
// fails on any unqualified name; test/search-path.test.ts shadows each one with a hostile role.
// `OPERATOR(…)` has the precedence of "any other operator", whatever the symbol: operands that
// are themselves operations are in parentheses.
const operator = (symbol: string): string => `OPERATOR(pg_catalog.${symbol})`;
const eq = operator('=');
const gt = operator('>');
const le = operator('<=');
const minus = operator('-');
const concat = operator('||');
const arrow = operator('->');

// An array parameter the planner cannot see into: `ARRAY(SELECT unnest(…))` is computed once per
// run, before the scan, and its length is unknown to every plan. A prepared statement whose
// custom plans (made for the array's actual length) look cheaper than the generic one (made for
// an unknown length) is planned again on every run; with this, the generic plan is chosen after
// five runs and kept (bench/NOTES.md).
function opaque(array: string): string {
	return `ARRAY(SELECT pg_catalog.unnest(${array}))`;
}

// The size a session is measured by (see `sessionStatements`), taken once per row: the text of a
// large jsonb costs PostgreSQL more than the rest of the statement.
function size(jsonb: string): string {
	return `pg_catalog.octet_length(${jsonb}::pg_catalog.text)`;
}

// Milliseconds since the epoch (float8) as a timestamptz, exact to the millisecond the columns
// keep. Times go in as numbers: formatting a `Date` (`toISOString`, or node-postgres' own) costs
// many times more than a number, twice per row written (bench/NOTES.md).
function fromMillis(value: string): string {
	return `pg_catalog.to_timestamp(${value} ${operator('/')} 1000::pg_catalog.float8)`;
}

// A timestamp column as milliseconds since the epoch (float8): a plain number through either
// driver, whatever type parsers an app installs in node-postgres (one that keeps timestamptz as
// text would otherwise turn every stored session into none), and no date string to parse.
function epochMillis(column: string): string {
	return `(EXTRACT(epoch FROM ${column}) ${operator('*')} 1000::pg_catalog.numeric)::pg_catalog.float8`;
}

// The rows of `updateLive`, as `jsonb_to_recordset` reads them. `patch`, `removed` and `reseal`
// are JSON already (checked by the codec) and go in as they are; a key left out reads as NULL.
function liveRows(writes: readonly LiveWrite[], withSubject: boolean): string {
	return `[${writes.map((write) => `{"key":${JSON.stringify(write.digest)},"replace":${write.replace},"patch":${write.patch},`
		+ `${write.newDigest === undefined ? '' : `"new_key":${JSON.stringify(write.newDigest)},`}`
		+ `${write.reseal === undefined ? '' : `"reseal":${write.reseal.fields},"expected":${write.reseal.expected},`}`
		+ `"removed":${write.removed},"now":${write.now.getTime()},"expires":${write.expiresOn.getTime()},"keep_expiry":${write.keepExpiry}`
		+ `${withSubject ? `,"subject":${JSON.stringify(write.subject ?? null)},"write_subject":${write.subject !== undefined}` : ''}}`).join(',')}]`;
}

// The rows of `upsert`, as `jsonb_to_recordset` reads them; `json` is the session's JSON.
function wholeRows(writes: readonly WholeWrite[], withSubject: boolean): string {
	return `[${writes.map((write) => `{"key":${JSON.stringify(write.digest)},"data":${write.json},`
		+ `"now":${write.now.getTime()},"expires":${write.expiresOn.getTime()}`
		+ `${withSubject ? `,"subject":${JSON.stringify(write.subject ?? null)}` : ''}}`).join(',')}]`;
}
