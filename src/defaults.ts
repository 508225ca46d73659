// The defaults of every option, in one place that imports nothing, so that any module can use
// them without an import circle.

/** `cleanupInterval` and `startCleanup({ interval })`: five minutes, as both Go pgstores. */
export const defaultCleanupInterval = 300_000;

/** `batchSize` of a sweep: rows per DELETE. */
export const defaultBatchSize = 1000;

/** `maxLength`: bytes of a session's JSON. */
export const defaultMaxLength = 4096;

/** `sessionTtl`: one day. */
export const defaultSessionTtl = 86_400_000;

/** `touchAfter`: every save is written. */
export const defaultTouchAfter = 0;
