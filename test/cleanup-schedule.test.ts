import { getEventListeners } from 'node:events';
import FakeTimers from '@sinonjs/fake-timers';
import anyTest, { type TestFn } from 'ava';
import { CleanupBlockedError } from '../src/base/errors.js';
import { scheduleCleanup } from '../src/maintenance/schedule.js';

// Timing only: the sweep here is a stand-in that runs no SQL (test/cleanup.test.ts runs real
// sweeps on PostgreSQL). The fake clock replaces the timers of this test process.
const test = anyTest as TestFn<{ clock: ReturnType<typeof FakeTimers.install> }>;

test.beforeEach((t) => {
	t.context.clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
});
test.afterEach.always((t) => {
	t.context.clock.uninstall();
});

const interval = 60_000;
const failOnError = (error: Error) => {
	throw error;
};

function deferred() {
	let resolve = () => {};
	const promise = new Promise<void>((done) => { resolve = done; });
	return { promise, resolve };
}

test.serial('the first sweep comes within one interval, then one every interval', async (t) => {
	let sweeps = 0;
	const schedule = scheduleCleanup({ interval, signal: undefined, onError: failOnError, sweep: async () => { sweeps += 1; } });
	t.is(sweeps, 0, 'nothing runs at once');
	await t.context.clock.tickAsync(interval);
	t.is(sweeps, 1);
	await t.context.clock.tickAsync(interval);
	t.is(sweeps, 2);
	await t.context.clock.tickAsync(10 * interval);
	t.is(sweeps, 12);
	await schedule.stop();
	await t.context.clock.tickAsync(10 * interval);
	t.is(sweeps, 12, 'no sweep after stop()');
});

test.serial('a tick while a sweep runs does nothing', async (t) => {
	let started = 0;
	const slow = deferred();
	const schedule = scheduleCleanup({
		interval,
		signal: undefined,
		onError: failOnError,
		sweep: async () => {
			started += 1;
			await slow.promise;
		},
	});
	await t.context.clock.tickAsync(5 * interval);
	t.is(started, 1, 'four ticks passed during the running sweep');
	slow.resolve();
	await t.context.clock.tickAsync(interval);
	t.is(started, 2);
	await schedule.stop();
});

test.serial('stop() waits for the sweep in flight, tells it to stop, and returns the same promise', async (t) => {
	const finish = deferred();
	let sweepSignal: AbortSignal | undefined;
	let finished = false;
	const schedule = scheduleCleanup({
		interval,
		signal: undefined,
		onError: failOnError,
		sweep: async (signal) => {
			sweepSignal = signal;
			await finish.promise;
			finished = true;
		},
	});
	await t.context.clock.tickAsync(interval);
	const stopping = schedule.stop();
	t.is(schedule.stop(), stopping);
	t.true(sweepSignal?.aborted, 'the sweep is told to stop after its batch');
	let stopped = false;
	void stopping.then(() => { stopped = true; });
	await t.context.clock.tickAsync(0);
	t.false(stopped, 'stop() waits for the sweep');
	finish.resolve();
	await stopping;
	t.true(finished);
});

test.serial('aborting the caller\'s signal stops the schedule and leaves no listener', async (t) => {
	const controller = new AbortController();
	let sweeps = 0;
	const schedule = scheduleCleanup({ interval, signal: controller.signal, onError: failOnError, sweep: async () => { sweeps += 1; } });
	t.is(getEventListeners(controller.signal, 'abort').length, 1);
	await t.context.clock.tickAsync(interval);
	controller.abort();
	await schedule.stop();
	await t.context.clock.tickAsync(10 * interval);
	t.is(sweeps, 1);
	t.is(getEventListeners(controller.signal, 'abort').length, 0);

	const other = new AbortController();
	const stoppedFirst = scheduleCleanup({ interval, signal: other.signal, onError: failOnError, sweep: async () => {} });
	await stoppedFirst.stop();
	t.is(getEventListeners(other.signal, 'abort').length, 0, 'stop() removes the listener too');
});

