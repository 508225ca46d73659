export { PgStore, type SessionData, type GetOptions, type SetOptions, type DestroyOptions } from './store.js';
export type { PgStoreOptions, ErrorContext } from './options.js';
export type { PgStorePrismaClient, PGSessionDelegate, RawSqlClient, PoolOptions, SessionJson, JsonValue } from './prisma-client.js';
export {
	PgStoreError,
	SessionTooLargeError,
	InvalidSessionError,
	DatabaseError,
	StoreClosedError,
	isPgStoreError,
	type PgStoreErrorCode,
	type StoreOperation,
} from './errors.js';
export { digestKey } from './key-digest.js';
export type { KoaSession, SessionFields } from './koa.js';
