// The defaults of every option, in one place that imports nothing, so that any module can use
// them without an import circle.

/** `cleanupInterval` and `startCleanup({ interval })`: five minutes, as both Go pgstores. */
export const defaultCleanupInterval = 300_000;

/** `batchSize` of a sweep: rows per DELETE. */
export const defaultBatchSize = 1000;

/** `lockWait` of a sweep: how long it keeps trying for expired rows other transactions hold. */
export const defaultLockWait = 60_000;

/** `maxLength`: bytes of a session's JSON. */
export const defaultMaxLength = 4096;

/** `sessionTtl`: one day. */
export const defaultSessionTtl = 86_400_000;

/**
 * `touchAfter`: a minute. Every save would otherwise rewrite the indexed `expires_on` column (with
 * `rolling: true`, every request), which PostgreSQL cannot update in place (no HOT update), so the
 * table and its indexes bloat (measured in `bench/bloat.ts`).
 */
export const defaultTouchAfter = 60_000;

/** `list(subject, { limit })`: sessions listed at most, enough for any "your devices" page. */
export const defaultListLimit = 50;