test.serial('an already aborted signal starts nothing', async (t) => {
	let sweeps = 0;
	const schedule = scheduleCleanup({ interval, signal: AbortSignal.abort(), onError: failOnError, sweep: async () => { sweeps += 1; } });
	await t.context.clock.tickAsync(10 * interval);
	t.is(sweeps, 0);
	await t.notThrowsAsync(schedule.stop());
});

test.serial('a failed sweep goes to onError and the next tick sweeps again', async (t) => {
	const errors: [Error, unknown][] = [];
	let sweeps = 0;
	const schedule = scheduleCleanup({
		interval,
		signal: undefined,
		onError: (error, context) => { errors.push([error, context]); },
		sweep: async () => {
			sweeps += 1;
			if (sweeps === 1) {
				throw new Error('database unavailable');
			}
		},
	});
	await t.context.clock.tickAsync(2 * interval);
	t.is(sweeps, 2);
	t.is(errors.length, 1);
	t.is(errors[0]?.[0].message, 'database unavailable');
	t.deepEqual(errors[0]?.[1], { source: 'cleanup' });
	await schedule.stop();
});

test.serial('a sweep skipped once is not reported; from the second skipped in a row each is, and a sweep that is not skipped starts the count again', async (t) => {
	const outcomes = [true, false, true, true, true, false, true, false];
	const reported: [Error, unknown][] = [];
	let sweeps = 0;
	const schedule = scheduleCleanup({
		interval,
		signal: undefined,
		onError: (error, context) => { reported.push([error, context]); },
		sweep: async () => ({ skipped: outcomes[sweeps++] ?? false }),
	});
	await t.context.clock.tickAsync(outcomes.length * interval);
	await schedule.stop();
	t.is(sweeps, outcomes.length);
	t.true(reported.every(([error]) => error instanceof CleanupBlockedError));
	t.deepEqual(reported.map(([error, context]) => [(error as CleanupBlockedError).sweeps, context]), [[2, { source: 'cleanup' }], [3, { source: 'cleanup' }]]);
});

test.serial('a sweep ended by stop() is not counted as skipped', async (t) => {
	const reported: Error[] = [];
	let sweeps = 0;
	let stopping: Promise<void> | undefined;
	const schedule = scheduleCleanup({
		interval,
		signal: undefined,
		onError: (error) => { reported.push(error); },
		sweep: async () => {
			sweeps += 1;
			if (sweeps === 2) {
				stopping = schedule.stop();
			}
			return { skipped: true };
		},
	});
	await t.context.clock.tickAsync(3 * interval);
	await stopping;
	t.is(sweeps, 2);
	t.deepEqual(reported, []);
});

test.serial('an onError that throws does not become an unhandled rejection', async (t) => {
	const unhandled: unknown[] = [];
	const onUnhandled = (reason: unknown) => { unhandled.push(reason); };
	process.on('unhandledRejection', onUnhandled);
	t.teardown(() => { process.off('unhandledRejection', onUnhandled); });
	const originalConsoleError = console.error;
	const logged: unknown[][] = [];
	console.error = (...args: unknown[]) => { logged.push(args); };
	t.teardown(() => { console.error = originalConsoleError; });
	const schedule = scheduleCleanup({
		interval,
		signal: undefined,
		onError: () => { throw new Error('handler bug'); },
		sweep: async () => { throw new Error('sweep failed'); },
	});
	await t.context.clock.tickAsync(2 * interval);
	await schedule.stop();
	await new Promise((resolve) => setImmediate(resolve));
	t.deepEqual(unhandled, []);
	t.is(logged.length, 2, 'each failure of onError is still reported');
});

test.serial('100 schedules stop in parallel', async (t) => {
	let sweeps = 0;
	const schedules = Array.from({ length: 100 }, () => scheduleCleanup({
		interval, signal: undefined, onError: failOnError, sweep: async () => { sweeps += 1; },
	}));
	await t.context.clock.tickAsync(interval);
	t.is(sweeps, 100);
	await Promise.all(schedules.map((schedule) => schedule.stop()));
	await t.context.clock.tickAsync(10 * interval);
	t.is(sweeps, 100);
});
