import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomFillSync } from 'node:crypto';
import { SessionTamperedError, type TamperReason } from '../base/errors.js';
import { Redacted, invalid } from '../base/validate.js';
import { isKoaSessionValue, koaSessionFields } from './koa-fields.js';
import type { SessionData } from './session-codec.js';

// The stored form of an encrypted field's value, one JSON string:
// `pgse:v1:<kid>:<base64url(nonce ‖ ciphertext ‖ tag)>`. Any string is also a valid plain value,
// so it is told apart by context: with encryption on, every field but koa-session's own must
// have this form.
const prefix = 'pgse:';
const version = 'pgse:v1:';
const storedPattern = /^pgse:v1:([A-Za-z0-9_-]{6}):([A-Za-z0-9_-]+)$/;
const nonceBytes = 12;
const tagBytes = 16;
// The plaintext of a field is its JSON followed by spaces up to a multiple of this many bytes, so
// that a ciphertext's length tells a reader only the bucket: `true` and `false`, `"user"` and
// `"admin"`, every number below 10^15 look alike. Spaces after JSON are whitespace JSON.parse
// skips, so a version that does not pad reads these plaintexts unchanged (rolling deploys). The
// size, and what it costs: docs/encryption.md#overhead.
export const paddingBlock = 16;
const space = 0x20;
const salt = Buffer.from('koa-pgstore/data/v1');
const infoPrefix = Buffer.from('koa-pgstore/data/v1/');
const aadPrefix = Buffer.from('pgse:v1\0');
// Derived keys kept for repeat requests of one session (and the write after a read), so HKDF
// runs once per session rather than per request. 10,000 × (32 bytes + the map key) ≈ 2 MB.
const derivedKeysKept = 10_000;
// Plaintexts of ciphertexts this store authenticated on a read, by (digest, field name, stored
// string): a session read again unchanged costs no decryption. A hit is the very ciphertext, in
// the very row and field, that authenticated before, so it proves what decrypting would. Bounded
// by UTF-16 units of keys and values: 2,000,000 ≈ 4 MB.
const plaintextUnitsKept = 2_000_000;

/** A secret of `encryptionKeys`, with the id its ciphertexts carry. */
interface DataSecret {
	readonly secret: Buffer;
	/** 6 base64url chars: picks the secret on read, whatever the order of the list. */
	readonly kid: string;
}

/** What a stored session is, once opened. */
export type OpenedSession =
	/** Every field authenticated (or a plain row within the migration window). */
	| {
		readonly kind: 'open';
		readonly data: SessionData;
		/** Each field's plain JSON (without padding), to compare a save with. */
		readonly fields: Map<string, string>;
		/** Each field's JSON as stored: for an encrypted field the JSON string of its ciphertext. */
		readonly stored: Map<string, string>;
		/**
		 * The next save must rewrite every field: some field is under an older secret or not padded,
		 * the row is plain (within the migration window), or, when decrypting only, some field is
		 * encrypted.
		 */
		readonly reencrypt: boolean;
	}
	/** A field failed authentication, or the row is plain or mixed: never returned. */
	| { readonly kind: 'tampered'; readonly error: SessionTamperedError }
	/** A field is under a secret no longer listed: dropping it ended the session. */
	| { readonly kind: 'unknownKey' };

/** How a {@link SessionCipher} reads and writes. */
export interface CipherOptions {
	/** Until then a row without any encrypted field is read as plain (`encryptionMigration`). */
	readonly acceptPlainRowsUntil?: Date | undefined;
	/**
	 * Turning encryption off (`decryptionKeys`): the secrets only read. Plain and mixed rows are
	 * read as they are, a row with an encrypted field asks to be rewritten, and nothing is sealed.
	 */
	readonly decryptOnly?: boolean;
	/** The option the secrets came from, for the `TypeError` of two secrets with one key id. */
	readonly option?: string;
}

/**
 * Encrypts and decrypts the values of a session's top-level fields (AES-256-GCM), each with a
 * key derived by HKDF-SHA256 from the secret and the row's key digest, and bound (as associated
 * data) to that digest and the field's name, so that a ciphertext moved to another row or field,
 * or a row whose key was changed, does not decrypt.
 */
