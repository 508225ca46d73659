// The fast-check property over one variant, the hunt that keeps looking once something is found,
// and how both are reported: used by the short run in `npm test` (test/fuzz.test.ts) and by
// `npm run fuzz` (scripts/fuzz.ts).
import fc from 'fast-check';
import { check, invariantsOf, type Invariant, type Violation } from './checker.js';
import type { Version } from './log.js';
import { minimize } from './minimize.js';
import { describeProgram, normalized, programs, type Program } from './model.js';
import { runIteration, type Harness, type Trace } from './run.js';
import { variantNamed, wholeWrites } from './variants.js';

export interface FuzzOptions {
	readonly seed: number;
	/** Most iterations before a failure (shrinking adds more). */
	readonly numRuns: number;
	/** Stops generating and shrinking after this long; what was found so far is reported. */
	readonly timeLimitMs?: number | undefined;
	/** fast-check's replay path of a counterexample (with its seed). */
	readonly path?: string | undefined;
	/** Invariants whose violations are counted but fail no iteration (already found). */
	readonly ignore?: ReadonlySet<Invariant>;
	/** Most steps of a program. @default 12 */
	readonly maxSteps?: number;
	/** Programs checked before the generated ones. */
	readonly examples?: readonly Program[];
	/** When the last pass over a counterexample stops (ms since the epoch). @default a minute after it starts */
	readonly minimizeUntil?: number;
}

export interface FuzzFailure {
	readonly program: Program;
	readonly violations: readonly Violation[];
	readonly transcript: readonly string[];
	/** The row versions, one line each. */
	readonly log: readonly string[];
	/** fast-check's path to replay it with the seed; empty for the iteration the time limit interrupted. */
	readonly path: string;
	/** Iterations before the first failing one, fast-check's shrinking steps after it, and the iterations of the last pass (minimize.ts). */
	readonly runsBefore: number;
	readonly shrinks: number;
	readonly minimizing: number;
}

/** Counts over iterations, shrinking included. */
export interface FuzzCounts {
	readonly iterations: number;
	readonly requests: number;
	/** Row versions the checker read. */
	readonly versions: number;
	/** Iterations with a violation of each invariant, found or ignored. */
	readonly violating: ReadonlyMap<Invariant, number>;
	/** The first violation seen of each invariant, found or ignored. */
	readonly firstSeen: ReadonlyMap<Invariant, string>;
}

export interface FuzzReport extends FuzzCounts {
	readonly variant: string;
	readonly seed: number;
	/** The invariants ignored in this run. */
	readonly ignored: readonly Invariant[];
	/** Whether the run began with the known races (examples.ts). */
	readonly examples: boolean;
	readonly failure: FuzzFailure | undefined;
}

/** A failing iteration: its error message is what fast-check keeps. */
class IterationFailed extends Error {
	override name = 'IterationFailed';
}

/** Runs one program and checks it: for a program saved as JSON (`npm run fuzz -- --program file.json`). */
export async function runOnce(harness: Harness, program: Program): Promise<{ trace: Trace; violations: Violation[] }> {
	const trace = await runIteration(harness, program);
	return { trace, violations: check(trace, { fieldLevelWrites: !wholeWrites(harness.variant) }) };
}

