import { debug } from '../base/debug.js';
import type { SessionCipher } from './cipher.js';
import type { SessionTamperedError } from '../base/errors.js';
import type { EncodedSession, SessionData, StoredRow } from './session-codec.js';

/** A stored row, opened: what the app gets, and what a later save is compared with. */
export type OpenedRow =
	| {
		readonly kind: 'open';
		readonly data: SessionData;
		/** Each field's plain JSON; absent when it is cheaper to take from `row.json` on a save. */
		readonly fields: ReadonlyMap<string, string> | undefined;
		/** The row must be rewritten whole on its next save (an older secret, or plain under encryption). */
		readonly reencrypt: boolean;
	}
	/** Not handed to the app: a fresh session instead. `error` goes to `onError`; none for a retired secret. */
	| { readonly kind: 'refused'; readonly error: SessionTamperedError | undefined };

/**
 * How sessions are stored in the `data` column: plain JSON, or each field encrypted
 * (`encryptionKeys`). Chosen once, when the store is built.
 */
export interface RowCodec {
	open(digest: string, row: StoredRow): OpenedRow;
	/**
	 * The JSON object stored for the fields `names` of `session` (every field when omitted).
	 * @param digest The row's key digest: encrypted fields are bound to it.
	 */
	seal(digest: string, session: EncodedSession, names?: Iterable<string>): string;
}

/** Sessions stored as the JSON the app gave. */
export const plainCodec: RowCodec = {
	open: (_digest, row) => ({ kind: 'open', data: row.data, fields: undefined, reencrypt: false }),
	seal(_digest, session, names) {
		if (names === undefined) {
			return session.json;
		}
		const members: string[] = [];
		for (const name of names) {
			members.push(`${JSON.stringify(name)}:${session.fields.get(name) ?? 'null'}`);
		}
		return `{${members.join(',')}}`;
	},
};

/** Sessions whose fields are each encrypted (`encryptionKeys`); koa-session's own fields stay plain. */
export function encryptedCodec(cipher: SessionCipher): RowCodec {
	return {
		open(digest, row) {
			const opened = cipher.open(digest, row.data);
			switch (opened.kind) {
				case 'open':
					return { kind: 'open', data: opened.data, fields: opened.fields, reencrypt: opened.reencrypt };
				case 'tampered':
					// As for a cookie whose signature fails: a fresh session, and someone is told.
					return { kind: 'refused', error: opened.error };
				case 'unknownKey':
					debug('session not returned: it is encrypted under a secret no longer in encryptionKeys');
					return { kind: 'refused', error: undefined };
			}
		},
		seal: (digest, session, names) => cipher.seal(digest, session.fields, names),
	};
}
