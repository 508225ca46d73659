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
	throw new TypeError(invalidMessage(name, expected, received));
}

function invalidMessage(name: string, expected: string, received: unknown): string {
	return `Expected \`${name}\` to be ${expected}, got ${describe(received)}`;
}

/**
 * Throws the `TypeError` of `invalid()` for a bad argument that comes from a client (a URL
 * parameter), shaped as a client error: Koa answers an error with `status` 400 and `expose` with
 * a 400 and its message, where it would answer a plain `TypeError` with a 500. Give `received` as
 * `Redacted`: the message is shown to the client.
 */
export function invalidInput(name: string, expected: string, received: Redacted): never {
	throw Object.assign(new TypeError(invalidMessage(name, expected, received)), { status: 400, expose: true });
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
