import { debug } from '../base/debug.js';
import { SessionCipher } from './cipher.js';
import { SessionUnreadableError, type SessionTamperedError } from '../base/errors.js';
import { outOfRange } from './koa-fields.js';
import type { NumberMeasure } from './printed-size.js';
import type { EncodedSession, SessionData, StoredRow } from './session-codec.js';

/** A stored row, opened: what the app gets, and what a later save is compared with. */
export type OpenedRow =
	| {
		readonly kind: 'open';
		readonly data: SessionData;
		/** Each field's plain JSON; absent when it is cheaper to take from `row.json` on a save. */
		readonly fields: ReadonlyMap<string, string> | undefined;
		/**
		 * Each top-level field's JSON as it was stored when this request loaded it: for an encrypted
		 * field the JSON string of its ciphertext (`"pgse:v1:…"`), for any other its JSON. Compare it
		 * with the stored field as `jsonb` (the text PostgreSQL gives may space it differently).
		 * `undefined` exactly when `fields` is: the row was plain and read as it is, so both are the
		 * fields of `row.json`.
		 */
		readonly stored: ReadonlyMap<string, string> | undefined;
		/**
		 * The row must be rewritten whole on its next save: an older secret, a field not padded, a
		 * plain row under encryption, or an encrypted one while turning encryption off.
		 */
		readonly reencrypt: boolean;
	}
	/** Not handed to the app: a fresh session instead. `error` goes to `onError`; none for a retired secret. */
	| { readonly kind: 'refused'; readonly error: SessionTamperedError | SessionUnreadableError | undefined };

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
	/**
	 * The limit the statements check the stored form against, for the `maxLength` option: with
	 * encryption, `maxLength` and a third more, the room padding may take (see `encryptedCodec`).
	 */
	storedLengthLimit(maxLength: number): number;
	/** How the stored form counts an app's number: as PostgreSQL prints it, or inside a ciphertext of its JSON. */
	readonly numbers: NumberMeasure;
}

/** What the store is given to read and write encrypted fields with. */
export interface EncryptionSettings {
	/** Newest first, validated. */
	readonly secrets: readonly string[];
	/** `encrypt`: `encryptionKeys`; `decrypt`: `decryptionKeys`, turning encryption off. */
	readonly mode: 'encrypt' | 'decrypt';
	/** With `encrypt`: until then plain rows are read (`encryptionMigration`). */
	readonly acceptPlainRowsUntil: Date | undefined;
}

/** The codec of a store: plain without `settings`, else encrypting or only decrypting. */
export function rowCodec(settings: EncryptionSettings | undefined): RowCodec {
	if (settings === undefined) {
		return plainCodec;
	}
	return settings.mode === 'encrypt'
		? encryptedCodec(new SessionCipher(settings.secrets, { acceptPlainRowsUntil: settings.acceptPlainRowsUntil }))
		: decryptingCodec(new SessionCipher(settings.secrets, { decryptOnly: true, option: 'decryptionKeys' }));
}

// A stored encrypted value: what only a store with a secret can read. The whole form, not the
// prefix, so an app's own string that merely starts so is still its value.
const encryptedForm = /^pgse:v1:[A-Za-z0-9_-]{6}:[A-Za-z0-9_-]{38,}$/;

function sealPlain(session: EncodedSession, names: Iterable<string> | undefined): string {
	if (names === undefined) {
		return session.json;
	}
	const members: string[] = [];
	for (const name of names) {
		members.push(`${JSON.stringify(name)}:${session.fields.get(name) ?? 'null'}`);
	}
	return `{${members.join(',')}}`;
}

/**
 * Sessions stored as the JSON the app gave. A row holding an encrypted value (a deploy without
 * `encryptionKeys` after one with) is never handed to the app, whose next save would store the
 * ciphertext back as its own value, or whatever it made of it.
 */
export const plainCodec: RowCodec = {
	open(_digest, row) {
		const encrypted = Object.keys(row.data).filter((name) => {
			const value = row.data[name];
			return typeof value === 'string' && encryptedForm.test(value);
		});
		if (encrypted.length > 0) {
			return { kind: 'refused', error: new SessionUnreadableError('encrypted', encrypted) };
		}
		return checked(row, { kind: 'open', data: row.data, fields: undefined, stored: undefined, reencrypt: false });
	},
	seal: (_digest, session, names) => sealPlain(session, names),
	storedLengthLimit: (maxLength) => maxLength,
	numbers: 'printed',
};

/**
 * Sessions whose fields are each encrypted (`encryptionKeys`); koa-session's own fields stay plain.
 *
 * Padding makes a field's stored form at most 21 bytes longer (15 bytes of spaces, in base64), and
 * a field's stored text (`"a": "pgse:v1:…", `) is 63 bytes or more, the smallest growing by 20 at
 * most: a session that fit `maxLength` unpadded fits a third more. The statements get that limit,
 * so that sessions near `maxLength` do not start failing when their fields are padded
 * (test/unit/cipher.test.ts checks the bound).
 */
export function encryptedCodec(cipher: SessionCipher): RowCodec {
	return {
		open: (digest, row) => openWith(cipher, digest, row),
		seal: (digest, session, names) => cipher.seal(digest, session.fields, names),
		storedLengthLimit: (maxLength) => maxLength + Math.ceil(maxLength / 3),
		// koa-session's own fields stay plain, but they are never measured unencoded (encodeSession).
		numbers: 'json',
	};
}

/**
 * Turning encryption off (`decryptionKeys`): encrypted fields are read with the secrets, plain ones
 * as they are, and every save writes plain JSON; a row with an encrypted field is rewritten whole
 * on its next save.
 */
export function decryptingCodec(cipher: SessionCipher): RowCodec {
	return {
		open(digest, row) {
			// A plain row, the goal: read as the plain codec reads it, without a copy of every field.
			const plain = Object.keys(row.data).every((name) => {
				const value = row.data[name];
				return typeof value !== 'string' || !value.startsWith('pgse:');
			});
			return plain ? plainCodec.open(digest, row) : openWith(cipher, digest, row);
		},
		seal: (_digest, session, names) => sealPlain(session, names),
		storedLengthLimit: (maxLength) => maxLength,
		numbers: 'printed',
	};
}

function openWith(cipher: SessionCipher, digest: string, row: StoredRow): OpenedRow {
	const opened = cipher.open(digest, row.data);
	switch (opened.kind) {
		case 'open':
			return checked(row, { kind: 'open', data: opened.data, fields: opened.fields, stored: opened.stored, reencrypt: opened.reencrypt });
		case 'tampered':
			// As for a cookie whose signature fails: a fresh session, and someone is told.
			return { kind: 'refused', error: opened.error };
		case 'unknownKey':
			debug('session not returned: it is encrypted under a secret no longer listed');
			return { kind: 'refused', error: undefined };
	}
}

// What a table writer can set outside the session's fields must not fail the request: such a row
// is passed over as a corrupted one is.
function checked(row: StoredRow, opened: Extract<OpenedRow, { kind: 'open' }>): OpenedRow {
	const wrong = outOfRange(opened.data, row.expiresOn);
	return wrong.length === 0 ? opened : { kind: 'refused', error: new SessionUnreadableError('out-of-range', wrong) };
}
