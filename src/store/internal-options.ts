// Options of the store that only this package's own code gives, kept out of `PgStoreOptions`:
// a symbol key is invisible to apps, to option validation and to JSON.

/** The CLI's `--table`: the name of the session table, for a model renamed with `@@map`. */
export const tableName: unique symbol = Symbol('koa-pgstore: table name');

/** `PgStoreOptions` as this package's own code may give them. */
export interface InternalOptions {
	readonly [tableName]?: string;
}
