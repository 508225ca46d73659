// Options of the store that only this package's own code gives, kept out of `PgStoreOptions`:
// a symbol key is invisible to apps, to option validation and to JSON.
import type { WriteTurn } from '../batch/write-batch.js';

/** The CLI's `--table`: the name of the session table, for a model renamed with `@@map`. */
export const tableName: unique symbol = Symbol('koa-pgstore: table name');

/**
 * The fuzzer's (test/fuzz/app.ts): called, in the waiting request's async context, when one of
 * its writes or deletes must wait for an earlier one of the same key in this process; the
 * operation starts after the promise it returns instead. So the fuzzer knows which request waits
 * for which held one, and starts it when it chooses, one request moving at a time. Apps never
 * give it: the check runs only for an operation that already waits.
 */
export const writeTurn: unique symbol = Symbol('koa-pgstore: write turn');

/** `PgStoreOptions` as this package's own code may give them. */
export interface InternalOptions {
	readonly [tableName]?: string;
	readonly [writeTurn]?: WriteTurn;
}
