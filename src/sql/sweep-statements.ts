import type { SessionTable } from './session-table.js';
import { quoteIdentifier, type Statement } from './text.js';

/** The statements of a sweep (`store.cleanup()`, the cleanup schedule). */
export interface SweepStatements {
	/**
	 * Deletes up to `limit` rows expired by PostgreSQL's clock, skipping rows other transactions
	 * hold; returns `deleted`, and `held`: whether it left expired rows because others held them
	 * (asked only when it deleted fewer than `limit`, so it ran out of rows it could take).
	 */
	deleteExpired(fields: { limit: number }): Statement;
}

/**
 * The sweep's statements on `table`. They take no lock but the rows' own: any number of sweeps
 * may run at once, each skipping the rows another holds, and only a role that may lock the
 * table's rows (`UPDATE` or `DELETE` on it) can keep a sweep from a row. An advisory lock, which
 * any login may take, would let a role without a grant on the table stop every sweep.
 *
 * Every operator and function is named with its schema (`pg_catalog`), so that none is looked up
 * through the search_path, where another role may have put one of its own.
 */
export function sweepStatements(table: SessionTable): SweepStatements {
	const t = table.qualifiedName;
	const expiresOn = quoteIdentifier(table.columns.expiresOn);
	const expired = `${expiresOn} OPERATOR(pg_catalog.<) pg_catalog.now()`;
	// $1 limit. The rows are found through the index on the expiry and deleted by their ctid (a TID
	// scan): an `IN (subquery)` here was planned as a hash join over the whole table, every batch
	// (bench/NOTES.md). All of the statement reads one snapshot: the expired rows it sees are the
	// ones it deleted and the ones it skipped, so more of them than it deleted means some were held.
	// The count runs only when the batch was not full, and reads at most `limit` index entries.
	const text = `WITH deleted AS (DELETE FROM ${t} WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(`
		+ `SELECT ctid FROM ${t} WHERE ${expired} LIMIT $1::pg_catalog.int8 FOR UPDATE SKIP LOCKED)) RETURNING 1), `
		+ 'counted AS (SELECT pg_catalog.count(*) AS n FROM deleted) '
		+ 'SELECT counted.n::pg_catalog.int4 AS "deleted", CASE WHEN counted.n OPERATOR(pg_catalog.<) $1::pg_catalog.int8 '
		+ `THEN (SELECT pg_catalog.count(*) FROM (SELECT FROM ${t} WHERE ${expired} LIMIT $1::pg_catalog.int8) AS visible) OPERATOR(pg_catalog.>) counted.n `
		+ 'ELSE false END AS "held" FROM counted';
	return {
		deleteExpired: ({ limit }) => ({ name: 'sweepExpired', text, values: [limit] }),
	};
}