export class SessionCipher {
	readonly #secrets: readonly DataSecret[];
	readonly #byKid: ReadonlyMap<string, DataSecret>;
	readonly #acceptPlainRowsUntil: number;
	readonly #decryptOnly: boolean;
	readonly #derived = new TwoGenerationCache<Buffer>(derivedKeysKept, () => 1);
	readonly #plaintexts = new TwoGenerationCache<string>(plaintextUnitsKept, (id, json) => id.length + json.length);
	// Nonces are taken from a buffer of random bytes filled 256 nonces at a time: a
	// randomBytes(12) call per field cost as much as the encryption itself (bench/NOTES.md).
	readonly #nonces = Buffer.alloc(nonceBytes * 256);
	#nonceOffset = this.#nonces.length;

	/**
	 * @param secrets Newest first; validated already (`encryptionKeys`, or `decryptionKeys`).
	 */
	constructor(secrets: readonly string[], { acceptPlainRowsUntil, decryptOnly = false, option = 'encryptionKeys' }: CipherOptions = {}) {
		this.#secrets = secrets.map((secret) => ({ secret: Buffer.from(secret), kid: kidOf(secret) }));
		const byKid = new Map<string, DataSecret>();
		for (const [index, secret] of this.#secrets.entries()) {
			if (byKid.has(secret.kid)) {
				// A chance of 2^-32 per pair: not worth trying several secrets on every read.
				invalid(`${option}[${index}]`, 'a secret whose key id differs from every other\'s (generate another)', new Redacted('a secret with the same key id'));
			}
			byKid.set(secret.kid, secret);
		}
		this.#byKid = byKid;
		this.#acceptPlainRowsUntil = acceptPlainRowsUntil?.getTime() ?? -Infinity;
		this.#decryptOnly = decryptOnly;
	}

	/**
	 * The stored fields `names` of a session as a JSON object, each value encrypted with the newest
	 * secret (koa-session's own fields plain).
	 * @param digest The row's key digest (hex).
	 * @param fields Each field's plain JSON, as `encodeSession` gives it.
	 */
	seal(digest: string, fields: ReadonlyMap<string, string>, names: Iterable<string> = fields.keys()): string {
		const newest = this.#secrets[0];
		if (newest === undefined || this.#decryptOnly) {
			throw new Error('No encryption secret: this cipher only decrypts');
		}
		const digestBytes = Buffer.from(digest, 'hex');
		const key = this.#keyOf(newest, digest, digestBytes);
		const members: string[] = [];
		for (const name of names) {
			const json = fields.get(name);
			if (json === undefined) {
				continue;
			}
			// koa-session's own fields stay plain (the expiry travels with them) when they have the
			// type koa-session gives them; anything else under these names is encrypted like any field.
			if (koaSessionFields.has(name) && isKoaSessionValue(name, JSON.parse(json))) {
				members.push(`${JSON.stringify(name)}:${json}`);
				continue;
			}
			const nonce = this.#nextNonce();
			const cipher = createCipheriv('aes-256-gcm', key, nonce);
			cipher.setAAD(aadOf(digestBytes, name));
			const body = Buffer.concat([nonce, cipher.update(padded(json)), cipher.final(), cipher.getAuthTag()]);
			const stored = `${version}${newest.kid}:${body.toString('base64url')}`;
			// Not remembered here: the retained strings cost the GC more than a later decryption
			// (bench/encryption.ts; figures in bench/NOTES.md).
			// base64url needs no JSON escaping.
			members.push(`${JSON.stringify(name)}:"${stored}"`);
		}
		return `{${members.join(',')}}`;
	}

