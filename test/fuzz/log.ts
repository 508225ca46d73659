// The row-version log: a test-only trigger on the session table that copies every row version
// into `fuzz_log`, numbered by a sequence taken inside the trigger. That number is PostgreSQL's own
// order, not the test's idea of it.
//
// Commit order and `seq` order: an AFTER ROW trigger runs at the end of its statement, before the
// commit, so two transactions may take their numbers in one order and commit in the other. For one
// row that cannot happen: a second statement on the row waits for the first one's commit (row
// lock) before it writes. Every statement of the store is one autocommit statement, so within one
// row `id`, `seq` order is the order of the row's versions. (The runner also moves one request at
// a time, so in the fuzzer `seq` is the global order too; the checker relies on it only per row,
// and on the watermarks read between steps.)
import type pg from 'pg';
import { SessionCipher } from '../../src/codec/cipher.js';
import type { SessionData } from '../../src/codec/session-codec.js';

/** The SQL that installs the log; idempotent. */
export const installLogSql = `
CREATE TABLE IF NOT EXISTS fuzz_log (
	seq bigserial PRIMARY KEY,
	op text NOT NULL,
	old_id bigint, new_id bigint,
	old_key text, new_key text,
	old_subject text, new_subject text,
	old_data jsonb, new_data jsonb,
	old_expires_on timestamptz, new_expires_on timestamptz
);
CREATE OR REPLACE FUNCTION fuzz_log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO fuzz_log (op, new_id, new_key, new_subject, new_data, new_expires_on)
		VALUES (TG_OP, NEW.id, NEW.key, NEW.subject, NEW.data, NEW.expires_on);
	ELSIF TG_OP = 'UPDATE' THEN
		INSERT INTO fuzz_log (op, old_id, new_id, old_key, new_key, old_subject, new_subject, old_data, new_data, old_expires_on, new_expires_on)
		VALUES (TG_OP, OLD.id, NEW.id, OLD.key, NEW.key, OLD.subject, NEW.subject, OLD.data, NEW.data, OLD.expires_on, NEW.expires_on);
	ELSE
		INSERT INTO fuzz_log (op, old_id, old_key, old_subject, old_data, old_expires_on)
		VALUES (TG_OP, OLD.id, OLD.key, OLD.subject, OLD.data, OLD.expires_on);
	END IF;
	RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS fuzz_log_row ON http_sessions;
CREATE TRIGGER fuzz_log_row AFTER INSERT OR UPDATE OR DELETE ON http_sessions FOR EACH ROW EXECUTE FUNCTION fuzz_log_row();
`;

/** A row version, its data opened (plain JSON, whatever the variant stores). */
export interface Version {
	readonly id: string;
	/** The key's digest, as stored. */
	readonly key: string;
	readonly subject: string | null;
	/** `undefined`: the stored data could not be opened (tampered, mixed, a secret missing). */
	readonly data: SessionData | undefined;
	/** Milliseconds since the epoch. */
	readonly expiresOn: number;
}

export interface LogEntry {
	readonly seq: number;
	readonly op: 'INSERT' | 'UPDATE' | 'DELETE';
	/** For UPDATE and DELETE. */
	readonly old: Version | undefined;
	/** For INSERT and UPDATE. */
	readonly new: Version | undefined;
}

/** Opens stored data: as it is, or through the store's own cipher with every secret of the variant. */
export type DataOpener = (digest: string, stored: SessionData) => SessionData | undefined;

export function dataOpener(secrets: readonly string[], acceptPlainRows: boolean): DataOpener {
	if (secrets.length === 0) {
		return (_digest, stored) => stored;
	}
	// A date far ahead: the checker reads every plain row of a migration, whenever it runs.
	const cipher = new SessionCipher(secrets, { acceptPlainRowsUntil: acceptPlainRows ? new Date(8.64e15) : undefined });
	return (digest, stored) => {
		const opened = cipher.open(digest, stored);
		return opened.kind === 'open' ? opened.data : undefined;
	};
}

type Query = <Row extends pg.QueryResultRow>(sql: string, values?: unknown[]) => Promise<Row[]>;

/** Reads and resets the log of one database. */
export class RowLog {
	readonly #query: Query;
	readonly #open: DataOpener;

	constructor(query: Query, open: DataOpener) {
		this.#query = query;
		this.#open = open;
	}

	async install(): Promise<void> {
		await this.#query(installLogSql);
	}

	/** Empties the session table and the log between iterations (TRUNCATE fires no row trigger). */
	async reset(): Promise<void> {
		await this.#query('TRUNCATE http_sessions, fuzz_log RESTART IDENTITY');
	}

	/** The highest `seq` written so far: what the runner reads between steps. */
	async watermark(): Promise<number> {
		const [row] = await this.#query<{ seq: string }>('SELECT coalesce(max(seq), 0)::text AS seq FROM fuzz_log');
		return Number(row?.seq ?? 0);
	}

	async entries(): Promise<LogEntry[]> {
		const rows = await this.#query<Record<string, unknown>>(`SELECT seq::text, op, old_id::text, new_id::text, old_key, new_key, old_subject, new_subject,
			old_data, new_data, (extract(epoch FROM old_expires_on) * 1000)::float8 AS old_expires, (extract(epoch FROM new_expires_on) * 1000)::float8 AS new_expires
			FROM fuzz_log ORDER BY fuzz_log.seq`);
		return rows.map((row) => ({
			seq: Number(row['seq']),
			op: row['op'] as LogEntry['op'],
			old: this.#version(row['old_id'], row['old_key'], row['old_subject'], row['old_data'], row['old_expires']),
			new: this.#version(row['new_id'], row['new_key'], row['new_subject'], row['new_data'], row['new_expires']),
		}));
	}

	/** The rows left at the end of an iteration, live or not (nothing expires within one). */
	async rows(): Promise<Version[]> {
		const rows = await this.#query<Record<string, unknown>>(`SELECT id::text, key, subject, data, (extract(epoch FROM expires_on) * 1000)::float8 AS expires
			FROM http_sessions ORDER BY id`);
		return rows.flatMap((row) => this.#version(row['id'], row['key'], row['subject'], row['data'], row['expires']) ?? []);
	}

	#version(id: unknown, key: unknown, subject: unknown, data: unknown, expires: unknown): Version | undefined {
		if (typeof id !== 'string' || typeof key !== 'string') {
			return undefined;
		}
		return {
			id,
			key,
			subject: typeof subject === 'string' ? subject : null,
			data: typeof data === 'object' && data !== null ? this.#open(key, data as SessionData) : undefined,
			expiresOn: Number(expires),
		};
	}
}
