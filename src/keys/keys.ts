import Keygrip from 'keygrip';
import { Redacted, invalid } from '../base/validate.js';

/** Fewest bytes a signing secret may have: the output size of the SHA-256 HMAC it keys. */
export const minimumSecretBytes = 32;

/** The HMAC hashes `createKeys` signs with. */
export type HmacAlgorithm = 'sha256' | 'sha384' | 'sha512';

const hmacAlgorithms: readonly string[] = ['sha256', 'sha384', 'sha512'] satisfies HmacAlgorithm[];

/** Options of {@link createKeys}. */
export interface CreateKeysOptions {
	/**
	 * The HMAC hash of every signature made and of every one checked against `secrets`. SHA-1
	 * and MD5 are refused: use `legacySha1Secrets` to accept the SHA-1 cookies of `app.keys`.
	 * @default 'sha256'
	 */
	algorithm?: HmacAlgorithm;
	/**
	 * To move from `app.keys = [...]` (Keygrip's default, HMAC-SHA1) without logging anyone out:
	 * the secrets that array held, as an array or a comma-separated string (split at commas and
	 * trimmed: pass an array if an old secret holds a comma or edge spaces). Cookies whose SHA-1
	 * signature verifies with one of them keep their session and get a new signature from
	 * `secrets[0]` with `algorithm`; nothing is ever signed with SHA-1. Their length is not checked,
	 * as they only verify what was already issued. Drop them after one session lifetime.
	 * @default none
	 */
	legacySha1Secrets?: string | readonly string[] | undefined;
}

/**
 * Builds the Keygrip for `app.keys` from cookie-signing secrets, newest first: cookies are signed
 * with the first and accepted when any of them verifies (in constant time). Signs with HMAC-SHA256
 * (or `algorithm`), not Keygrip's SHA-1 default.
 *
 * To rotate: put a new secret first, keep the old ones for at least one session lifetime (the
 * longest `maxAge`), then drop them. With `reissueOnRotation()` users signed with an old secret
 * get cookies signed with the new one on their next request.
 *
 * @param secrets An array, or a string holding a comma-separated list (an environment variable).
 * @throws {TypeError} No secret, an empty one, one shorter than 32 bytes, or a duplicate; an
 * `algorithm` other than `sha256`, `sha384`, `sha512`; a malformed `legacySha1Secrets`.
 *
 * @example
 * ```ts
 * app.keys = createKeys(process.env.SESSION_KEYS); // "newest-secret,older-secret"
 * ```
 *
 * @example Moving from `app.keys = process.env.COOKIE_SECRETS.split(',')` (HMAC-SHA1):
 * ```ts
 * app.keys = createKeys(process.env.SESSION_KEYS, { legacySha1Secrets: process.env.COOKIE_SECRETS });
 * ```
 */
export function createKeys(secrets: string | readonly string[] | undefined, options: CreateKeysOptions = {}): Keygrip {
	if (typeof options !== 'object' || options === null) {
		// Not echoed: `createKeys(newSecret, oldSecret)` is an easy slip.
		invalid('options', 'an object such as `{ algorithm: \'sha256\' }`', new Redacted(options === null ? 'null' : `a ${typeof options}`));
	}
	const { algorithm = 'sha256', legacySha1Secrets } = options;
	if (!hmacAlgorithms.includes(algorithm)) {
		// Checked here, not at the first signature: Keygrip would accept 'md5' and fail on a typo
		// only when the first cookie is signed.
		invalid('algorithm', 'one of "sha256", "sha384", "sha512"', algorithm);
	}
	const list = secretList('secrets', secrets);
	checkSecrets('secrets', list, minimumSecretBytes);
	const current = new Keygrip(list, algorithm);
	if (legacySha1Secrets === undefined || (Array.isArray(legacySha1Secrets) && legacySha1Secrets.length === 0)) {
		return current;
	}
	const legacyList = secretList('legacySha1Secrets', legacySha1Secrets);
	checkSecrets('legacySha1Secrets', legacyList, 1);
	const legacy = new Keygrip(legacyList, 'sha1');
	// `cookies` calls only sign() and index(); an index above 0 makes it re-sign the `.sig` with
	// sign(), which is how a legacy cookie moves to the new algorithm (and reissueOnRotation sees
	// an older key). Legacy secrets rank after every current one.
	const index = (data: unknown, digest: string): number => {
		const found = current.index(data, digest);
		if (found !== -1) {
			return found;
		}
		const legacyFound = legacy.index(data, digest);
		return legacyFound === -1 ? -1 : list.length + legacyFound;
	};
	return {
		sign: (data: unknown) => current.sign(data),
		verify: (data: unknown, digest: string) => index(data, digest) !== -1,
		index,
	};
}

/** The secrets of `secrets` (an array, or a comma-separated string), checked to be non-empty strings, never echoed. */
export function secretList(name: string, secrets: unknown): string[] {
	const list: unknown = typeof secrets === 'string' ? secrets.split(',').map((secret) => secret.trim()) : secrets;
	if (!Array.isArray(list) || list.length === 0) {
		invalid(name, 'a non-empty array of secrets or a comma-separated string of them', secrets);
	}
	return [...list as unknown[]].map((secret, index) => {
		if (typeof secret !== 'string' || secret === '') {
			// The value itself is never echoed: it is a secret.
			invalid(`${name}[${index}]`, 'a non-empty string', new Redacted(typeof secret === 'string' ? 'an empty string' : `a ${typeof secret}`));
		}
		return secret;
	});
}

/** Rejects a secret shorter than `minimumBytes` or a duplicate, naming it by its index only. */
export function checkSecrets(name: string, list: readonly string[], minimumBytes: number): void {
	const seen = new Set<string>();
	for (const [index, secret] of list.entries()) {
		const bytes = Buffer.byteLength(secret);
		if (bytes < minimumBytes) {
			invalid(`${name}[${index}]`, `at least ${minimumBytes} bytes long (e.g. \`openssl rand -base64 32\`)`, new Redacted(`${bytes} bytes`));
		}
		if (seen.has(secret)) {
			invalid(`${name}[${index}]`, 'different from every other secret', new Redacted('a duplicate'));
		}
		seen.add(secret);
	}
}
