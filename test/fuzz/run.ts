// One iteration: run a program against the apps, one actor at a time, and collect what the
// checker reads: the row-version log, the rows left, and what each request saw and answered.
//
// Only one actor moves at a time. A step starts a request, or releases a held one, and waits
// until that actor holds again, is queued or is done; every row version logged meanwhile is that
// actor's (the runner reads the log's watermark between steps). So an interleaving is the
// program's, never the machine's: a loaded machine runs the same iteration, only slower.
//
// Queued: a store writes a key in the order of its saves, so a write waits while an earlier one
// of its key in that store is held (app.ts). Such a request is not held where the program can
// pick it; it waits for the request whose write it is queued behind. Once a step has moved that
// one past its write, the queued request takes its turn, in the same step and after it, up to its
// own next hold, queue or answer (and so on, oldest first, while turns come). A write still
// queued when nothing is held any more waits for nothing that could end: that is reported stuck.
import http from 'node:http';
import { digestKey } from '../../src/codec/key-digest.js';
import { CookieJar, parseSetCookie } from '../helpers/http.js';
import { Actor, currentActor, sessionCookie, startApps, type ActorEvent, type FuzzApp } from './app.js';
import { dataOpener, RowLog, type LogEntry, type Version } from './log.js';
import { browserOf, describeHolds, describeRoute, type Program, type Route, type Step, type WriteHold } from './model.js';
import { secretsOf, type Variant } from './variants.js';

/** A request of an iteration, as the checker reads it. */
export interface RequestRecord {
	readonly id: string;
	readonly phase: 'setup' | 'main';
	/** 0-based. */
	readonly browser: number;
	readonly tab: string;
	/** Index into the variant's stores. */
	readonly app: number;
	readonly route: Route;
	readonly actor: Actor;
	/** The log's watermark before it was sent, and once its response arrived. */
	readonly startSeq: number;
	endSeq: number | undefined;
	status: number | undefined;
	/** The request never got a response (the connection broke). */
	transportError: string | undefined;
}

/** A `destroyAll` outside any request. */
export interface DestroyAllRecord {
	readonly id: string;
	readonly user: string;
	readonly app: number;
	readonly startSeq: number;
	readonly endSeq: number;
	readonly deleted: number | undefined;
	readonly failure: string | undefined;
}

/** The log positions `(fromSeq, toSeq]` written while `actor` alone moved. */
export interface Segment {
	readonly actor: string;
	readonly fromSeq: number;
	readonly toSeq: number;
}

export interface Trace {
	readonly variant: Variant;
	readonly program: Program;
	readonly requests: readonly RequestRecord[];
	readonly destroyAlls: readonly DestroyAllRecord[];
	readonly segments: readonly Segment[];
	readonly log: readonly LogEntry[];
	/**
	 * The rows at the end, once every request answered, that the app still serves: read back
	 * through the store by the keys the browsers were given (a row whose key no browser got
	 * counts as served). A store that ends sessions without deleting their rows is judged by what
	 * it serves, not by what its table holds.
	 */
	readonly rows: readonly Version[];
	/** What the stores sent to `onError` (a row refused as tampered, …). */
	readonly storeErrors: readonly string[];
	/** An actor that neither held again nor finished within `stepTimeoutMs`, or a write queued behind nothing held. */
	readonly stuck: string | undefined;
	/** What happened, step by step, for the report. */
	readonly transcript: readonly string[];
}

/** The apps of a variant on one database, with the log installed. */
export interface Harness {
	readonly variant: Variant;
	readonly log: RowLog;
	readonly apps: readonly FuzzApp[];
	readonly actors: Map<string, Actor>;
	readonly storeErrors: string[];
	close(): Promise<void>;
}

/** What `startHarness` needs of a database: its URL, and a superuser query. */
export interface FuzzDatabase {
	readonly url: string;
	query<Row extends Record<string, unknown>>(sql: string, values?: unknown[]): Promise<Row[]>;
}

