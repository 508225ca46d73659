import test from 'ava';
import { decideSave, isWithinTouchWindow, type KnownSession, type SaveInput } from '../../src/store/save-decision.js';

// One test per row of the decision table in src/store/save-decision.ts, each with the smallest
// input that reaches that row and not an earlier one. A changed branch turns its row's test red
// (the closing note of the change that introduced this file lists the breaks tried).

const minute = 60_000;
const now = Date.UTC(2026, 11, 6, 12);
const day = 86_400_000;

// A session loaded a little earlier: stored expiry a day from 10 s ago.
const storedExpiry = now - 10_000 + day;
const fields = (entries: Record<string, unknown>): Map<string, string> => new Map(Object.entries(entries).map(([name, value]) => [name, JSON.stringify(value)]));
const koa = (expire: number) => ({ _expire: expire, _maxAge: day });

const known = (overrides: Partial<KnownSession> = {}): KnownSession => ({
	fields: fields({ user: 'ada', cart: [1], ...koa(storedExpiry) }),
	expiresOn: storedExpiry,
	subject: 'ada',
	reencrypt: false,
	...overrides,
});

// A save of that session now: the same fields, `_expire` moved to a day from now (10 s later).
const save = (overrides: Partial<SaveInput> = {}): SaveInput => ({
	known: known(),
	inRequest: true,
	endedElsewhere: false,
	regenerating: undefined,
	fields: fields({ user: 'ada', cart: [1], ...koa(now + day) }),
	tooLarge: new Set(),
	expiresOn: now + day,
	lifetime: day,
	subject: 'ada',
	changed: false,
	now,
	touchAfter: minute,
	fieldLevelWrites: true,
	...overrides,
});

test('refuse-new-key: a key the request does not know, after its session ended elsewhere, writes nothing', (t) => {
	t.deepEqual(decideSave(save({ known: undefined, endedElsewhere: true })), { rule: 'refuse-new-key', write: undefined });
});

test('move: a key the request does not know, while it regenerates a live session, takes that session\'s row', (t) => {
	t.deepEqual(decideSave(save({ known: undefined, regenerating: 'old key' })), { rule: 'move', write: { kind: 'move', from: 'old key' } });
	t.is(decideSave(save({ known: undefined, regenerating: 'old key', endedElsewhere: true })).rule, 'refuse-new-key', 'never once its session ended elsewhere');
});

test('insert: a key the request does not know (koa-session made it) goes in as a new row', (t) => {
	t.deepEqual(decideSave(save({ known: undefined })), { rule: 'insert', write: { kind: 'insert' } });
});

test('upsert: a key saved without a request replaces whatever row it has', (t) => {
	t.deepEqual(decideSave(save({ known: undefined, inRequest: false })), { rule: 'upsert', write: { kind: 'upsert' } });
});

test('ended: a session the request knows as ended is never written again', (t) => {
	t.deepEqual(decideSave(save({ known: 'ended', changed: true })), { rule: 'ended', write: undefined });
});

test('touch: an unflagged save that moves only `_expire`, within touchAfter, writes nothing', (t) => {
	t.deepEqual(decideSave(save()), { rule: 'touch', write: undefined });
});

test('touch does not apply past the window: the same save a minute and more later moves the expiry', (t) => {
	const later = save({ expiresOn: storedExpiry + minute, fields: fields({ user: 'ada', cart: [1], ...koa(storedExpiry + minute) }) });
	t.deepEqual(decideSave(later), {
		rule: 'fields',
		write: { kind: 'updateLive', replace: false, written: ['_expire', '_maxAge'], removed: [], resealed: [], writeSubject: false, keepExpiry: false },
	});
});

test('whole: with fieldLevelWrites off, a changed save replaces the whole session and writes the subject', (t) => {
	t.deepEqual(decideSave(save({ changed: true, fieldLevelWrites: false })), {
		rule: 'whole',
		write: { kind: 'updateLive', replace: true, written: ['user', 'cart', '_expire', '_maxAge'], removed: [], resealed: [], writeSubject: true, keepExpiry: false },
	});
});

test('reencrypt: a row under an older secret re-seals the fields the save did not change, even an unflagged save within the window', (t) => {
	t.deepEqual(decideSave(save({ known: known({ reencrypt: true }) })), {
		rule: 'reencrypt',
		write: { kind: 'updateLive', replace: false, written: ['_expire', '_maxAge'], removed: [], resealed: ['user', 'cart'], writeSubject: false, keepExpiry: false },
	});
	const changed = save({ known: known({ reencrypt: true }), changed: true, fields: fields({ user: 'ada', cart: [2], ...koa(now + day) }) });
	t.deepEqual(decideSave(changed).write, { kind: 'updateLive', replace: false, written: ['cart', '_expire', '_maxAge'], removed: [], resealed: ['user'], writeSubject: false, keepExpiry: false }, 'a changed field is written, not re-sealed');
});

