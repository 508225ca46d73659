import test from 'ava';
import fc from 'fast-check';
import { InvalidSessionError } from '../../src/base/errors.js';
import { jsonSizeAtLeast, printedSizeAtLeast } from '../../src/codec/printed-size.js';
import { encodeSession, type FieldLimit, type SessionData, type StoredRow } from '../../src/codec/session-codec.js';
import { RequestSessions } from '../../src/store/request-sessions.js';

// A save whose field alone is larger than any write of it may be is refused from a measure of
// the field, not its JSON: JSON.stringify of a megabyte of `1e308` costs the app far more than a
// megabyte of string. The measure is a lower bound of what `assertFits` measures, so a save it
// accepts is never refused by it: these tests pin both sides.

const limit = (above: number, overrides: Partial<FieldLimit> = {}): FieldLimit => ({ above, numbers: 'printed', known: undefined, ...overrides });
const tooLargeNames = (encoded: ReturnType<typeof encodeSession>): string[] => ('tooLarge' in encoded ? [...encoded.tooLarge.keys()] : []);

test('the measure is at least nothing more than what assertFits measures: bytes, and numbers as PostgreSQL prints them', (t) => {
	const samples: unknown[] = [
		'héllo €', '\ud83d\ude00', 'a"b\\c\n', 0, -0, 7, -12.5, 1e21, 1e308, -1e308, 5e-324, 1e-7, 0.000001, 0.5, 123456789, 999999999999999999999, 9.999999999999999e22,
		Number.NaN, Number.POSITIVE_INFINITY, true, false, null, [], {}, [1e308, 'x', null], { a: [1, { b: 2e-300 }], c: 'd' },
		[undefined, () => 1, Symbol('s')], { gone: undefined, fn: () => 1, kept: 1 }, { when: new Date(0) }, [new Date(0)], Object.create(null) as object,
	];
	for (const value of samples) {
		const json = JSON.stringify(value) ?? '';
		const printed = jsonSizeAtLeast(value, Number.POSITIVE_INFINITY, 'printed');
		t.true(printed <= printedSizeAtLeast(json), `${json}: ${printed} <= ${printedSizeAtLeast(json)}`);
		const bytes = jsonSizeAtLeast(value, Number.POSITIVE_INFINITY, 'json');
		t.true(bytes <= Buffer.byteLength(json), `${json}: ${bytes} <= ${Buffer.byteLength(json)} bytes`);
	}
	// Close for what a client can send: numbers within a byte of their printed digits.
	t.is(jsonSizeAtLeast(1e308, Number.POSITIVE_INFINITY, 'printed'), 308);
	t.is(jsonSizeAtLeast([5e-324], Number.POSITIVE_INFINITY, 'printed'), 2 + 325);
	t.is(jsonSizeAtLeast('x'.repeat(10), Number.POSITIVE_INFINITY, 'printed'), 12);
	// Encrypted, a number is stored inside a ciphertext of its JSON.
	t.is(jsonSizeAtLeast([1e308, 1e308], Number.POSITIVE_INFINITY, 'json'), 5);
	// What JSON.stringify leaves out, or refuses, counts nothing.
	t.is(jsonSizeAtLeast(undefined, 100, 'printed'), 0);
	t.is(jsonSizeAtLeast(1n, 100, 'printed'), 0);
	t.is(jsonSizeAtLeast({ toJSON: () => 'x'.repeat(1000) }, 100, 'printed'), 0);
});

test('the measure is a lower bound for any JSON value, with numbers of every magnitude', (t) => {
	const number = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer().map((exponent) => 10 ** (exponent % 330)), fc.constantFrom(1e21, 1e-7, 9.999999999999999e22, 1e23, 5e-324, 1e-6));
	const value = fc.letrec((tie) => ({
		value: fc.oneof({ depthSize: 'small' }, number, fc.string({ unit: 'grapheme' }), fc.boolean(), fc.constant(null), fc.array(tie('value')), fc.dictionary(fc.string(), tie('value'))),
	})).value;
	fc.assert(fc.property(value, (sample) => {
		const json = JSON.stringify(sample);
		return jsonSizeAtLeast(sample, Number.POSITIVE_INFINITY, 'printed') <= printedSizeAtLeast(json)
			&& jsonSizeAtLeast(sample, Number.POSITIVE_INFINITY, 'json') <= Buffer.byteLength(json);
	}), { numRuns: 3000 });
	t.pass();
});

test('the measure stops once it passes the limit, and leaves a cycle to JSON.stringify', (t) => {
	const numbers = Array.from({ length: 166_000 }, () => 1e308);
	t.true(jsonSizeAtLeast(numbers, 4096, 'printed') > 4096);
	// What lies past the limit is never read.
	const beyond = { text: 'x'.repeat(5000), get later(): never {
		throw new Error('read past the limit');
	} };
	t.true(jsonSizeAtLeast(beyond, 4096, 'printed') > 4096);
	const cycle: Record<string, unknown> = { name: 'x' };
	cycle['self'] = cycle;
	t.is(jsonSizeAtLeast(cycle, 4096, 'printed'), 0);
	t.is(jsonSizeAtLeast({ long: 'y'.repeat(200), list: [cycle] }, 4096, 'printed'), 0);
});