/** One fast-check run of the property: until `numRuns` iterations pass, or one fails and is shrunk. */
export async function fuzzVariant(harness: Harness, options: FuzzOptions): Promise<FuzzReport> {
	const { variant } = harness;
	const ignore = options.ignore ?? new Set<Invariant>();
	const counts = { iterations: 0, requests: 0, versions: 0, violating: new Map<Invariant, number>(), firstSeen: new Map<Invariant, string>() };
	// The latest failing iteration: once shrinking is over, the counterexample's.
	let lastFailing: { program: Program; trace: Trace; violations: Violation[] } | undefined;
	// fast-check's time limit stops waiting for the iteration in flight, it does not end it: a hang
	// outlasting the limit would go unseen, and the iteration would outlive its harness. So the
	// last iteration is awaited, and a violation it ends with is a failure like any other.
	let last: Promise<void> | undefined;
	const iterate = async (program: Program) => {
		const trace = await runIteration(harness, program);
		const violations = check(trace, { fieldLevelWrites: !wholeWrites(variant) });
		count(counts, trace, violations);
		const failing = violations.filter((violation) => !ignore.has(violation.invariant));
		if (failing.length > 0) {
			lastFailing = { program, trace, violations: failing };
			throw new IterationFailed(failing.map((violation) => `${violation.invariant} ${violation.message}`).join('\n'));
		}
	};
	const property = fc.asyncProperty(programs({ mainApps: variant.mainApps, maxSteps: options.maxSteps ?? 12 }), (program) => {
		last = iterate(program);
		return last;
	});
	const details = await fc.check(property, {
		seed: options.seed,
		numRuns: options.numRuns,
		...(options.timeLimitMs === undefined ? {} : { interruptAfterTimeLimit: options.timeLimitMs }),
		...(options.path === undefined ? {} : { path: options.path }),
		...(options.examples === undefined ? {} : { examples: options.examples.map((program): [Program] => [program]) }),
	});
	await last?.catch(() => {});
	if (details.failed && (details.counterexample === undefined || lastFailing === undefined)) {
		// The property threw something other than a violation: a bug of the fuzzer itself.
		throw new Error(`The fuzzer failed: ${String(details.errorInstance)}`, { cause: details.errorInstance });
	}
	let failure: FuzzFailure | undefined;
	// Without `details.failed`, a failing iteration is the one the time limit interrupted.
	if (lastFailing !== undefined) {
		const minimized = await minimize(lastFailing.program, lastFailing, new Set(invariantsOf(lastFailing.violations)), async (program) => {
			const outcome = await runOnce(harness, program);
			count(counts, outcome.trace, outcome.violations);
			return { trace: outcome.trace, violations: outcome.violations.filter((violation) => !ignore.has(violation.invariant)) };
		}, options.minimizeUntil ?? Date.now() + 60_000);
		failure = {
			program: minimized.program,
			violations: minimized.violations,
			transcript: minimized.trace.transcript,
			log: describeLog(minimized.trace),
			path: details.counterexamplePath ?? '',
			runsBefore: details.numRuns,
			shrinks: details.numShrinks,
			minimizing: minimized.tries,
		};
	}
	return { variant: variant.name, seed: options.seed, ignored: [...ignore], examples: options.examples !== undefined, ...counts, failure };
}

function count(counts: { iterations: number; requests: number; versions: number; violating: Map<Invariant, number>; firstSeen: Map<Invariant, string> }, trace: Trace, violations: readonly Violation[]): void {
	counts.iterations += 1;
	counts.requests += trace.requests.length;
	counts.versions += trace.log.length;
	for (const invariant of invariantsOf(violations)) {
		counts.violating.set(invariant, (counts.violating.get(invariant) ?? 0) + 1);
	}
	for (const violation of violations) {
		if (!counts.firstSeen.has(violation.invariant)) {
			counts.firstSeen.set(violation.invariant, violation.message);
		}
	}
}

export interface HuntOptions {
	readonly seed: number;
	/** Most iterations of each fast-check run. */
	readonly numRuns: number;
	/** When to stop, in ms since the epoch; a failure found before it is still shrunk until it. */
	readonly deadline: number;
	readonly ignore?: ReadonlySet<Invariant>;
	readonly maxSteps?: number;
	readonly examples?: readonly Program[];
	/** Called with each failure once it is shrunk. */
	readonly onFailure?: (report: FuzzReport) => void;
}

/** What a hunt found: every failure, and the counts over all its runs. */
export interface Hunt extends FuzzCounts {
	readonly variant: string;
	readonly failures: readonly FuzzReport[];
	/** The invariants of its failures, in the order found. */
	readonly found: readonly Invariant[];
}

/**
 * Runs the property until it passes `numRuns` iterations or the deadline comes. Each failure is
 * shrunk and reported; the next run takes the next seed and ignores the invariants found so far,
 * so one hunt shows every invariant that breaks, each with a counterexample of its own.
 */
