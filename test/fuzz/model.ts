// What one iteration of the fuzzer does, as plain data, and the fast-check arbitraries that make it.
//
// A program is a setup (each browser gets a session, one request at a time, before any
// "deploy"), a list of steps, and an ending. A step starts a request, lets one held request go on
// to its next hold, or calls `destroyAll` straight on a store; the ending says in which order the
// requests still held finish. Requests hold where the program says: after loading their session,
// and before or after each write statement they send (see app.ts), so the program, not timing,
// decides the interleaving.
//
// Why an array of steps rather than `fc.commands`: the checker reads PostgreSQL's log once the
// whole schedule has run, not after each command, so `fc.commands`' per-command check/run split
// would buy nothing. A plain array shrinks the same way (fast-check drops and simplifies
// elements), every element stays meaningful after any other is dropped (`advance` picks among the
// requests held at that moment, modulo their number; browser and app numbers are taken modulo what
// exists), and the program is data: printed readably, saved as JSON, replayed.
import fc from 'fast-check';

/** The session fields requests write; each value written is the id of the request that wrote it. */
export const dataFields = ['a', 'b', 'c'] as const;
export type DataField = typeof dataFields[number];

export const users = ['u1', 'u2'] as const;
export type User = typeof users[number];

/** What a request does once it has loaded its session. */
export type Route =
	/** Reads only. */
	| { readonly path: 'read' }
	/** Sets `set` to its own id and deletes `remove` (`userId`: leaves the account, keeps the session). */
	| { readonly path: 'set'; readonly set: readonly DataField[]; readonly remove: readonly (DataField | 'userId')[] }
	/** Sets `first`, calls `save()`, then sets `then`, which koa-session's auto-commit writes. */
	| { readonly path: 'save-then-set'; readonly first: DataField; readonly then: DataField }
	/** `regenerate()` keeping the data ("sudo", a privilege change). */
	| { readonly path: 'sudo' }
	/** Login: `regenerate()`, then sets `userId`. */
	| { readonly path: 'login'; readonly user: User }
	/** `ctx.session = null`. */
	| { readonly path: 'logout' }
	/** Password reset: `destroyAll(user, { ctx })`, a fresh `sess` token and `userId`, then `regenerate()`. */
	| { readonly path: 'reset'; readonly user: User };

export interface RequestStep {
	readonly kind: 'request';
	/** Which browser (cookie jar) sends it; requests of one browser in flight at once are its tabs. */
	readonly browser: number;
	/** Which of the variant's apps of the main phase serves it. */
	readonly app: number;
	readonly route: Route;
	/** Waits after loading its session, before changing anything. */
	readonly holdAfterLoad: boolean;
	/** Where it waits around each write statement it sends. */
	readonly holdWrites: WriteHold;
}

/**
 * `before`: each write statement waits after the store computed it, before it is sent (a pool
 * wait, another instance): it lands later than it was decided. `after`: each waits once
 * PostgreSQL applied it, before the store learns the outcome (between `regenerate()`'s delete
 * and insert, say).
 */
export type WriteHold = 'none' | 'before' | 'after';

export interface AdvanceStep {
	readonly kind: 'advance';
	/** Which held request goes on to its next hold (or to its response): the n-th oldest held, by start, modulo how many are held. */
	readonly pick: number;
}

/** "Sign out everywhere" outside any request (an admin, a job), on one app's store. */
export interface DestroyAllStep {
	readonly kind: 'destroyAll';
	readonly user: User;
	readonly app: number;
}

export type Step = RequestStep | AdvanceStep | DestroyAllStep;

/** How a browser's session starts: fields set in a first request, then a login, if any. */
export interface BrowserSetup {
	readonly fields: readonly DataField[];
	/** Who logs in; absent: the session stays anonymous. */
	readonly user?: User | undefined;
}

/**
 * How the requests still held after the last step go on: each to its response, the newest
 * first (a request that loaded earlier answers last: the stale write lands last) or the oldest
 * first, or one hold at a time each in turn, oldest first.
 */
export type Ending = 'newest-first' | 'oldest-first' | 'in-turn';

export interface Program {
	readonly browsers: readonly BrowserSetup[];
	readonly steps: readonly Step[];
	readonly ending: Ending;
}

/** The URL path of a route, as a request line shows it. */
export function describeRoute(route: Route): string {
	switch (route.path) {
		case 'set': {
			const query = [...route.set, ...route.remove.map((name) => `-${name}`)].join('&');
			return `/set${query === '' ? '' : `?${query}`}`;
		}
		case 'save-then-set':
			return `/save-then-set?first=${route.first}&then=${route.then}`;
		case 'login':
		case 'reset':
			return `/${route.path}?user=${route.user}`;
		default:
			return `/${route.path}`;
	}
}

/** One line per step, as the counterexample is printed. */
/**
 * @param mainApps The variant's apps of the main phase: a step's `app` picks among them, and lines
 * name an app by its place among all the variant's apps (app 1 is the first store).
 */
export function describeProgram(program: Program, mainApps: readonly number[] = [0]): string {
	const lines = program.browsers.map((setup, index) => `  setup: browser ${index + 1}: GET /set?${setup.fields.join('&')}${setup.user === undefined ? '' : `, then GET /login?user=${setup.user}`}`);
	program.steps.forEach((step, index) => {
		lines.push(`  ${String(index + 1).padStart(2)}. ${describeStep(step, program.browsers.length, mainApps)}`);
	});
	lines.push(`  end: ${describeEnding(program.ending)}`);
	return lines.join('\n');
}

