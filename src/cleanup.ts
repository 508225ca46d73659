import type { ErrorContext } from './options.js';

/** What one sweep did. */
export interface CleanupReport {
	/** Expired rows deleted. */
	readonly deleted: number;
	/** DELETE statements run (each removes at most `batchSize` rows). */
	readonly batches: number;
	/** Wall-clock duration of the sweep in milliseconds. */
	readonly ms: number;
	/** `true` when another instance was sweeping the same database, so this one left it the turn. */
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
}

/** Options of `store.startCleanup()`. */
export interface CleanupOptions extends SweepOptions {
	/**
	 * Milliseconds between sweeps; the first comes after a random part of it, so that instances
	 * started together do not sweep together. `0` starts nothing.
	 * @default 300_000 (five minutes, as both Go pgstores)
	 */
	interval?: number;
	/**
	 * Stops the schedule when aborted, as `stop()` does.
	 */
	signal?: AbortSignal;
	/**
	 * Receives a failed sweep's error; the schedule goes on and the next tick tries again.
	 * @default the store's `onError`
	 */
	onError?: (error: Error, context: ErrorContext) => void;
}

/** A running cleanup schedule. */
export interface Cleanup {
	/**
	 * Stops the schedule. Resolves once a sweep in flight has finished (it stops after its
	 * current batch). Calling it again returns the same promise.
	 */
	stop(): Promise<void>;
}

export const defaultCleanupInterval = 300_000;
export const defaultBatchSize = 1000;

/**
 * Runs `sweep` every `interval` ms (first after a random delay within it) on `setInterval`,
 * never two at once: a tick while a sweep runs does nothing. The timers are unref()ed, so a
 * schedule never keeps a process alive.
 */
export function scheduleCleanup({ interval, sweep, signal, onError }: {
	interval: number;
	sweep: (signal: AbortSignal) => Promise<unknown>;
	signal: AbortSignal | undefined;
	onError: (error: Error, context: ErrorContext) => void;
}): Cleanup {
	const controller = new AbortController();
	let inFlight: Promise<void> | undefined;
	let repeat: NodeJS.Timeout | undefined;
	let stopping: Promise<void> | undefined;

	const report = (error: unknown) => {
		try {
			onError(error instanceof Error ? error : new Error(String(error)), { source: 'cleanup' });
		} catch (handlerError) {
			// An onError that throws must not become an unhandled rejection in a timer.
			console.error('koa-pgstore: cleanup: onError threw', handlerError);
		}
	};
	const tick = () => {
		if (inFlight !== undefined || controller.signal.aborted) {
			return;
		}
		inFlight = sweep(controller.signal).then(() => undefined, report).finally(() => {
			inFlight = undefined;
		});
	};
	const first = setTimeout(() => {
		tick();
		repeat = setInterval(tick, interval);
		repeat.unref();
	}, Math.floor(Math.random() * interval));
	first.unref();

	const stop = (): Promise<void> => {
		stopping ??= (async () => {
			controller.abort();
			clearTimeout(first);
			clearInterval(repeat);
			signal?.removeEventListener('abort', onAbort);
			await inFlight;
		})();
		return stopping;
	};
	const onAbort = () => {
		void stop();
	};
	if (signal?.aborted) {
		void stop();
	} else {
		signal?.addEventListener('abort', onAbort, { once: true });
	}
	return { stop };
}

/** Waits `ms`, or less if `signal` aborts first; never keeps the process alive. */
export function pauseFor(ms: number, signal: AbortSignal | undefined): Promise<void> {
	return new Promise((resolve) => {
		const done = () => {
			clearTimeout(timer);
			signal?.removeEventListener('abort', done);
			resolve();
		};
		const timer = setTimeout(done, ms);
		timer.unref();
		signal?.addEventListener('abort', done, { once: true });
	});
}
