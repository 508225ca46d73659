import test from 'ava';
import { coalesce, turnWaitMillis } from '../../src/batch/coalesce.js';

// The batching policy, without a database: which calls share a batch, and when a batch starts.
// A batch here is a promise the test settles, standing for a statement in flight.

interface Started {
	readonly keys: readonly number[];
	finish(): void;
}

// Long enough that no batch goes on its timer in a test about something else, however loaded the machine.
const never = 60_000;

function recorder(waitMillis = never) {
	const started: Started[] = [];
	const changed: (() => void)[] = [];
	const loader = coalesce<number, number>((keys) => new Promise((resolve) => {
		started.push({ keys, finish: () => resolve(keys) });
		for (const wake of changed.splice(0)) {
			wake();
		}
	}), waitMillis);
	// Resolves once `count` batches have started.
	const startedCount = (count: number): Promise<void> => (started.length >= count
		? Promise.resolve()
		: new Promise((resolve) => {
			const check = () => (started.length >= count ? resolve() : changed.push(check));
			changed.push(check);
		}));
	return { loader, started, startedCount };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

test('with nothing in flight, the calls of one turn start as one batch at the end of that turn', async (t) => {
	const { loader, started, startedCount } = recorder();
	const results = [loader.load(1), loader.load(2), loader.load(3)];
	t.is(started.length, 0, 'not before the turn ends');
	await startedCount(1);
	t.deepEqual(started.map((batch) => batch.keys), [[1, 2, 3]]);
	started[0]!.finish();
	t.deepEqual(await Promise.all(results), [1, 2, 3]);
});

test('calls made in several turns while a batch is in flight wait for it, then share one batch', async (t) => {
	const { loader, started, startedCount } = recorder();
	const first = loader.load(1);
	await startedCount(1);
	const later = [loader.load(2)];
	await turn();
	later.push(loader.load(3));
	await turn();
	later.push(loader.load(4));
	await turn();
	t.is(started.length, 1, 'the later calls wait while the first batch is in flight');
	started[0]!.finish();
	await first;
	await startedCount(2);
	t.deepEqual(started.map((batch) => batch.keys), [[1], [2, 3, 4]]);
	started[1]!.finish();
	t.deepEqual(await Promise.all(later), [2, 3, 4]);
});

test(`by default a batch waits at most ${turnWaitMillis} ms for the one in flight, then goes beside it`, async (t) => {
	const { loader, started, startedCount } = recorder(turnWaitMillis);
	void loader.load(1);
	await startedCount(1);
	const waitedFrom = performance.now();
	const second = loader.load(2);
	await startedCount(2);
	const waited = performance.now() - waitedFrom;
	// The first batch never settled: a statement held by another user's locked row.
	t.true(waited >= turnWaitMillis - 1, `went after ${waited.toFixed(1)} ms`);
	t.deepEqual(started.map((batch) => batch.keys), [[1], [2]]);
	started[1]!.finish();
	t.is(await second, 2);
	started[0]!.finish();
});

test('the batch waiting starts in the turn after the one in flight settles, not on its timer', async (t) => {
	const { loader, started, startedCount } = recorder();
	const first = loader.load(1);
	await startedCount(1);
	const second = loader.load(2);
	await turn();
	await turn();
	started[0]!.finish();
	await first;
	// Two turns: the settling batch's own, then the waiting batch's, which took that turn's calls.
	const third = loader.load(3);
	await turn();
	await turn();
	t.deepEqual(started.map((batch) => batch.keys), [[1], [2, 3]]);
	started[1]!.finish();
	t.deepEqual(await Promise.all([second, third]), [2, 3]);
});

test('drain starts the batches waiting and resolves once every call has settled', async (t) => {
	const { loader, started, startedCount } = recorder();
	const first = loader.load(1);
	await startedCount(1);
	const second = loader.load(2);
	let drained = false;
	const draining = loader.drain().then(() => { drained = true; });
	await startedCount(2);
	t.deepEqual(started.map((batch) => batch.keys), [[1], [2]], 'the waiting batch went at once');
	started[1]!.finish();
	await second;
	await turn();
	t.false(drained, 'not while the first is in flight');
	started[0]!.finish();
	await first;
	await draining;
	t.true(drained);
});

test('drain takes the calls of its own turn too', async (t) => {
	const { loader, started, startedCount } = recorder();
	const call = loader.load(1);
	let drained = false;
	const draining = loader.drain().then(() => { drained = true; });
	await startedCount(1);
	await turn();
	t.false(drained, 'not while the batch of that call is in flight');
	started[0]!.finish();
	t.is(await call, 1);
	await draining;
	t.is(started.length, 1);
});
