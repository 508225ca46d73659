import DataLoader from 'dataloader';

/** Most operations one coalesced statement carries; more wait for the next statement. */
export const maxBatchSize = 500;

/**
 * The batching policy of reads and writes alike: calls made until the end of this turn of the
 * event loop share one batch. Requests arrive in separate I/O callbacks; waiting for
 * `setImmediate` (rather than DataLoader's default, the end of the current job) lets the calls of
 * all of them share one statement. Nothing is cached: every call reaches the database.
 */
export function coalesce<Key, Value>(batch: (keys: readonly Key[]) => Promise<readonly (Value | Error)[]>): DataLoader<Key, Value> {
	return new DataLoader(batch, {
		cache: false,
		maxBatchSize,
		batchScheduleFn: (callback) => setImmediate(callback),
	});
}
