import test from 'ava';
import { InvalidSessionError } from '../../src/base/errors.js';
import { encodeSession, fieldsOf, isWellFormed, subjectOf } from '../../src/codec/session-codec.js';
import { printedSizeAtLeast } from '../../src/codec/printed-size.js';

test('a session is encoded as JSON.stringify would, field by field, leaving out what JSON leaves out', (t) => {
	const session = { b: 1, a: { toJSON: () => 'x' }, gone: undefined, fn: () => 1, list: [undefined] };
	const encoded = encodeSession(session);
	t.is(encoded.json, JSON.stringify(session));
	t.deepEqual([...encoded.fields.keys()], ['b', 'a', 'list']);
	t.is(encoded.fields.get('a'), '"x"');
});

test('what PostgreSQL cannot store in jsonb is refused before it is sent: not an object, \\u0000, a lone surrogate, a cycle', (t) => {
	for (const bad of [null, [], 'text']) {
		t.throws(() => encodeSession(bad), { instanceOf: InvalidSessionError });
	}
	t.throws(() => encodeSession({ a: 'x\u0000y' }), { instanceOf: InvalidSessionError, message: /\\u0000/ });
	t.throws(() => encodeSession({ a: '\ud800' }), { instanceOf: InvalidSessionError, message: /surrogate/ });
	const cycle: Record<string, unknown> = {};
	cycle['self'] = cycle;
	t.throws(() => encodeSession(cycle), { instanceOf: InvalidSessionError, code: 'ERR_PGSTORE_INVALID_SESSION' });
	t.notThrows(() => encodeSession({ a: '\\u0000 is text here', b: '\ud83d\ude00' }), 'an escaped backslash and a surrogate pair are fine');
});

test('a session is measured by its UTF-8 size, each number as PostgreSQL prints it', (t) => {
	t.is(printedSizeAtLeast('{"a":"€€"}'), 14);
	t.is(printedSizeAtLeast('{"a":1e+308}'), 6 + 309);
	t.is(printedSizeAtLeast('{"a":"1e+308"}'), 14, 'in a string it is text');
	t.is(printedSizeAtLeast('[5e-324]'), 2 + 326);
});

test('fieldsOf gives each stored field\'s JSON; isWellFormed finds lone surrogates', (t) => {
	t.deepEqual([...fieldsOf({ a: 1, b: 'x' })], [['a', '1'], ['b', '"x"']]);
	t.true(isWellFormed('a\ud83d\ude00'));
	t.false(isWellFormed('a\udc00'));
});

test('subjectOf stores text, null for none, and refuses what is not a subject', (t) => {
	t.is(subjectOf(undefined, { userId: 1 }), undefined);
	t.is(subjectOf((session) => session['userId'], { userId: 7 }), '7');
	t.is(subjectOf((session) => session['userId'], {}), null);
	t.throws(() => subjectOf(() => '', {}), { instanceOf: TypeError, message: /subject\(session\)/ });
	t.throws(() => subjectOf(() => Number.NaN, {}), { instanceOf: TypeError });
});
