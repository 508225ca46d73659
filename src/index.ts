export { PgStore, type GetOptions, type SetOptions, type DestroyOptions, type StoreStatus } from './store/store.js';
export type { SessionData } from './codec/session-codec.js';
export type { ListedSession, SessionList, SessionListing } from './store/subjects.js';
export type { PgStoreOptions } from './store/options.js';
export type { PgStorePrismaClient, PoolOptions } from './driver/prisma-client.js';
export type { Cleanup, CleanupOptions, CleanupSchedule } from './maintenance/schedule.js';
export type { CleanupReport, SweepOptions } from './maintenance/sweep.js';
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
	SessionUnreadableError,
	type UnreadableReason,
	CleanupBlockedError,
	type DatabaseFailure,
} from './base/errors.js';
export type { KoaSession, SessionFields } from './store/koa-types.js';
export { createKeys, type CreateKeysOptions, type HmacAlgorithm } from './keys/keys.js';
export { reissueOnRotation, type ReissueOptions } from './keys/rotation.js';
export { sessionFunctionsMigration } from './maintenance/function-migration.js';