export function describeEnding(ending: Ending): string {
	switch (ending) {
		case 'newest-first':
			return 'the requests still held go on, newest first, each to its response';
		case 'oldest-first':
			return 'the requests still held go on, oldest first, each to its response';
		case 'in-turn':
			return 'the requests still held go on one hold at a time, in turn, oldest first';
	}
}

export function describeStep(step: Step, browsers: number, mainApps: readonly number[] = [0]): string {
	const app = (index: number) => (mainApps[index % mainApps.length] ?? 0) + 1;
	switch (step.kind) {
		case 'request':
			return `browser ${browserOf(step, browsers) + 1}: GET ${describeRoute(step.route)} on app ${app(step.app)}${describeHolds(step)}`;
		case 'advance':
			return `the held request #${step.pick + 1} (oldest first) goes on`;
		case 'destroyAll':
			return `store.destroyAll('${step.user}') on app ${app(step.app)}, outside any request`;
	}
}

/** A request's holds, as its line shows them. */
export function describeHolds({ holdAfterLoad, holdWrites }: { holdAfterLoad: boolean; holdWrites: WriteHold }): string {
	const holds = [
		holdAfterLoad ? 'held after load' : '',
		holdWrites === 'before' ? 'held before each write' : holdWrites === 'after' ? 'held after each write' : '',
	].filter((hold) => hold !== '');
	return holds.length === 0 ? '' : ` (${holds.join(', ')})`;
}

/** The program with each request's browser number as it runs (modulo the browsers set up), as JSON shows it. */
export function normalized(program: Program): Program {
	return {
		...program,
		steps: program.steps.map((step) => (step.kind === 'request' ? { ...step, browser: browserOf(step, program.browsers.length) } : step)),
	};
}

/** The browser (0-based) a step's request comes from, among those the program sets up. */
export function browserOf(step: RequestStep, browsers: number): number {
	return step.browser % Math.max(browsers, 1);
}

const dataField = fc.constantFrom(...dataFields);
// Mostly one user, so that sign-outs meet the sessions they end.
const user: fc.Arbitrary<User> = fc.oneof({ weight: 3, arbitrary: fc.constant('u1' as const) }, { weight: 1, arbitrary: fc.constant('u2' as const) });

// Weighted towards what finds races: writes and identity changes.
const route: fc.Arbitrary<Route> = fc.oneof(
	{ weight: 1, arbitrary: fc.constant({ path: 'read' } as const) },
	{ weight: 4, arbitrary: fc.record({
		path: fc.constant('set' as const),
		set: fc.subarray([...dataFields], { minLength: 1 }),
		remove: fc.subarray([...dataFields, 'userId' as const], { maxLength: 1 }),
	}).map((route) => ({ ...route, remove: route.remove.filter((name) => !(route.set as readonly string[]).includes(name)) })) },
	{ weight: 2, arbitrary: fc.record({ path: fc.constant('save-then-set' as const), first: dataField, then: dataField }) },
	{ weight: 3, arbitrary: fc.constant({ path: 'sudo' } as const) },
	{ weight: 3, arbitrary: fc.record({ path: fc.constant('login' as const), user }) },
	{ weight: 3, arbitrary: fc.constant({ path: 'logout' } as const) },
	{ weight: 1, arbitrary: fc.record({ path: fc.constant('reset' as const), user }) },
);

function step(apps: number): fc.Arbitrary<Step> {
	// An index among the apps of the main phase.
	const app = fc.nat({ max: apps - 1 });
	return fc.oneof(
		{ weight: 5, arbitrary: fc.record({
			kind: fc.constant('request' as const),
			// Mostly the first browser: its tabs race each other.
			browser: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(1) }),
			app,
			route,
			// Most requests hold somewhere: a request that runs through in one step races nothing.
			holdAfterLoad: fc.oneof({ weight: 1, arbitrary: fc.constant(false) }, { weight: 2, arbitrary: fc.constant(true) }),
			holdWrites: fc.constantFrom<WriteHold>('none', 'before', 'after'),
		}) },
		{ weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), pick: fc.nat({ max: 2 }) }) },
		{ weight: 2, arbitrary: fc.record({ kind: fc.constant('destroyAll' as const), user, app }) },
	);
}

/**
 * Programs of up to two browsers and up to `maxSteps` steps, over the variant's apps of the main
 * phase (`mainApps`, see variants.ts). Small on purpose: each races few sessions hard, and a
 * failure shrinks to a few lines.
 */
export function programs({ mainApps, maxSteps = 12 }: { mainApps: readonly number[]; maxSteps?: number }): fc.Arbitrary<Program> {
	const setup: fc.Arbitrary<BrowserSetup> = fc.record({
		fields: fc.subarray([...dataFields], { minLength: 1 }),
		user: fc.option(user, { nil: undefined, freq: 3 }),
	});
	return fc.record({
		browsers: fc.array(setup, { minLength: 1, maxLength: 2 }),
		steps: fc.array(step(mainApps.length), { minLength: 1, maxLength: maxSteps, size: 'max' }),
		ending: fc.constantFrom<Ending>('newest-first', 'oldest-first', 'in-turn'),
	}).map((program) => Object.defineProperty(program, fc.toStringMethod, {
		value: () => `\n${describeProgram(program, mainApps)}`,
		enumerable: false,
	}));
}