	/**
	 * Decrypts a stored session. Never gives part of one: a single field that fails makes the
	 * whole session tampered. Every kind of tampering is told apart from a secret no longer listed,
	 * which alone stays silent: a key id no listed secret has is tried with each of them, and one
	 * that authenticates the field means the key id was changed.
	 * @param digest The row's key digest (hex).
	 * @param stored The row's `data`, parsed.
	 */
	open(digest: string, stored: SessionData, now = Date.now()): OpenedSession {
		const digestBytes = Buffer.from(digest, 'hex');
		const data: SessionData = {};
		const fields = new Map<string, string>();
		const storedJson = new Map<string, string>();
		const plain: string[] = [];
		let encrypted = 0;
		let rewrite = false;
		let unknownKey = false;
		// One derivation (or cache lookup) per secret and call, not per field.
		const keys = new Map<DataSecret, Buffer>();
		const keyOf = (secret: DataSecret): Buffer => {
			let key = keys.get(secret);
			if (key === undefined) {
				key = this.#keyOf(secret, digest, digestBytes);
				keys.set(secret, key);
			}
			return key;
		};
		for (const name of Object.keys(stored)) {
			const value = stored[name];
			if (isKoaSessionValue(name, value)) {
				const json = JSON.stringify(value);
				put(data, name, value);
				fields.set(name, json);
				storedJson.set(name, json);
				continue;
			}
			if (typeof value !== 'string' || !value.startsWith(prefix)) {
				plain.push(name);
				put(data, name, value);
				continue;
			}
			encrypted += 1;
			const match = storedPattern.exec(value);
			const kid = match?.[1];
			const payload = match?.[2];
			if (kid === undefined || payload === undefined) {
				return tampered('malformed', name);
			}
			const secret = this.#byKid.get(kid);
			if (secret === undefined) {
				// Either a secret that was dropped (the session ends, silently: that is what dropping
				// it means) or a key id changed by a table writer, which must be reported like any
				// other change. Only the latter authenticates under a listed secret.
				const body = canonicalBody(payload);
				if (body === undefined || this.#secrets.some((listed) => decrypt(keyOf(listed), digestBytes, name, body) !== undefined)) {
					return tampered('authentication', name);
				}
				unknownKey = true;
				continue;
			}
			let json = this.#recall(digest, name, value);
			if (json === undefined) {
				const body = canonicalBody(payload);
				json = body === undefined ? undefined : decrypt(keyOf(secret), digestBytes, name, body);
				if (json !== undefined) {
					this.#remember(digest, name, value, json);
				}
			}
			const parsed = json === undefined ? undefined : parseJson(json);
			if (json === undefined || parsed === undefined) {
				return tampered('authentication', name);
			}
			// An older secret, or a field a version before padding wrote: rewritten on the next save.
			rewrite ||= this.#decryptOnly || secret !== this.#secrets[0] || Buffer.byteLength(json) % paddingBlock !== 0;
			fields.set(name, withoutPadding(json));
			// base64url and the prefix need no JSON escaping.
			storedJson.set(name, `"${value}"`);
			put(data, name, parsed.value);
		}
		if (plain.length > 0) {
			if (this.#decryptOnly) {
				// Turning encryption off: plain fields are the goal, and mixed rows the way there.
			} else if (encrypted > 0) {
				// A table writer adding a plain `userId` to an encrypted row.
				return tampered('mixed', ...plain);
			} else if (now >= this.#acceptPlainRowsUntil) {
				return tampered('plain', ...plain);
			} else {
				rewrite = true;
			}
			for (const name of plain) {
				const json = JSON.stringify(data[name]);
				fields.set(name, json);
				storedJson.set(name, json);
			}
		}
		if (unknownKey) {
			return { kind: 'unknownKey' };
		}
		return { kind: 'open', data, fields, stored: storedJson, reencrypt: rewrite };
	}

	#recall(digest: string, name: string, stored: string): string | undefined {
		return this.#plaintexts.get(`${digest}\0${name}\0${stored}`);
	}

	#remember(digest: string, name: string, stored: string, json: string): void {
		this.#plaintexts.set(`${digest}\0${name}\0${stored}`, json);
	}

	#nextNonce(): Buffer {
		if (this.#nonceOffset === this.#nonces.length) {
			randomFillSync(this.#nonces);
			this.#nonceOffset = 0;
		}
		// A copy: the buffer is refilled later, and each nonce is used once.
		const nonce = Buffer.from(this.#nonces.subarray(this.#nonceOffset, this.#nonceOffset + nonceBytes));
		this.#nonceOffset += nonceBytes;
		return nonce;
	}

	// Per secret and per session: GCM's random-nonce limit (2^32 encryptions per key) becomes a
	// limit per session, which none approaches whatever the table's write rate.
	#keyOf(secret: DataSecret, digest: string, digestBytes: Buffer): Buffer {
		const id = secret.kid + digest;
		let key = this.#derived.get(id);
		if (key === undefined) {
			key = Buffer.from(hkdfSync('sha256', secret.secret, salt, Buffer.concat([infoPrefix, digestBytes]), 32));
			this.#derived.set(id, key);
		}
		return key;
	}
}

