// The `TypeError`s of bad options and arguments, worded one way everywhere:
// "Expected `name` to be <expected>, got <received>".

/**
 * A received value that must not be echoed (a secret, a client's key), given to `invalid()` as
 * words that describe it instead.
 */
export class Redacted {
	constructor(readonly text: string) {}
}

function describe(value: unknown): string {
	if (value instanceof Redacted) {
		return value.text;
	}
	if (typeof value === 'string') {
		return JSON.stringify(value);
	}
	if (typeof value === 'function') {
		return 'a function';
	}
	if (Array.isArray(value)) {
		return 'an array';
	}
	return value === null ? 'null' : typeof value === 'object' ? 'an object' : String(value);
}

/** Throws the `TypeError` this package uses for a bad option or argument. */
export function invalid(name: string, expected: string, received: unknown): never {
	throw new TypeError(`Expected \`${name}\` to be ${expected}, got ${describe(received)}`);
}

/** Validates an optional whole number of at least `minimum`, giving `fallback` when absent. */
export function integerAtLeast(name: string, value: unknown, minimum: number, fallback: number): number {
	if (value === undefined) {
		return fallback;
	}
	if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < minimum) {
		invalid(name, `an integer >= ${minimum}`, value);
	}
	return value;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}
