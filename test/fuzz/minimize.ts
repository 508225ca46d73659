// A last pass over fast-check's counterexample, so that the program printed is the smallest that
// still breaks the same invariant. fast-check shrinks an array mostly by dropping its first
// elements and by simplifying each one; a step in the middle that does not matter often stays.
// This pass tries every single simplification (drop one step, one browser, one hold, the login of
// a setup, extra fields) and keeps each that still fails, until none does: each try is one more
// iteration, and the runs are deterministic, so what it keeps fails again on replay.
import type { Invariant, Violation } from './checker.js';
import { browserOf, type BrowserSetup, type Program, type Step } from './model.js';
import type { Trace } from './run.js';

export interface Minimized {
	readonly program: Program;
	readonly trace: Trace;
	readonly violations: readonly Violation[];
	/** Iterations it ran. */
	readonly tries: number;
}

/**
 * Simplifies `program` while it keeps breaking one of `invariants`, until no simplification does
 * or `deadline` (ms since the epoch) passes. `run` runs a program and gives the violations that
 * count (the ignored invariants left out).
 */
export async function minimize(
	program: Program,
	failing: { readonly trace: Trace; readonly violations: readonly Violation[] },
	invariants: ReadonlySet<Invariant>,
	run: (program: Program) => Promise<{ trace: Trace; violations: Violation[] }>,
	deadline: number,
): Promise<Minimized> {
	let best: Minimized = { program, trace: failing.trace, violations: failing.violations, tries: 0 };
	let tries = 0;
	let improved = true;
	while (improved && Date.now() < deadline) {
		improved = false;
		for (const candidate of simplifications(best.program)) {
			if (Date.now() >= deadline) {
				break;
			}
			tries += 1;
			const outcome = await run(candidate);
			if (outcome.violations.some((violation) => invariants.has(violation.invariant))) {
				best = { program: candidate, trace: outcome.trace, violations: outcome.violations, tries };
				improved = true;
				break;
			}
		}
	}
	return { ...best, tries };
}

/** Every program one simplification away from `program`, the biggest cuts first. */
function* simplifications(program: Program): Generator<Program> {
	const { browsers, steps } = program;
	for (let index = 0; index < steps.length; index += 1) {
		if (steps.length > 1) {
			yield { ...program, steps: steps.filter((_step, other) => other !== index) };
		}
	}
	if (browsers.length > 1) {
		for (let dropped = 0; dropped < browsers.length; dropped += 1) {
			yield withoutBrowser(program, dropped);
		}
	}
	for (const [index, step] of steps.entries()) {
		for (const simpler of simplerSteps(step)) {
			yield { ...program, steps: steps.map((other, at) => (at === index ? simpler : other)) };
		}
	}
	for (const [index, setup] of browsers.entries()) {
		const simpler: BrowserSetup[] = [];
		if (setup.user !== undefined) {
			simpler.push({ fields: setup.fields });
		}
		if (setup.fields.length > 1) {
			simpler.push({ ...setup, fields: setup.fields.slice(0, 1) });
		}
		for (const candidate of simpler) {
			yield { ...program, browsers: browsers.map((other, at) => (at === index ? candidate : other)) };
		}
	}
	if (program.ending !== 'newest-first') {
		yield { ...program, ending: 'newest-first' };
	}
}

function* simplerSteps(step: Step): Generator<Step> {
	if (step.kind !== 'request') {
		return;
	}
	if (step.holdAfterLoad) {
		yield { ...step, holdAfterLoad: false };
	}
	if (step.holdWrites !== 'none') {
		yield { ...step, holdWrites: 'none' };
	}
	const { route } = step;
	if (route.path === 'set' && route.set.length + route.remove.length > 1) {
		if (route.remove.length > 0) {
			yield { ...step, route: { ...route, remove: [] } };
		}
		if (route.set.length > 1) {
			yield { ...step, route: { ...route, set: route.set.slice(0, 1) } };
		}
	}
}

// The program without browser `dropped` and its requests; the others keep their requests.
function withoutBrowser(program: Program, dropped: number): Program {
	const count = program.browsers.length;
	return {
		...program,
		browsers: program.browsers.filter((_setup, index) => index !== dropped),
		steps: program.steps.flatMap((step): Step[] => {
			if (step.kind !== 'request') {
				return [step];
			}
			const browser = browserOf(step, count);
			if (browser === dropped) {
				return [];
			}
			return [{ ...step, browser: browser > dropped ? browser - 1 : browser }];
		}),
	};
}