export async function hunt(harness: Harness, options: HuntOptions): Promise<Hunt> {
	const ignore = new Set(options.ignore ?? []);
	const found: Invariant[] = [];
	const failures: FuzzReport[] = [];
	const totals = { iterations: 0, requests: 0, versions: 0, violating: new Map<Invariant, number>(), firstSeen: new Map<Invariant, string>() };
	let seed = options.seed;
	do {
		const report = await fuzzVariant(harness, {
			seed,
			numRuns: options.numRuns,
			timeLimitMs: Math.max(options.deadline - Date.now(), 1),
			minimizeUntil: options.deadline,
			ignore,
			...(options.maxSteps === undefined ? {} : { maxSteps: options.maxSteps }),
			...(options.examples === undefined ? {} : { examples: options.examples }),
		});
		totals.iterations += report.iterations;
		totals.requests += report.requests;
		totals.versions += report.versions;
		for (const [invariant, iterations] of report.violating) {
			totals.violating.set(invariant, (totals.violating.get(invariant) ?? 0) + iterations);
		}
		for (const [invariant, message] of report.firstSeen) {
			if (!totals.firstSeen.has(invariant)) {
				totals.firstSeen.set(invariant, message);
			}
		}
		if (report.failure === undefined) {
			break;
		}
		failures.push(report);
		options.onFailure?.(report);
		for (const invariant of invariantsOf(report.failure.violations)) {
			ignore.add(invariant);
			found.push(invariant);
		}
		seed += 1;
	} while (Date.now() < options.deadline);
	return { variant: harness.variant.name, failures, found, ...totals };
}

/** The arguments of `npm run fuzz` that replay a failure. */
export function replayArguments(report: FuzzReport, maxSteps = 12): string {
	return `--variant ${report.variant} --seed ${report.seed} --path ${report.failure?.path ?? ''}`
		+ `${report.ignored.length === 0 ? '' : ` --ignore ${report.ignored.join(',')}`}${maxSteps === 12 ? '' : ` --steps ${maxSteps}`}${report.examples ? '' : ' --no-examples'}`;
}

/** A failure: its violations, the shrunk program, what happened, how to replay it. */
export function describeFailure(report: FuzzReport, { log = false }: { log?: boolean } = {}): string {
	const { failure } = report;
	if (failure === undefined) {
		return `${report.variant}: no violation`;
	}
	const violations = failure.violations.slice(0, 12).map((violation) => `  ${violation.invariant} ${violation.message}`);
	if (failure.violations.length > 12) {
		violations.push(`  … and ${failure.violations.length - 12} more`);
	}
	return [
		`${report.variant}: ${invariantsOf(failure.violations).join(', ')} violated (iteration ${failure.runsBefore}, shrunk in ${failure.shrinks} steps and ${failure.minimizing} more tries; seed ${report.seed}${failure.path === '' ? ', interrupted by the time limit' : `, path ${failure.path}`})`,
		...violations,
		'the shrunk program:',
		describeProgram(failure.program, variantNamed(report.variant).mainApps),
		'what happened (rN: a request, dN: a direct destroyAll):',
		...failure.transcript.map((line) => `  ${line}`),
		...(log ? ['the row versions (seq, writer, op, row):', ...failure.log.map((line) => `  ${line}`)] : []),
		// No path: the iteration the time limit interrupted, which fast-check did not record.
		...(failure.path === '' ? [] : [`replay: npm run fuzz -- ${replayArguments(report)}`]),
		`or, saved as a file: npm run fuzz -- --variant ${report.variant} --program <file> with ${JSON.stringify(normalized(failure.program))}`,
	].join('\n');
}

/** Iterations, requests and row versions, and the invariants violated along the way. */
export function describeCounts(variant: string, counts: FuzzCounts): string {
	const violating = [...counts.violating].sort(([left], [right]) => left.localeCompare(right)).map(([invariant, iterations]) => `${invariant} in ${iterations}`);
	return `${variant}: ${counts.iterations} iterations, ${counts.requests} requests, ${counts.versions} row versions checked`
		+ `${violating.length === 0 ? ', no violation' : `; iterations with violations (shrinking included): ${violating.join(', ')}`}`;
}

/** One line per row version: its writer, and what it holds. */
export function describeLog(trace: Trace): string[] {
	const writer = (seq: number) => trace.segments.find((segment) => segment.fromSeq < seq && seq <= segment.toSeq)?.actor ?? '?';
	const show = (version: Version | undefined) => (version === undefined
		? '-'
		: `row ${version.id} key ${version.key.slice(0, 6)}… subject ${version.subject ?? 'null'} ${JSON.stringify(version.data ?? 'UNREADABLE')} expires_on ${version.expiresOn}`);
	return trace.log.map((entry) => `${entry.seq} ${writer(entry.seq)} ${entry.op} ${entry.op === 'DELETE' ? show(entry.old) : show(entry.new)}`
		+ `${entry.op === 'UPDATE' && entry.old?.key !== entry.new?.key ? ` (moved from key ${entry.old?.key.slice(0, 6)}…)` : ''}`);
}
