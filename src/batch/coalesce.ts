import DataLoader from 'dataloader';

/** Most operations one coalesced statement carries; more wait for the next statement. */
export const maxBatchSize = 500;

/**
 * How long a batch waits for the one in flight before it goes beside it: a statement slow for
 * one user's reason (a row locked by another transaction, a large session)
 * delays the next batch of everyone else by at most this.
 */
export const turnWaitMillis = 5;

/**
 * The batching policy of reads and writes alike: calls made until the end of this turn of the
 * event loop share one batch. Requests arrive in separate I/O callbacks; waiting for
 * `setImmediate` (rather than DataLoader's default, the end of the current job) lets the calls of
 * all of them share one statement. Nothing is cached: every call reaches the database.
 *
 * A batch that would start while an earlier one is in flight waits for it to settle (at most
 * `turnWaitMillis`), and takes every call made meanwhile: when the database is busy, the calls
 * that arrive during one statement share the next, so a busy database runs fewer, larger
 * statements rather than one for each turn of the event loop (the cost of a statement is mostly
 * per statement, not per row: bench/NOTES.md). An idle database gets every batch at once.
 */
export function coalesce<Key, Value>(batch: (keys: readonly Key[]) => Promise<readonly (Value | Error)[]>): DataLoader<Key, Value> {
	let inFlight = 0;
	// Batches waiting for their turn, oldest first: each is started once, by its timer or by a
	// batch that settles.
	const waiting = new Map<() => void, NodeJS.Timeout>();
	const schedule = (dispatch: () => void) => {
		if (inFlight === 0) {
			inFlight++;
			dispatch();
			return;
		}
		waiting.set(dispatch, setTimeout(() => {
			waiting.delete(dispatch);
			inFlight++;
			dispatch();
		}, turnWaitMillis));
	};
	return new DataLoader(async (keys: readonly Key[]) => {
		try {
			return await batch(keys);
		} finally {
			const [next] = waiting;
			if (next === undefined) {
				inFlight--;
			} else {
				// The turn passes to the oldest batch waiting, which takes this turn's calls too:
				// started at once, it would leave out those of the I/O callbacks still to run.
				const [dispatch, overdue] = next;
				clearTimeout(overdue);
				waiting.delete(dispatch);
				setImmediate(dispatch);
			}
		}
	}, {
		cache: false,
		maxBatchSize,
		batchScheduleFn: (dispatch) => setImmediate(() => schedule(dispatch)),
	});
}
