import { debug } from '../base/debug.js';
import { defaultBatchSize, defaultLockWait } from '../base/defaults.js';
import { integerAtLeast } from '../base/validate.js';
import type { Driver } from '../driver/driver.js';
import type { SessionStatements } from '../sql/statements.js';

/** What one sweep did. */
export interface CleanupReport {
	/** Expired rows deleted. */
	readonly deleted: number;
	/** DELETE statements run (each removes at most `batchSize` rows). */
	readonly batches: number;
	/** Wall-clock duration of the sweep in milliseconds. */
	readonly ms: number;
	/**
	 * `true` when another instance held the sweep lock: a scheduled sweep leaves it the turn at
	 * once; `store.cleanup()` waits for it up to `lockWait` first. Expired rows may remain.
	 */
	readonly skipped: boolean;
}

/** Options of one sweep, `store.cleanup()`. */
export interface SweepOptions {
	/**
	 * Rows per DELETE statement. Smaller batches hold locks for less time.
	 * @default 1000
	 */
	batchSize?: number;
	/**
	 * Milliseconds to wait between batches, leaving the database to the app's own queries.
	 * @default twice as long as the previous batch took, so a sweep keeps at most a third of
	 * one connection busy
	 */
	pause?: number;
	/** Ends the sweep after the batch in flight. */
	signal?: AbortSignal;
	/**
	 * With `store.cleanup()`: milliseconds to keep trying for the sweep lock while another instance
	 * holds it (every 250 ms), so that an awaited sweep deletes every expired row rather than
	 * stopping halfway. Scheduled sweeps never wait: they skip their turn.
	 * @default 60_000
	 */
	lockWait?: number;
}

/**
 * One sweep: deletes sessions expired by PostgreSQL's clock, in batches of `batchSize` rows,
 * until none are left or `signal` aborts. Each batch is one short transaction holding an advisory
 * lock, so of many instances sharing a database only one deletes at a time. Needs no session
 * state on the connection, so it works behind PgBouncer's transaction pooling.
 *
 * @param scheduled A scheduled sweep skips its turn when the lock is taken and never keeps the
 * process alive; an awaited one (`store.cleanup()`) waits up to `lockWait` for the lock and keeps
 * the process alive until it is done.
 */
export async function sweepExpired(
	driver: Driver,
	statements: Pick<SessionStatements, 'lockSweep' | 'deleteExpired'>,
	options: SweepOptions,
	{ scheduled }: { scheduled: boolean },
): Promise<CleanupReport> {
	const batchSize = integerAtLeast('batchSize', options.batchSize, 1, defaultBatchSize);
	const fixedPause = options.pause === undefined ? undefined : integerAtLeast('pause', options.pause, 0, 0);
	const lockWait = scheduled ? 0 : integerAtLeast('lockWait', options.lockWait, 0, defaultLockWait);
	const started = performance.now();
	let deleted = 0;
	let batches = 0;
	let lockWanted: number | undefined;
	while (options.signal?.aborted !== true) {
		const batchStarted = performance.now();
		const count = await deleteBatch(driver, statements, batchSize);
		if (count === undefined) {
			lockWanted ??= performance.now();
			if (performance.now() - lockWanted >= lockWait) {
				debug('sweep skipped: another instance holds the sweep lock');
				return { deleted, batches, ms: performance.now() - started, skipped: true };
			}
			await pauseFor(lockRetryInterval, options.signal, { keepAlive: !scheduled });
			continue;
		}
		lockWanted = undefined;
		batches += 1;
		deleted += count;
		debug('sweep batch %d: %d rows deleted', batches, count);
		if (count < batchSize) {
			break;
		}
		// By default a sweep rests twice as long as each batch took: it keeps at most a third of
		// one connection busy (its effect on reads during a sweep: docs/performance.md).
		// A sweep someone awaits (a cron script's `await store.cleanup()`) keeps the process alive
		// through its pauses; a scheduled one never does.
		await pauseFor(fixedPause ?? 2 * (performance.now() - batchStarted), options.signal, { keepAlive: !scheduled });
	}
	return { deleted, batches, ms: performance.now() - started, skipped: false };
}

const lockRetryInterval = 250;

// One batch in its own transaction: the rows deleted, or `undefined` when another instance holds
// the sweep lock.
async function deleteBatch(driver: Driver, statements: Pick<SessionStatements, 'lockSweep' | 'deleteExpired'>, limit: number): Promise<number | undefined> {
	return driver.transaction('cleanup', 'sweep', async (transaction) => {
		const [lock] = await transaction.query(statements.lockSweep()) as [{ locked: boolean }?];
		if (lock?.locked !== true) {
			return undefined;
		}
		const [result] = await transaction.query(statements.deleteExpired({ limit })) as [{ deleted: number }?];
		return result?.deleted ?? 0;
	});
}

/** Waits `ms`, or less if `signal` aborts first; keeps the process alive only with `keepAlive`. */
function pauseFor(ms: number, signal: AbortSignal | undefined, { keepAlive }: { keepAlive: boolean }): Promise<void> {
	return new Promise((resolve) => {
		// An abort during the batch before the pause ends the pause before it starts.
		if (signal?.aborted === true) {
			resolve();
			return;
		}
		const done = () => {
			clearTimeout(timer);
			signal?.removeEventListener('abort', done);
			resolve();
		};
		const timer = setTimeout(done, ms);
		if (!keepAlive) {
			timer.unref();
		}
		signal?.addEventListener('abort', done, { once: true });
	});
}
