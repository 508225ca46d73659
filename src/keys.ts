import Keygrip from 'keygrip';
import { Described, invalid } from './invalid.js';

/** Fewest bytes a signing secret may have: the output size of the SHA-256 HMAC it keys. */
export const minimumSecretBytes = 32;

/**
 * Builds the Keygrip for `app.keys` from cookie-signing secrets, newest first: cookies are signed
 * with the first and accepted when any of them verifies (in constant time). Signs with SHA-256
 * HMAC, not Keygrip's SHA-1 default.
 *
 * To rotate: put a new secret first, keep the old ones for at least one session lifetime (the
 * longest `maxAge`), then drop them. With `reissueOnRotation()` users signed with an old secret
 * get cookies signed with the new one on their next request.
 *
 * @param secrets An array, or a string holding a comma-separated list (an environment variable).
 * @throws {TypeError} No secret, an empty one, one shorter than 32 bytes, or a duplicate.
 *
 * @example
 * ```ts
 * app.keys = createKeys(process.env.SESSION_KEYS); // "newest-secret,older-secret"
 * ```
 */
export function createKeys(secrets: string | readonly string[] | undefined, algorithm = 'sha256'): Keygrip {
	const list = typeof secrets === 'string' ? secrets.split(',').map((secret) => secret.trim()) : secrets;
	if (!Array.isArray(list) || list.length === 0) {
		invalid('secrets', 'a non-empty array of secrets or a comma-separated string of them', secrets);
	}
	const seen = new Set<string>();
	for (const [index, secret] of list.entries()) {
		if (typeof secret !== 'string' || secret === '') {
			// The value itself is never echoed: it is a secret.
			invalid(`secrets[${index}]`, 'a non-empty string', new Described(typeof secret === 'string' ? 'an empty string' : `a ${typeof secret}`));
		}
		const bytes = Buffer.byteLength(secret);
		if (bytes < minimumSecretBytes) {
			invalid(`secrets[${index}]`, `at least ${minimumSecretBytes} bytes long (e.g. \`openssl rand -base64 32\`)`, new Described(`${bytes} bytes`));
		}
		if (seen.has(secret)) {
			invalid(`secrets[${index}]`, 'different from every other secret', new Described('a duplicate'));
		}
		seen.add(secret);
	}
	return new Keygrip([...list], algorithm);
}
