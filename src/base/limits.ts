// The bounds the store puts on what one caller may make it do or store, in one place that imports
// nothing. Each keeps one request's cost, or one value PostgreSQL would refuse, from becoming
// everyone's (docs/subjects.md, "A subject with very many sessions"; docs/behaviour.md, "Size and content of a session").

/**
 * Rows one statement of `destroyAll` deletes; it repeats until a statement deletes fewer. Each
 * statement stays far below the request bound (`pool.query_timeout`), so a subject of any size
 * can be signed out (docs/subjects.md).
 */
export const subjectDeleteBatch = 10_000;

/** Most sessions one `list()` returns: its `limit` may not be larger. */
export const maxListLimit = 1000;

/**
 * Most of a subject's live sessions `list()` reads to sort them by their last write: a subject
 * with more (only one built on purpose has that many) is listed from this many of them, so a
 * list costs the same at any size.
 */
export const listCandidates = 10_000;

/**
 * Longest subject stored, in bytes of UTF-8. The btree index on `subject` takes an entry of at
 * most 2,704 bytes (a third of an 8 kB page, less headers); this leaves room for an app's index
 * that adds columns to the subject.
 */
export const maxSubjectBytes = 1024;

/**
 * The latest expiry stored, in ms since the epoch: the last moment a JavaScript `Date` holds
 * (+275760-09-13), which `timestamptz` holds too (it goes to 294276). A longer `maxAge` is
 * clamped to it.
 */
export const latestExpiry = 8.64e15;
