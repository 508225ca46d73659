export { PgStore, type GetOptions, type SetOptions, type DestroyOptions } from './store.js';
export type { SessionData } from './session-codec.js';
export type { SessionList, SessionListing } from './subjects.js';
export type { PgStoreOptions } from './options.js';
export type { PgStorePrismaClient, PoolOptions } from './prisma-client.js';
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
	type ErrorContext,
	type ErrorHandler,
	type DatabaseErrorCause,
	SessionEndedError,
	SchemaMismatchError,
	SessionTamperedError,
	type TamperReason,
	type DatabaseFailure,
} from './errors.js';
export type { KoaSession, SessionFields } from './koa.js';
export { createKeys, type CreateKeysOptions, type HmacAlgorithm } from './keys.js';
export { reissueOnRotation, type ReissueOptions } from './rotation.js';