test('keep-expiry-noop: a flagged save whose fields all equal the stored ones, within the window, writes nothing', (t) => {
	t.deepEqual(decideSave(save({ changed: true })), { rule: 'keep-expiry-noop', write: undefined });
});

test('keep-expiry: a changed field within the window is written alone; the stored expiry and `_expire` stay', (t) => {
	const changed = save({ changed: true, fields: fields({ user: 'ada', cart: [1, 2], ...koa(now + day) }) });
	t.deepEqual(decideSave(changed), {
		rule: 'keep-expiry',
		write: { kind: 'updateLive', replace: false, written: ['cart'], removed: [], resealed: [], writeSubject: false, keepExpiry: true },
	});
});

test('fields: a maxAge change writes koa-session\'s fields together, with the changed field and the removed one', (t) => {
	const changed = save({ changed: true, fields: fields({ user: 'ada', note: 'x', _expire: now + 2 * day, _maxAge: 2 * day }), expiresOn: now + 2 * day });
	t.deepEqual(decideSave(changed), {
		rule: 'fields',
		write: { kind: 'updateLive', replace: false, written: ['note', '_expire', '_maxAge'], removed: ['cart'], resealed: [], writeSubject: false, keepExpiry: false },
	});
});

test('keep-expiry: a changed subject is written, with the field it comes from', (t) => {
	const changed = save({ changed: true, fields: fields({ user: 'bob', cart: [1], ...koa(now + day) }), subject: 'bob' });
	t.deepEqual(decideSave(changed), {
		rule: 'keep-expiry',
		write: { kind: 'updateLive', replace: false, written: ['user'], removed: [], resealed: [], writeSubject: true, keepExpiry: true },
	});
});

test('a field too large to encode is a changed field, written (so refused) by every rule that writes, never a removed one', (t) => {
	// The save holds `cart` and `note`, too large to encode: only their names are known.
	const oversized = { fields: fields({ user: 'ada', ...koa(now + day) }), tooLarge: new Set(['cart', 'note']) };
	t.deepEqual(decideSave(save(oversized)), {
		rule: 'keep-expiry',
		write: { kind: 'updateLive', replace: false, written: ['cart', 'note'], removed: [], resealed: [], writeSubject: false, keepExpiry: true },
	}, 'never touch, and never a removal of `cart`');
	t.deepEqual(decideSave(save({ ...oversized, fieldLevelWrites: false })), {
		rule: 'whole',
		write: { kind: 'updateLive', replace: true, written: ['user', '_expire', '_maxAge', 'cart', 'note'], removed: [], resealed: [], writeSubject: true, keepExpiry: false },
	});
	t.deepEqual(decideSave(save({ ...oversized, known: 'ended' })), { rule: 'ended', write: undefined }, 'an ended session still writes nothing');
});

test('the touch window: later by less than touchAfter and than a quarter of the lifetime; never earlier', (t) => {
	t.true(isWithinTouchWindow(now + day, now + day + minute - 1, day, minute));
	t.false(isWithinTouchWindow(now + day, now + day + minute, day, minute), 'touchAfter bounds it');
	t.false(isWithinTouchWindow(now + 2 * minute, now + 2 * minute - 1, day, minute), 'an earlier expiry shortens the session');
	// A 2-minute session: a quarter of it is 30 s, less than touchAfter.
	t.true(isWithinTouchWindow(now + 90_000, now + 90_000 + 30_000 - 1, 2 * minute, minute));
	t.false(isWithinTouchWindow(now + 90_000, now + 90_000 + 30_000, 2 * minute, minute), 'a quarter of the lifetime bounds it');
});

test('the touch window follows the lifetime the app configured, not the 10 s longer one koa-session passes the store', (t) => {
	// maxAge 3 s: koa-session passes 13 s. A save 800 ms after the stored one is past 3 s / 4.
	const stored = now + 13_000;
	t.false(decideSave(save({
		known: known({ expiresOn: stored, fields: fields({ user: 'ada', cart: [1], _expire: now + 3000, _maxAge: 3000 }) }),
		fields: fields({ user: 'ada', cart: [1], _expire: now + 3800, _maxAge: 3000 }),
		expiresOn: stored + 800,
		lifetime: 3000,
	})).rule === 'touch');
});