/**
 * A bounded cache of what was used recently, in two generations: entries go into the current
 * one; when it holds half the budget it becomes the previous one (the one before is dropped), and
 * a hit in the previous one moves the entry back. O(1) per operation, unlike evicting a `Map`'s
 * oldest entries one by one (V8 then walks the deleted slots).
 */
class TwoGenerationCache<Value> {
	#current = new Map<string, Value>();
	#previous = new Map<string, Value>();
	#weight = 0;
	readonly #budget: number;
	readonly #weigh: (id: string, value: Value) => number;

	/** @param budget The most weight kept, by `weigh` of each entry. */
	constructor(budget: number, weigh: (id: string, value: Value) => number) {
		this.#budget = budget;
		this.#weigh = weigh;
	}

	get(id: string): Value | undefined {
		const value = this.#current.get(id);
		if (value !== undefined) {
			return value;
		}
		const old = this.#previous.get(id);
		if (old !== undefined) {
			this.set(id, old);
		}
		return old;
	}

	set(id: string, value: Value): void {
		const weight = this.#weigh(id, value);
		// One huge field must not push out everything else.
		if (weight > this.#budget / 100 || this.#current.has(id)) {
			return;
		}
		if (this.#weight + weight > this.#budget / 2) {
			this.#previous = this.#current;
			this.#current = new Map();
			this.#weight = 0;
		}
		this.#current.set(id, value);
		this.#weight += weight;
	}
}

/**
 * The bytes of a stored payload, or `undefined` when it is not the one encoding our writer gives
 * them: Node's base64url decoder ignores set bits after the last byte and a lone trailing
 * character, so several strings decode alike, and only one of them may authenticate.
 */
function canonicalBody(payload: string): Buffer | undefined {
	const body = Buffer.from(payload, 'base64url');
	return body.toString('base64url') === payload ? body : undefined;
}

// A field's JSON, then spaces up to the next multiple of `paddingBlock` bytes.
function padded(json: string): Buffer {
	const length = Buffer.byteLength(json);
	const plaintext = Buffer.allocUnsafe(Math.ceil(length / paddingBlock) * paddingBlock);
	plaintext.write(json, 'utf8');
	return plaintext.fill(space, length);
}

// JSON.stringify never ends its text with whitespace: trailing spaces are padding.
function withoutPadding(json: string): string {
	let end = json.length;
	while (end > 0 && json.charCodeAt(end - 1) === space) {
		end -= 1;
	}
	return end === json.length ? json : json.slice(0, end);
}

function decrypt(key: Buffer, digestBytes: Buffer, name: string, body: Buffer): string | undefined {
	if (body.length < nonceBytes + tagBytes) {
		return undefined;
	}
	try {
		const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(0, nonceBytes), { authTagLength: tagBytes });
		decipher.setAAD(aadOf(digestBytes, name));
		decipher.setAuthTag(body.subarray(body.length - tagBytes));
		return Buffer.concat([decipher.update(body.subarray(nonceBytes, body.length - tagBytes)), decipher.final()]).toString('utf8');
	} catch {
		// final() throws on a tag that does not verify: the one outcome that matters here.
		return undefined;
	}
}

/** The key id stored with each ciphertext: 4 bytes of a hash of the secret, no use to a reader. */
export function kidOf(secret: string): string {
	return createHash('sha256').update('koa-pgstore/kid/v1').update(secret).digest().subarray(0, 4).toString('base64url');
}

function aadOf(digestBytes: Buffer, name: string): Buffer {
	return Buffer.concat([aadPrefix, digestBytes, Buffer.from(name, 'utf8')]);
}

// As JSON.parse does: a field named `__proto__` is an own property, never the prototype.
function put(data: SessionData, name: string, value: unknown): void {
	if (name === '__proto__') {
		Object.defineProperty(data, name, { value, enumerable: true, writable: true, configurable: true });
	} else {
		data[name] = value;
	}
}

// Authenticated text was written by a holder of the secret; still, never throw on a read.
function parseJson(json: string): { value: unknown } | undefined {
	try {
		return { value: JSON.parse(json) as unknown };
	} catch {
		return undefined;
	}
}

function tampered(reason: TamperReason, ...fields: string[]): OpenedSession {
	return { kind: 'tampered', error: new SessionTamperedError(reason, fields) };
}
