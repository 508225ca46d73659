// What `maxLength` is checked against in SQL is the byte length of PostgreSQL's text form of the
// stored `jsonb`. jsonb keeps a number as `numeric` and prints it without an exponent: `1e308`,
// 6 bytes of JSON, is 309 bytes of text, and as many digits to parse, keep and print. A save whose
// JSON is small can thus cost PostgreSQL a thousand times its size; the store measures it here,
// before its write joins a batch, so no client value makes other users' statements slow.

// JSON.stringify writes an exponent always with its sign (`1e+21`, `5e-324`): a session without
// `e+` or `e-` has no exponent, and its printed size is at least its bytes.
const stringOrExponentNumber = /"(?:[^"\\]|\\.)*"|-?(\d+)(?:\.(\d+))?[eE]([+-]?\d+)/g;

/**
 * At least the bytes PostgreSQL's text of `json`, parsed as `jsonb`, has (exact for compact JSON
 * but for the separators PostgreSQL adds): its UTF-8 bytes, with each number written with an
 * exponent counted as the digits PostgreSQL prints for it.
 */
export function printedSizeAtLeast(json: string): number {
	const bytes = Buffer.byteLength(json);
	if (!json.includes('e+') && !json.includes('e-')) {
		return bytes;
	}
	let extra = 0;
	for (const match of json.matchAll(stringOrExponentNumber)) {
		const [token, whole, fraction = '', exponent] = match;
		if (whole === undefined || exponent === undefined) {
			continue;
		}
		const digits = whole.length + fraction.length;
		// Where the decimal point falls once the exponent is applied.
		const point = whole.length + Number(exponent);
		const printed = point >= digits ? point : point > 0 ? digits + 1 : 2 - point + digits;
		extra += printed + (token.startsWith('-') ? 1 : 0) - token.length;
	}
	return bytes + Math.max(0, extra);
}

/**
 * How the stored form counts an app's number: as PostgreSQL prints it (`printed`: plain JSON), or
 * as the bytes of its JSON (`json`: an encrypted field is a ciphertext of its JSON).
 */
export type NumberMeasure = 'printed' | 'json';

/**
 * At least the size of `JSON.stringify(value)` (0 when it gives `undefined`), found without
 * stringifying it: its UTF-8 bytes, with each number counted as `numbers` says (`printed`: as
 * `printedSizeAtLeast` counts it). The walk stops as soon as the count passes `stopAbove`, and
 * counts at least a byte for each value it visits, so it costs about what `stopAbove` bytes of
 * JSON cost to walk, whatever `value` holds; a refused 1 MB array of numbers costs what its
 * length does.
 *
 * What it cannot see into counts for what it is at least: an object with `toJSON` or of a class
 * counts 0 as a field (its `toJSON` may give `undefined`) and 1 in an array, where anything is
 * written as something. An object or array met twice makes the answer 0: it may be a cycle, which
 * `JSON.stringify` refuses, and saying so is left to it.
 */
export function jsonSizeAtLeast(value: unknown, stopAbove: number, numbers: NumberMeasure): number {
	if (!isSurelyWritten(value)) {
		return 0;
	}
	if (typeof value !== 'object' || value === null) {
		return valueSize(value, numbers);
	}
	let size = 0;
	// Arrays and plain objects still to count; what is in them is counted as it is read.
	const pending: object[] = [value];
	// Those counted so far: searched in a list while few (an ordinary session's are), in a set beyond.
	const counted: object[] = [];
	let countedSet: Set<object> | undefined;
	while (pending.length > 0 && size <= stopAbove) {
		const item = pending.pop()!;
		if (countedSet === undefined ? counted.includes(item) : countedSet.has(item)) {
			return 0;
		}
		if (countedSet !== undefined) {
			countedSet.add(item);
		} else if (counted.push(item) > 32) {
			countedSet = new Set(counted);
		}
		if (Array.isArray(item)) {
			const length: number = item.length;
			// Brackets, and a comma between elements; each element is at least a byte.
			size += 2 + Math.max(0, length - 1);
			for (let index = 0; index < length && size <= stopAbove; index++) {
				const element: unknown = item[index];
				if (typeof element === 'object' && element !== null && isCountable(element)) {
					pending.push(element);
				} else {
					size += valueSize(element, numbers);
				}
			}
			continue;
		}
		let members = 0;
		for (const name of Object.keys(item)) {
			const member: unknown = (item as Record<string, unknown>)[name];
			// A member whose value JSON leaves out (undefined, a function, what toJSON may drop) is not counted.
			if (!isSurelyWritten(member)) {
				continue;
			}
			size += name.length + 3;
			members++;
			if (typeof member === 'object' && member !== null) {
				pending.push(member);
			} else {
				size += valueSize(member, numbers);
			}
			if (size > stopAbove) {
				break;
			}
		}
		size += 2 + Math.max(0, members - 1);
	}
	return size;
}

// At least the bytes of what JSON.stringify writes for `value` in an array, when it is not an
// array or plain object to count member by member.
function valueSize(value: unknown, numbers: NumberMeasure): number {
	switch (typeof value) {
		case 'string':
			// A UTF-16 unit is at least a byte of UTF-8 (escapes only add), and two quotes.
			return value.length + 2;
		case 'number':
			return !Number.isFinite(value) ? 4 : numbers === 'printed' ? printedNumberSizeAtLeast(value) : 1;
		case 'boolean':
			return value ? 4 : 5;
		case 'bigint':
			// JSON.stringify refuses it (unless the app gave BigInt a toJSON): nothing to count.
			return 0;
		case 'object':
			// `null`, or what toJSON or a class makes of an object: something, at least a byte.
			return value === null ? 4 : 1;
		default:
			// undefined, a function or a symbol: `null` in an array.
			return 4;
	}
}

/**
 * At least the bytes PostgreSQL prints for the finite number `value`: every digit up to the decimal
 * point (`1e308`: 309), or after it up to the first significant one (`5e-324`: 326). `Math.log10`
 * may round across a power of ten, and the number's shortest JSON may lie across one from it, so
 * the exponent is taken one lower than it may be.
 */
function printedNumberSizeAtLeast(value: number): number {
	const magnitude = Math.abs(value);
	// Written without an exponent, PostgreSQL prints it as written: at least a digit. Only an
	// exponent makes the printed form much longer than the JSON.
	if (magnitude < 1e21 && (magnitude >= 1e-6 || magnitude === 0)) {
		return 1;
	}
	const exponent = Math.floor(Math.log10(magnitude));
	const sign = value < 0 ? 1 : 0;
	// At least `exponent + 1` digits before the point, or `0.`, `-exponent - 1` zeros and a digit.
	return sign + (magnitude >= 1 ? exponent : 1 - exponent);
}

// What JSON.stringify surely writes something for as an object's member: a value it never leaves
// out, or an array or plain object whose members the walk counts.
function isSurelyWritten(value: unknown): boolean {
	switch (typeof value) {
		case 'string':
		case 'number':
		case 'boolean':
			return true;
		case 'object':
			return value === null || isCountable(value);
		default:
			return false;
	}
}

// An array or a plain object that JSON.stringify writes member by member: no toJSON (own or
// inherited), and no prototype that could make it anything else (a boxed number, a Map).
function isCountable(value: object): boolean {
	if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
		return false;
	}
	if (Array.isArray(value)) {
		return true;
	}
	const prototype: unknown = Object.getPrototypeOf(value);
	return prototype === Object.prototype || prototype === null;
}
