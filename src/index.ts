export { PgStore, type SessionData, type SessionListing, type GetOptions, type SetOptions, type DestroyOptions } from './store.js';
export type { PgStoreOptions, ErrorContext } from './options.js';
export type { PgStorePrismaClient, PGSessionDelegate, RawSqlClient, TransactionClient, PoolOptions } from './prisma-client.js';
export type { Cleanup, CleanupOptions, CleanupReport, SweepOptions } from './cleanup.js';
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
export { createKeys } from './keys.js';
export { reissueOnRotation, type ReissueOptions } from './rotation.js';
