import { debug } from '../base/debug.js';
import { defaultBatchSize, defaultLockWait } from '../base/defaults.js';
import { integerAtLeast } from '../base/validate.js';
import type { Driver } from '../driver/driver.js';
import type { SweepStatements } from '../sql/sweep-statements.js';

/** What one sweep did. */
export interface CleanupReport {
	/** Expired rows deleted. */
	readonly deleted: number;
	/** DELETE statements run (each removes at most `batchSize` rows). */
	readonly batches: number;
	/** Wall-clock duration of the sweep in milliseconds. */
	readonly ms: number;
	/**
	 * `true` when the sweep ended with expired rows left that other transactions held (row locks)
	 * for all of `lockWait`: those rows remain until a later sweep. Sweeps never wait for one
	 * another: each skips the rows another holds, and tries those again every 250 ms.
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
	 * Milliseconds to keep trying (every 250 ms) for expired rows other transactions hold (another
	 * sweep's batch, a request ending a session), so that a sweep deletes every expired row rather
	 * than stopping halfway; then it ends with `skipped: true`.
	 * @default 60_000
	 */
	lockWait?: number;
}

/**
 * One sweep: deletes sessions expired by PostgreSQL's clock, in batches of `batchSize` rows,
 * until none are left or `signal` aborts. Each batch is one short transaction that skips the rows
 * other transactions hold, so any number of instances may sweep one table at once, each deleting
 * rows no other takes; what was held is tried again until `lockWait` has passed. Needs no session
 * state on the connection, so it works behind PgBouncer's transaction pooling.
 *
 * No lock but the rows' own is taken: a role without a grant on the table cannot hold any of
 * them, so it cannot stop a sweep (an advisory lock, which any login may take, could).
 *
 * @param scheduled A scheduled sweep never keeps the process alive; an awaited one
 * (`store.cleanup()`) keeps it alive until it is done.
 */
export async function sweepExpired(
	driver: Driver,
	statements: SweepStatements,
	options: SweepOptions,
	{ scheduled }: { scheduled: boolean },
): Promise<CleanupReport> {
	const batchSize = integerAtLeast('batchSize', options.batchSize, 1, defaultBatchSize);
	const fixedPause = options.pause === undefined ? undefined : integerAtLeast('pause', options.pause, 0, 0);
	const lockWait = integerAtLeast('lockWait', options.lockWait, 0, defaultLockWait);
	const started = performance.now();
	let deleted = 0;
	let batches = 0;
	let heldSince: number | undefined;
	while (options.signal?.aborted !== true) {
		const batchStarted = performance.now();
		const batch = await deleteBatch(driver, statements, batchSize);
		batches += 1;
		deleted += batch.deleted;
		debug('sweep batch %d: %d rows deleted', batches, batch.deleted);
		if (batch.deleted < batchSize && !batch.held) {
			break;
		}
		if (batch.deleted < batchSize) {
			// Every row it could take is gone; others hold the rest. Another sweep's batch or a
			// request lets go within moments; a row held past `lockWait` is reported as skipped.
			heldSince ??= batchStarted;
			if (performance.now() - heldSince >= lockWait) {
				debug('sweep ended with expired rows that other transactions hold');
				return { deleted, batches, ms: performance.now() - started, skipped: true };
			}
			await pauseFor(heldRetryInterval, options.signal, { keepAlive: !scheduled });
			continue;
		}
		heldSince = undefined;
		// By default a sweep rests twice as long as each batch took: it keeps at most a third of
		// one connection busy (its effect on reads during a sweep: docs/performance.md).
		// A sweep someone awaits (a cron script's `await store.cleanup()`) keeps the process alive
		// through its pauses; a scheduled one never does.
		await pauseFor(fixedPause ?? 2 * (performance.now() - batchStarted), options.signal, { keepAlive: !scheduled });
	}
	return { deleted, batches, ms: performance.now() - started, skipped: false };
}

const heldRetryInterval = 250;

// One batch in its own transaction, under the sweep's statement bound.
async function deleteBatch(driver: Driver, statements: SweepStatements, limit: number): Promise<{ deleted: number; held: boolean }> {
	return driver.transaction('cleanup', 'sweep', async (transaction) => {
		const [result] = await transaction.query(statements.deleteExpired({ limit })) as [{ deleted: number; held: boolean }?];
		return { deleted: result?.deleted ?? 0, held: result?.held === true };
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