test('a field just under the limit is encoded; one just over, in bytes or in printed numbers, is refused unencoded', (t) => {
	// {"p":"xxx…"} of exactly 4096 bytes.
	const fits = encodeSession({ p: 'x'.repeat(4096 - 8) }, limit(4096));
	t.deepEqual(tooLargeNames(fits), []);
	t.is('json' in fits ? Buffer.byteLength(fits.json) : 0, 4096);
	t.deepEqual(tooLargeNames(encodeSession({ p: 'x'.repeat(4096 - 5) }, limit(4096))), ['p']);
	// 13 × 1e308 print as 4,031 bytes, 14 as 4,341: 92 and 99 bytes of JSON.
	t.true(printedSizeAtLeast(JSON.stringify({ filters: Array.from({ length: 13 }, () => 1e308) })) <= 4096);
	t.deepEqual(tooLargeNames(encodeSession({ filters: Array.from({ length: 13 }, () => 1e308) }, limit(4096))), []);
	const refused = encodeSession({ user: 'ada', filters: Array.from({ length: 14 }, () => 1e308) }, limit(4096));
	t.deepEqual(tooLargeNames(refused), ['filters']);
	t.deepEqual([...refused.fields.keys()], ['user'], 'the other fields are encoded');
	const size = 'tooLarge' in refused ? refused.tooLarge.get('filters') ?? 0 : 0;
	t.true(size > 4096 && size <= printedSizeAtLeast(JSON.stringify({ filters: Array.from({ length: 14 }, () => 1e308) })), String(size));
	// Encrypted, the same numbers are 99 bytes of a ciphertext's plaintext.
	t.deepEqual(tooLargeNames(encodeSession({ filters: Array.from({ length: 14 }, () => 1e308) }, limit(4096, { numbers: 'json' }))), []);
});

test('a refused field is not stringified: what it holds past the limit is neither read nor checked', (t) => {
	const filters = [...Array.from({ length: 2000 }, () => 1e308), { toJSON: () => { throw new Error('stringified'); } }];
	t.deepEqual(tooLargeNames(encodeSession({ filters }, limit(4096))), ['filters']);
	// Without a limit (maxLength 0), or under it, it is encoded, and what JSON refuses is refused.
	t.throws(() => encodeSession({ filters }), { instanceOf: InvalidSessionError });
	t.throws(() => encodeSession({ filters: [1, { toJSON: () => { throw new Error('stringified'); } }] }, limit(4096)), { instanceOf: InvalidSessionError });
	t.throws(() => encodeSession({ big: 1n }, limit(4096)), { instanceOf: InvalidSessionError });
	const cycle: Record<string, unknown> = {};
	cycle['self'] = cycle;
	t.throws(() => encodeSession({ ['k'.repeat(5000)]: cycle }, limit(4096)), { instanceOf: InvalidSessionError });
	t.throws(() => encodeSession({ a: 'x\u0000y', filters }, limit(4096)), { instanceOf: InvalidSessionError, message: /\\u0000/ });
});

test('koa-session\'s own fields, and a field equal to what the request knew of it, are always encoded', (t) => {
	t.deepEqual(tooLargeNames(encodeSession({ _expire: 1_765_000_000_000, _maxAge: 86_400_000, note: 'hello world' }, limit(10))), ['note']);
	const big = { list: Array.from({ length: 100 }, () => 1e308) };
	const known = new Map([['big', JSON.stringify(big)]]);
	// A session this request wrote is known by its fields: the same value is unchanged, not written.
	t.deepEqual(tooLargeNames(encodeSession({ big }, limit(4096, { known }))), []);
	t.deepEqual(tooLargeNames(encodeSession({ big: { list: [...big.list.slice(1), 1e307] } }, limit(4096, { known }))), [], 'as large: it may be the same (assertFits decides)');
	t.deepEqual(tooLargeNames(encodeSession({ big: { list: [...big.list, 1e308] } }, limit(4096, { known }))), ['big'], 'measured past what was known');
	t.deepEqual(tooLargeNames(encodeSession({ big }, limit(4096, { known: new Map([['big', '[1]']]) }))), ['big']);
});

// A plain row as the read statement gives it.
function storedRow(data: SessionData): StoredRow {
	return { key: 'k', id: '1', json: JSON.stringify(data).replaceAll(/[:,]/g, '$& '), data, expiresOn: new Date(Date.now() + 3_600_000) };
}

test('the limit of a save is the larger of maxLength and the session it replaces: a session that does not grow is encoded', (t) => {
	const requests = new RequestSessions({ touchAfter: 0, fieldLevelWrites: true });
	const ctx = {};
	const row = storedRow({ note: 'x'.repeat(10_000), keep: 1 });
	requests.loaded(ctx, 'k', row, { kind: 'open', data: row.data, fields: undefined, stored: undefined, reencrypt: false });
	const over = requests.fieldLimit(ctx, 'k', 4096, 'printed');
	t.is(over?.above, Buffer.byteLength(row.json));
	t.deepEqual(tooLargeNames(encodeSession({ note: 'x'.repeat(9000), keep: 1 }, over)), [], 'over maxLength, smaller than the stored session');
	t.deepEqual(tooLargeNames(encodeSession({ note: 'x'.repeat(11_000), keep: 1 }, over)), ['note']);
	// Another key, a request without ctx, no limit.
	t.is(requests.fieldLimit(ctx, 'other', 4096, 'printed')?.above, 4096);
	t.is(requests.fieldLimit(undefined, 'k', 4096, 'printed')?.above, 4096);
	t.is(requests.fieldLimit(ctx, 'k', 0, 'printed'), undefined);
});