export async function startHarness(database: FuzzDatabase, variant: Variant): Promise<Harness> {
	const log = new RowLog((sql, values) => database.query(sql, values), dataOpener(secretsOf(variant), variant.stores.some((store) => store.encryptionMigration !== undefined)));
	await log.install();
	const actors = new Map<string, Actor>();
	const storeErrors: string[] = [];
	const { apps, close } = await startApps(database.url, variant, actors, (error) => storeErrors.push(`${error.name}: ${error.message}`));
	return { variant, log, apps, actors, storeErrors, close };
}

/**
 * Bound on one step, far above what a step takes (milliseconds): not an assertion on timing, only
 * a way out of an iteration that would otherwise wait forever, reported as a violation.
 */
const stepTimeoutMs = 30_000;

interface Running {
	readonly record: RequestRecord;
	readonly response: Promise<void>;
	/** Its place in start order. */
	readonly order: number;
}

export async function runIteration(harness: Harness, program: Program): Promise<Trace> {
	const { variant, log, apps, actors } = harness;
	actors.clear();
	harness.storeErrors.length = 0;
	await log.reset();
	const jars = program.browsers.map(() => new CookieJar());
	const requests: RequestRecord[] = [];
	const destroyAlls: DestroyAllRecord[] = [];
	const segments: Segment[] = [];
	const transcript: string[] = [];
	const held: Running[] = [];
	// Requests with a write queued behind an earlier one of its key, in start order.
	const queued: Running[] = [];
	const inFlight = new Set<Running>();
	// Direct calls given up on as stuck, still to be waited for.
	const abandoned: Promise<void>[] = [];
	let stuck: string | undefined;
	let counter = 0;
	// Every key a response gave a browser, by digest.
	const issued = new Map<string, string>();
	const remember = (key: string) => issued.set(digestKey(key), key);

	// In start order: `advance` and the ending pick by it.
	const insertInOrder = (list: Running[], running: Running) => {
		const later = list.findIndex((other) => other.order > running.order);
		list.splice(later === -1 ? list.length : later, 0, running);
	};

	// Waits until `actor` holds again, is queued or is done, and gives the log positions it wrote meanwhile to it.
	const progress = async (running: Running, fromSeq: number): Promise<string> => {
		const { record } = running;
		const writesBefore = record.actor.writes.length;
		const event = await nextEvent(record.actor);
		const toSeq = await log.watermark();
		segments.push({ actor: record.id, fromSeq, toSeq });
		const sent = record.actor.writes.slice(writesBefore);
		const wrote = sent.length === 0 ? '' : `sent ${sent.join(', ')}; `;
		const index = held.indexOf(running);
		if (index !== -1) {
			held.splice(index, 1);
		}
		if (event === 'stuck') {
			stuck ??= `${record.id} neither held again nor answered within ${stepTimeoutMs} ms: it waits on something a held request keeps (a lock held across statements?)`;
			return `${wrote}STUCK`;
		}
		if (event.kind === 'held') {
			insertInOrder(held, running);
			return `${wrote}held ${event.at}`;
		}
		if (event.kind === 'queued') {
			insertInOrder(queued, running);
			return `${wrote}queued behind an earlier write of its key`;
		}
		inFlight.delete(running);
		record.endSeq = toSeq;
		return `${wrote}${record.transportError === undefined ? String(record.status) : `no response (${record.transportError})`}${record.actor.failure === undefined ? '' : ` (${record.actor.failure})`}`;
	};

	const describeLoaded = (actor: Actor): string => {
		const loaded = actor.loaded;
		if (loaded === undefined) {
			return '';
		}
		return loaded.isNew ? ' [no session loaded]' : ` [loaded sess ${loaded.sess ?? '?'}${loaded.userId === undefined ? '' : ` as ${loaded.userId}`}]`;
	};

	const start = async (phase: 'setup' | 'main', browser: number, app: number, route: Route, holds: { holdAfterLoad: boolean; holdWrites: WriteHold }): Promise<string> => {
		counter += 1;
		const id = `r${counter}`;
		const actor = new Actor(id, { route, ...holds });
		actors.set(id, actor);
		const tabs = [...inFlight].filter((running) => running.record.browser === browser).length;
		const startSeq = await log.watermark();
		const record: RequestRecord = {
			id, phase, browser, tab: String.fromCharCode(65 + tabs), app, route, actor, startSeq,
			endSeq: undefined, status: undefined, transportError: undefined,
		};
		requests.push(record);
		const jar = jars[browser] ?? new CookieJar();
		const response = send(`${apps[app]?.url ?? ''}${describeRoute(route)}`, jar, id, remember).then(
			(status) => { record.status = status; },
			(error: unknown) => { record.transportError = error instanceof Error ? error.message : String(error); },
		).finally(() => actor.finish());
		const running: Running = { record, response, order: counter };
		inFlight.add(running);
		const outcome = await progress(running, startSeq);
		return `${id} browser ${browser + 1} tab ${record.tab}: GET ${describeRoute(route)} on app ${app + 1}${describeHolds(holds)} → ${outcome}${describeLoaded(actor)}`;
	};

	const advance = async (running: Running): Promise<string> => {
		const fromSeq = await log.watermark();
		const at = running.record.actor.heldAt;
		running.record.actor.release();
		return `${running.record.id} goes on from ${at ?? '?'} → ${await progress(running, fromSeq)}`;
	};

	// The queued writes whose turn came, once the step that let them go on is over: each takes it
	// in turn, oldest request first, until no turn has come. One line each, for the transcript.
	const takeTurns = async (): Promise<string[]> => {
		const lines: string[] = [];
		while (stuck === undefined) {
			// The turns an earlier write's settling gave come in microtasks after it: all of them have
			// come once a turn of the event loop has passed.
			await new Promise((resolve) => setImmediate(resolve));
			const next = queued.find((running) => running.record.actor.turnCame);
			if (next === undefined) {
				break;
			}
			queued.splice(queued.indexOf(next), 1);
			const fromSeq = await log.watermark();
			next.record.actor.takeTurn();
			const outcome = await progress(next, fromSeq);
			lines.push(`    then ${next.record.id}'s queued write takes its turn → ${outcome}`);
		}
		return lines;
	};

	const runStep = async (step: Step): Promise<string> => {
		switch (step.kind) {
			case 'request':
				return start('main', browserOf(step, program.browsers.length), mainApp(variant, step.app), step.route, step);
			case 'advance': {
				const running = held[step.pick % Math.max(held.length, 1)];
				if (running === undefined) {
					return 'nothing held';
				}
				return advance(running);
			}
			case 'destroyAll': {
				counter += 1;
				const id = `d${counter}`;
				const app = mainApp(variant, step.app);
				const actor = new Actor(id);
				const startSeq = await log.watermark();
				let deleted: number | undefined;
				let failure: string | undefined;
				const store = apps[app]?.store;
				if (store === undefined) {
					throw new Error(`No app ${app + 1} in variant ${variant.name}`);
				}
				const call = currentActor.run(actor, () => store.destroyAll(step.user)).then(
					(count) => { deleted = count; },
					(error: unknown) => { failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error); },
				);
				if (await withinStepBound(call) === 'stuck') {
					stuck = `${id} destroyAll('${step.user}') did not return within ${stepTimeoutMs} ms: it waits on something a held request keeps (a lock held across statements?)`;
					failure = 'stuck';
					abandoned.push(call);
				}
				const endSeq = await log.watermark();
				segments.push({ actor: id, fromSeq: startSeq, toSeq: endSeq });
				destroyAlls.push({ id, user: step.user, app, startSeq, endSeq, deleted, failure });
				return `${id} store.destroyAll('${step.user}') on app ${app + 1} → ${failure ?? `${deleted} deleted`}`;
			}
		}
	};

	try {
		for (const [browser, setup] of program.browsers.entries()) {
			const noHolds = { holdAfterLoad: false, holdWrites: 'none' } as const;
			transcript.push(`setup: ${await start('setup', browser, variant.setupApp, { path: 'set', set: setup.fields, remove: [] }, noHolds)}`);
			if (setup.user !== undefined && stuck === undefined) {
				transcript.push(`setup: ${await start('setup', browser, variant.setupApp, { path: 'login', user: setup.user }, noHolds)}`);
			}
		}
		for (const [index, step] of program.steps.entries()) {
			if (stuck !== undefined) {
				break;
			}
			transcript.push(`${String(index + 1).padStart(2)}. ${await runStep(step)}`, ...await takeTurns());
		}
		let previous: Running | undefined;
		while (stuck === undefined) {
			const next = nextToEnd(program.ending, held, previous);
			if (next !== undefined) {
				previous = next;
				transcript.push(`end: ${await advance(next)}`, ...await takeTurns());
				continue;
			}
			const waiting = queued[0];
			if (waiting === undefined) {
				break;
			}
			// Nothing is held, yet a write waits for an earlier one of its key: only a write in
			// flight that holds nowhere could still let it go on.
			if (await withinStepBound(waiting.record.actor.turnComing()) === 'stuck') {
				stuck = `${waiting.record.id}'s write waits for an earlier write of its key, and nothing held is that write (${stepTimeoutMs} ms): a write queue that never drains?`;
				break;
			}
			transcript.push(...await takeTurns());
		}
	} finally {
		if (stuck !== undefined) {
			// Nothing may wait on the runner any more: every hold and queued write passes, and every request answers.
			for (const actor of actors.values()) {
				actor.openForGood();
			}
			await Promise.race([Promise.allSettled([...[...inFlight].map((running) => running.response), ...abandoned]), delay(stepTimeoutMs)]);
		}
	}
	const rows = await log.rows();
	const reader = apps[variant.mainApps[0] ?? variant.setupApp]?.store;
	const served = await Promise.all(rows.map(async (row) => {
		const key = issued.get(row.key);
		if (key === undefined || reader === undefined) {
			return true;
		}
		return (await reader.get(key).catch((error: unknown) => {
			harness.storeErrors.push(`get at the end: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
			return {};
		})) !== undefined;
	}));
	return {
		variant,
		program,
		requests,
		destroyAlls,
		segments,
		log: await log.entries(),
		rows: rows.filter((_row, index) => served[index] === true),
		storeErrors: [...harness.storeErrors],
		stuck,
		transcript,
	};
}

// The next request to go on at the end of a program; `held` is in start order, `previous` the
// one that went on last.
function nextToEnd(ending: Program['ending'], held: readonly Running[], previous: Running | undefined): Running | undefined {
	switch (ending) {
		case 'newest-first':
			return held.at(-1);
		case 'oldest-first':
			return held[0];
		case 'in-turn':
			return held.find((running) => running.order > (previous?.order ?? 0)) ?? held[0];
	}
}

function mainApp(variant: Variant, app: number): number {
	return variant.mainApps[app % variant.mainApps.length] ?? variant.setupApp;
}

// A request of a browser: its cookies as they are now, its response's cookies kept. A connection
// of its own (no keep-alive): a pooled one may be closed by the server just as it is reused, and
// the request would fail for a reason that has nothing to do with the store.
function send(url: string, jar: CookieJar, actor: string, remember: (key: string) => void): Promise<number> {
	return new Promise((resolve, reject) => {
		const headers: Record<string, string> = { 'x-fuzz-actor': actor };
		if (jar.cookies.size > 0) {
			headers['cookie'] = jar.header();
		}
		const request = http.get(url, { headers, agent: false }, (response) => {
			for (const cookie of (response.headers['set-cookie'] ?? []).map(parseSetCookie)) {
				const expires = cookie.attributes.get('expires');
				if (cookie.value === '' || (expires !== undefined && Date.parse(expires) <= Date.now())) {
					jar.cookies.delete(cookie.name);
				} else {
					jar.cookies.set(cookie.name, cookie.value);
					if (cookie.name === sessionCookie) {
						remember(cookie.value);
					}
				}
			}
			response.resume();
			response.once('end', () => resolve(response.statusCode ?? 0));
			response.once('error', reject);
		});
		request.once('error', reject);
	});
}

function nextEvent(actor: Actor): Promise<ActorEvent | 'stuck'> {
	return withinStepBound(actor.next());
}

// `promise`, or 'stuck' once the bound on a step has passed.
async function withinStepBound<T>(promise: Promise<T>): Promise<T | 'stuck'> {
	let timer: NodeJS.Timeout | undefined;
	const timeout = new Promise<'stuck'>((resolve) => {
		timer = setTimeout(() => resolve('stuck'), stepTimeoutMs);
	});
	try {
		return await Promise.race([promise, timeout]);
	} finally {
		clearTimeout(timer);
	}
}

function delay(ms: number): Promise<void> {
	return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
