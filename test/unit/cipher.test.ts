import test from 'ava';
import { SessionCipher } from '../../src/codec/cipher.js';
import { SessionTamperedError } from '../../src/base/errors.js';
import { encodeSession, type SessionData } from '../../src/codec/session-codec.js';

// SessionCipher on its own: what a stored row must be to open, without a database. The tests
// over HTTP and on stored rows are in test/encryption.test.ts.

const newSecret = 'n'.repeat(32);
const oldSecret = 'o'.repeat(32);
const digest = 'ab'.repeat(32);
const otherDigest = 'cd'.repeat(32);
const session = { userId: 'u1', admin: false, cart: [1, 2], _expire: 1_800_000_000_000, _maxAge: 86_400_000 };

const sealed = (cipher: SessionCipher, data: SessionData = session, at = digest): SessionData => JSON.parse(cipher.seal(at, encodeSession(data).fields)) as SessionData;

test('a sealed session opens to what was sealed; koa-session\'s fields stay plain, the others are ciphertexts', (t) => {
	const cipher = new SessionCipher([newSecret], undefined);
	const stored = sealed(cipher);
	t.is(stored['_expire'], session._expire);
	t.is(stored['_maxAge'], session._maxAge);
	for (const name of ['userId', 'admin', 'cart']) {
		t.regex(String(stored[name]), /^pgse:v1:[\w-]{6}:[\w-]+$/);
	}
	const opened = cipher.open(digest, stored);
	t.is(opened.kind, 'open');
	t.deepEqual(opened.kind === 'open' ? opened.data : undefined, session);
	t.false(opened.kind === 'open' && opened.reencrypt);
});

test('a ciphertext moved to another row or another field is tampered, naming the field and never its value', (t) => {
	const cipher = new SessionCipher([newSecret], undefined);
	const stored = sealed(cipher);
	const moved = cipher.open(otherDigest, stored);
	t.is(moved.kind, 'tampered');
	const swapped = cipher.open(digest, { ...stored, userId: stored['cart'], cart: stored['userId'] });
	t.is(swapped.kind, 'tampered');
	if (swapped.kind === 'tampered') {
		t.true(swapped.error instanceof SessionTamperedError);
		t.is(swapped.error.reason, 'authentication');
		t.false(swapped.error.message.includes('u1'));
	}
});

test('plain and mixed rows are refused; within encryptionMigration\'s window a plain row opens and asks for re-encryption', (t) => {
	const strict = new SessionCipher([newSecret], undefined);
	const plain = strict.open(digest, session);
	t.is(plain.kind === 'tampered' ? plain.error.reason : plain.kind, 'plain');
	const mixed = strict.open(digest, { ...sealed(strict), userId: 'u2' });
	t.is(mixed.kind === 'tampered' ? mixed.error.reason : mixed.kind, 'mixed');
	const migrating = new SessionCipher([newSecret], new Date(Date.now() + 60_000));
	const opened = migrating.open(digest, session);
	t.is(opened.kind, 'open');
	t.true(opened.kind === 'open' && opened.reencrypt);
});

test('rows of an older listed secret open and ask for re-encryption; rows of an unlisted one are unknown, not tampered', (t) => {
	const before = new SessionCipher([oldSecret], undefined);
	const stored = sealed(before);
	const rotated = new SessionCipher([newSecret, oldSecret], undefined).open(digest, stored);
	t.is(rotated.kind, 'open');
	t.true(rotated.kind === 'open' && rotated.reencrypt);
	t.is(new SessionCipher([newSecret], undefined).open(digest, stored).kind, 'unknownKey');
});

test('seal writes only the fields named', (t) => {
	const cipher = new SessionCipher([newSecret], undefined);
	const stored = JSON.parse(cipher.seal(digest, encodeSession(session).fields, ['cart', '_expire'])) as SessionData;
	t.deepEqual(Object.keys(stored), ['cart', '_expire']);
});
