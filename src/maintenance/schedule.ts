import { debug } from '../base/debug.js';
import { defaultBatchSize, defaultCleanupInterval, defaultLockWait } from '../base/defaults.js';
import { CleanupBlockedError, type ErrorHandler } from '../base/errors.js';
import { integerAtLeast, invalid } from '../base/validate.js';
import type { SweepOptions } from './sweep.js';

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
	 * Receives a failed sweep's error, and a `CleanupBlockedError` for each sweep from the second
	 * in a row that ended with expired rows other transactions held (`skipped`); the schedule goes
	 * on and the next tick tries again.
	 * @default the store's `onError`
	 */
	onError?: ErrorHandler;
}

// A sweep already waited `lockWait` for the rows it skipped before it counts as skipped; the
// second such sweep in a row, an interval later, means something holds them for good.
const reportedFromSkip = 2;

/** A running cleanup schedule (`startCleanup()`); `store.cleanup()` is one sweep. */
export interface CleanupSchedule {
	/**
	 * Stops the schedule. Resolves once a sweep in flight has finished (it stops after its
	 * current batch). Calling it again returns the same promise.
	 */
	stop(): Promise<void>;
}

/** @deprecated Renamed {@link CleanupSchedule}: a schedule, not a sweep. */
export type Cleanup = CleanupSchedule;

/**
 * Validates `startCleanup()`'s options and starts the schedule; `interval: 0` starts nothing.
 * @param sweep One sweep with the schedule's options and a signal that ends it on `stop()`.
 */
export function startSchedule(
	options: CleanupOptions,
	defaultOnError: ErrorHandler,
	sweep: (options: SweepOptions) => Promise<{ readonly skipped: boolean }>,
): CleanupSchedule {
	const interval = integerAtLeast('interval', options.interval, 0, defaultCleanupInterval);
	const batchSize = integerAtLeast('batchSize', options.batchSize, 1, defaultBatchSize);
	const pause = options.pause === undefined ? undefined : integerAtLeast('pause', options.pause, 0, 0);
	const lockWait = integerAtLeast('lockWait', options.lockWait, 0, defaultLockWait);
	const { signal, onError = defaultOnError } = options;
	if (signal !== undefined && !(signal instanceof AbortSignal)) {
		invalid('signal', 'an AbortSignal', signal);
	}
	if (typeof onError !== 'function') {
		invalid('onError', 'a function', onError);
	}
	if (interval === 0) {
		return { stop: () => Promise.resolve() };
	}
	return scheduleCleanup({
		interval,
		signal,
		onError,
		sweep: (stopSignal) => sweep({ batchSize, lockWait, signal: stopSignal, ...pause === undefined ? {} : { pause } }),
	});
}

/**
 * Runs `sweep` every `interval` ms (first after a random delay within it) on `setInterval`,
 * never two at once: a tick while a sweep runs does nothing. The timers are unref()ed, so a
 * schedule never keeps a process alive. From the second sweep in a row that was `skipped`, each
 * one is reported to `onError` as a `CleanupBlockedError`.
 */
export function scheduleCleanup({ interval, sweep, signal, onError }: {
	interval: number;
	/** Resolves to the sweep's report (`undefined` counts as a sweep that was not skipped). */
	sweep: (signal: AbortSignal) => Promise<{ readonly skipped: boolean } | undefined | void>;
	signal: AbortSignal | undefined;
	onError: ErrorHandler;
}): CleanupSchedule {
	const controller = new AbortController();
	let inFlight: Promise<void> | undefined;
	let repeat: NodeJS.Timeout | undefined;
	let stopping: Promise<void> | undefined;
	let skippedInARow = 0;

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
			if (inFlight !== undefined) {
				debug('sweep not started: the previous one is still running');
			}
			return;
		}
		inFlight = sweep(controller.signal).then((result) => {
			// A sweep stopped by stop() says nothing of the rows.
			if (controller.signal.aborted) {
				return;
			}
			skippedInARow = result?.skipped === true ? skippedInARow + 1 : 0;
			if (skippedInARow >= reportedFromSkip) {
				report(new CleanupBlockedError(skippedInARow));
			}
		}, report).finally(() => {
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
