import DataLoader from 'dataloader';

/** Most operations one coalesced statement carries; more wait for the next statement. */
export const maxBatchSize = 500;

/**
 * How long a batch waits for the one in flight before it goes beside it: a statement slow for
 * one user's reason (a row locked by another transaction, a large session) delays the next batch
 * of everyone else by at most this.
 */
export const turnWaitMillis = 5;

/** Calls coalesced into batches (see `coalesce`). */
export interface Coalesced<Key, Value> {
	load(key: Key): Promise<Value>;
	/** Resolves once no batch waits and none is in flight: every call made so far has settled. */
	drain(): Promise<void>;
}

/**
 * The batching policy of reads and writes alike: calls made until the end of this turn of the
 * event loop share one batch. Requests arrive in separate I/O callbacks; waiting for
 * `setImmediate` (rather than DataLoader's default, the end of the current job) lets the calls of
 * all of them share one statement. Nothing is cached: every call reaches the database.
 *
 * A batch that would start while an earlier one is in flight waits for it to settle (at most
 * `waitMillis`), and takes every call made meanwhile: when the database is busy, the calls
 * that arrive during one statement share the next, so a busy database runs fewer, larger
 * statements rather than one for each turn of the event loop (the cost of a statement is mostly
 * per statement, not per row: bench/NOTES.md). A batch with none in flight goes at once.
 */
export function coalesce<Key, Value>(
	batch: (keys: readonly Key[]) => Promise<readonly (Value | Error)[]>,
	waitMillis = turnWaitMillis,
): Coalesced<Key, Value> {
	// Batches started and not settled, including one handed the turn and about to start.
	let inFlight = 0;
	// Batches DataLoader scheduled whose turn of the event loop has not ended yet.
	let scheduled = 0;
	const running = new Set<Promise<unknown>>();
	// Batches waiting for their turn, oldest first: each is started once, by its timer, by a batch
	// that settles, or by `drain`.
	const waiting = new Map<() => void, NodeJS.Timeout>();
	const stopWaiting = (dispatch: () => void) => {
		clearTimeout(waiting.get(dispatch));
		waiting.delete(dispatch);
	};
	const startWaiting = (dispatch: () => void) => {
		stopWaiting(dispatch);
		inFlight++;
		dispatch();
	};
	const schedule = (dispatch: () => void) => {
		scheduled--;
		if (inFlight === 0) {
			inFlight++;
			dispatch();
			return;
		}
		waiting.set(dispatch, setTimeout(() => startWaiting(dispatch), waitMillis));
	};
	// DataLoader calls this for every batch with at least one key (with `cache: false` there is no
	// batch without), so each start is matched by one settle below.
	const loader = new DataLoader(async (keys: readonly Key[]) => {
		// An async function's promise: a batch that throws as it is called settles like one that rejects.
		const work = (async () => batch(keys))();
		running.add(work);
		try {
			return await work;
		} finally {
			running.delete(work);
			const [next] = waiting.keys();
			if (next === undefined) {
				inFlight--;
			} else {
				// The turn (and its count in `inFlight`) passes to the oldest batch waiting, which
				// takes this turn's calls too: started at once, it would leave out those of the I/O
				// callbacks still to run.
				stopWaiting(next);
				setImmediate(next);
			}
		}
	}, {
		cache: false,
		maxBatchSize,
		batchScheduleFn: (dispatch) => {
			scheduled++;
			setImmediate(() => schedule(dispatch));
		},
	});
	return {
		load: (key) => loader.load(key),
		async drain() {
			for (;;) {
				// Calls of this turn (a deferred delete's, say) reach `schedule` first.
				await new Promise((resolve) => setImmediate(resolve));
				for (const dispatch of [...waiting.keys()]) {
					startWaiting(dispatch);
				}
				if (scheduled === 0 && inFlight === 0) {
					return;
				}
				await Promise.allSettled(running);
			}
		},
	};
}
