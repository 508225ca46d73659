import test from 'ava';
import { kidOf, paddingBlock, SessionCipher } from '../../src/codec/cipher.js';
import { SessionTamperedError } from '../../src/base/errors.js';
import { encryptedCodec } from '../../src/codec/row-codec.js';
import { encodeSession, type SessionData } from '../../src/codec/session-codec.js';
import { SessionCipher as CipherBeforePadding } from '../fixtures/cipher-before-padding.js';

// SessionCipher on its own: what a stored row must be to open, without a database. The tests
// over HTTP and on stored rows are in test/encryption.test.ts.

const newSecret = 'n'.repeat(32);
const oldSecret = 'o'.repeat(32);
const digest = 'ab'.repeat(32);
const otherDigest = 'cd'.repeat(32);
const session = { userId: 'u1', admin: false, cart: [1, 2], _expire: 1_800_000_000_000, _maxAge: 86_400_000 };

const sealed = (cipher: SessionCipher | CipherBeforePadding, data: SessionData = session, at = digest): SessionData => JSON.parse(cipher.seal(at, encodeSession(data).fields)) as SessionData;

function reasonOf(opened: ReturnType<SessionCipher['open']>): string {
	return opened.kind === 'tampered' ? opened.error.reason : opened.kind;
}

test('a sealed session opens to what was sealed; koa-session\'s fields stay plain, the others are ciphertexts', (t) => {
	const cipher = new SessionCipher([newSecret]);
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

test('open() gives each field\'s plain JSON, to compare a save with, and its JSON as stored', (t) => {
	const cipher = new SessionCipher([newSecret]);
	const stored = sealed(cipher);
	const opened = cipher.open(digest, stored);
	if (opened.kind !== 'open') {
		t.fail(opened.kind);
		return;
	}
	t.deepEqual(Object.fromEntries(opened.fields), Object.fromEntries(encodeSession(session).fields));
	t.deepEqual(Object.fromEntries(opened.stored), Object.fromEntries(Object.entries(stored).map(([name, value]) => [name, JSON.stringify(value)])));
});

test('a ciphertext moved to another row or another field is tampered, naming the field and never its value', (t) => {
	const cipher = new SessionCipher([newSecret]);
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

test('plain and mixed rows are refused, a plain one naming encryptionMigration; within its window a plain row opens and asks for re-encryption', (t) => {
	const strict = new SessionCipher([newSecret]);
	const plain = strict.open(digest, session);
	t.is(reasonOf(plain), 'plain');
	t.regex(plain.kind === 'tampered' ? plain.error.message : '', /`encryptionMigration: \{ acceptPlainRowsUntil \}`/);
	const mixed = strict.open(digest, { ...sealed(strict), userId: 'u2' });
	t.is(reasonOf(mixed), 'mixed');
	t.notRegex(mixed.kind === 'tampered' ? mixed.error.message : 'encryptionMigration', /encryptionMigration/, 'a table writer\'s plain field in an encrypted row is no migration');
	const migrating = new SessionCipher([newSecret], { acceptPlainRowsUntil: new Date(Date.now() + 60_000) });
	const opened = migrating.open(digest, session);
	t.is(opened.kind, 'open');
	t.true(opened.kind === 'open' && opened.reencrypt);
});

test('rows of an older listed secret open and ask for re-encryption; rows of an unlisted one are unknown, not tampered', (t) => {
	const before = new SessionCipher([oldSecret]);
	const stored = sealed(before);
	const rotated = new SessionCipher([newSecret, oldSecret]).open(digest, stored);
	t.is(rotated.kind, 'open');
	t.true(rotated.kind === 'open' && rotated.reencrypt);
	t.is(new SessionCipher([newSecret]).open(digest, stored).kind, 'unknownKey');
});

test('a key id changed by a table writer is tampering, told apart from a retired secret: the ciphertext authenticates under a listed secret', (t) => {
	const cipher = new SessionCipher([newSecret, oldSecret]);
	const stored = sealed(cipher);
	const userId = String(stored['userId']);
	for (const kid of [kidOf('some secret no one ever listed, 32+ bytes'), 'AAAAAA']) {
		const changed = cipher.open(digest, { ...stored, userId: userId.replace(`:${kidOf(newSecret)}:`, `:${kid}:`) });
		t.is(reasonOf(changed), 'authentication');
		t.deepEqual(changed.kind === 'tampered' ? changed.error.fields : [], ['userId']);
	}
	// To another listed secret's id: that secret does not authenticate it.
	t.is(reasonOf(cipher.open(digest, { ...stored, userId: userId.replace(`:${kidOf(newSecret)}:`, `:${kidOf(oldSecret)}:`) })), 'authentication');
});

test('only the canonical base64url of a ciphertext authenticates: set unused trailing bits or a lone extra character are tampering', (t) => {
	const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
	const payloadOf = (value: string) => value.slice(value.lastIndexOf(':') + 1);
	const cipher = new SessionCipher([newSecret]);
	// `true` pads to 16 bytes: 12 + 16 + 16 = 44 bytes, whose base64 ends in a group of 3
	// characters with 2 unused bits.
	const short = String(sealed(cipher, { v: true })['v']);
	t.is(payloadOf(short).length % 4, 3);
	const last = alphabet.indexOf(short.at(-1) ?? '');
	t.is(last & 0b11, 0, 'the encoder leaves the unused bits clear');
	const withTrailingBits = `${short.slice(0, -1)}${alphabet[last | 0b01]}`;
	// 20 characters pad to 32 bytes: 60 bytes, 80 characters of whole groups.
	const long = String(sealed(cipher, { v: 'x'.repeat(20) })['v']);
	t.is(payloadOf(long).length % 4, 0);
	const withLoneCharacter = `${long}A`;
	for (const [forged, original] of [[withTrailingBits, short], [withLoneCharacter, long]] as const) {
		t.deepEqual(Buffer.from(payloadOf(forged), 'base64url'), Buffer.from(payloadOf(original), 'base64url'), 'Node decodes it to the same bytes');
		// A fresh cipher, so that no plaintext it remembers stands in for decryption.
		t.is(reasonOf(new SessionCipher([newSecret]).open(digest, { v: forged })), 'authentication', forged.slice(-6));
		t.is(new SessionCipher([newSecret]).open(digest, { v: original }).kind, 'open');
	}
});

test('plaintexts are padded to a multiple of 16 bytes: values up to 16 bytes of JSON give ciphertexts of one length, and the padding is not part of the value', (t) => {
	const cipher = new SessionCipher([newSecret]);
	const lengthOf = (value: unknown) => String(sealed(cipher, { v: value })['v']).length;
	const short = [true, false, null, 0, 123_456_789_012_345, 'admin', 'user', 'moderator', 'billing-ad' /* 12 bytes of JSON */, 'x'.repeat(14)];
	t.deepEqual(new Set(short.map(lengthOf)), new Set([lengthOf(true)]), 'every value of at most 16 bytes of JSON');
	t.true(lengthOf('x'.repeat(15)) > lengthOf(true), '17 bytes of JSON are the next bucket');
	t.is(lengthOf('x'.repeat(15)), lengthOf('x'.repeat(30)), '17 to 32 bytes alike');
	t.is(lengthOf('é'.repeat(7)), lengthOf(true), 'bytes are counted, not characters: 16 bytes of UTF-8');
	const opened = cipher.open(digest, sealed(cipher, { role: 'admin' }));
	t.deepEqual(opened.kind === 'open' ? [opened.data, [...opened.fields]] : undefined, [{ role: 'admin' }, [['role', '"admin"']]]);
	t.false(opened.kind === 'open' && opened.reencrypt, 'a padded row needs no rewrite');
	t.is(paddingBlock, 16);
});

test('a rolling deploy: the version before padding reads padded rows, and this one reads its unpadded rows and pads them on the next save', (t) => {
	const before = new CipherBeforePadding([newSecret], undefined);
	const now = new SessionCipher([newSecret]);
	const padded = sealed(now);
	const readByOld = before.open(digest, padded);
	t.deepEqual(readByOld.kind === 'open' ? readByOld.data : readByOld.kind, session);
	const unpadded = sealed(before);
	const readByNew = now.open(digest, unpadded);
	t.deepEqual(readByNew.kind === 'open' ? readByNew.data : readByNew.kind, session);
	t.true(readByNew.kind === 'open' && readByNew.reencrypt, 'fields the version before wrote are rewritten, padded');
	const fromPadded = now.open(digest, padded);
	t.deepEqual(readByNew.kind === 'open' ? [...readByNew.fields] : [], fromPadded.kind === 'open' ? [...fromPadded.fields] : ['not open'], 'a save compares the same plain JSON either way');
});

test('the stored-length limit of an encrypted store covers padding: a session that fit unpadded fits padded', (t) => {
	const limitOf = encryptedCodec(new SessionCipher([newSecret])).storedLengthLimit;
	const before = new CipherBeforePadding([newSecret], undefined);
	const now = new SessionCipher([newSecret]);
	// PostgreSQL's text of a jsonb object: `{"a": 1, "b": 2}`.
	const storedText = (data: SessionData) => Buffer.byteLength(`{${Object.entries(data).map(([name, value]) => `${JSON.stringify(name)}: ${JSON.stringify(value)}`).join(', ')}}`);
	let worst = 0;
	for (let bytes = 1; bytes <= 200; bytes += 1) {
		// Many one-letter fields of one size: the most padding per stored byte.
		const data = Object.fromEntries(Array.from({ length: 20 }, (_, index) => [String.fromCodePoint(97 + index), 'x'.repeat(Math.max(0, bytes - 2))]));
		const unpadded = storedText(sealed(before, data));
		const padded = storedText(sealed(now, data));
		worst = Math.max(worst, padded / unpadded);
		t.true(padded <= limitOf(unpadded), `${bytes} bytes of JSON per field: ${padded} > ${limitOf(unpadded)}`);
	}
	t.true(worst > 1.2, `padding grows small fields by more than a fifth (here ${worst.toFixed(2)}): the allowance is needed`);
	t.is(limitOf(0), 0, 'no limit stays no limit');
});

test('decrypting only (decryptionKeys): encrypted, plain and mixed rows open; a row with an encrypted field asks to be rewritten; nothing is sealed', (t) => {
	const before = new SessionCipher([oldSecret]);
	const off = new SessionCipher([oldSecret], { decryptOnly: true, option: 'decryptionKeys' });
	const encrypted = off.open(digest, sealed(before));
	t.deepEqual(encrypted.kind === 'open' ? [encrypted.data, encrypted.reencrypt] : encrypted.kind, [session, true]);
	const mixed = off.open(digest, { ...sealed(before), userId: 'u2' });
	t.deepEqual(mixed.kind === 'open' ? [mixed.data['userId'], mixed.reencrypt] : mixed.kind, ['u2', true]);
	const plain = off.open(digest, session);
	t.deepEqual(plain.kind === 'open' ? [plain.data, plain.reencrypt] : plain.kind, [session, false]);
	t.is(reasonOf(off.open(otherDigest, sealed(before))), 'authentication', 'a ciphertext still has to authenticate');
	t.is(off.open(digest, sealed(new SessionCipher([newSecret]))).kind, 'unknownKey');
	t.throws(() => off.seal(digest, encodeSession(session).fields), { message: /only decrypts/ });
});

test('seal writes only the fields named', (t) => {
	const cipher = new SessionCipher([newSecret]);
	const stored = JSON.parse(cipher.seal(digest, encodeSession(session).fields, ['cart', '_expire'])) as SessionData;
	t.deepEqual(Object.keys(stored), ['cart', '_expire']);
});
