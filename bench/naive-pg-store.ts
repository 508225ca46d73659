// The baseline: the smallest koa-session store a developer would write by hand on `pg`, one
// statement per operation, a table of the same definition, same hashed keys, same pool size as
// koa-pgstore's default. Its table is its own (`pgStoresTable`, made by bench/harness.ts): its
// non-HOT updates would otherwise fill the pages koa-pgstore's rows live on and, reported by
// PostgreSQL up to 10 s late, count in the HOT share of the next cell's store.
// `prepared` (the bench's `pg-prepared`): the least any PostgreSQL store does per request, one
// prepared single-row statement per operation (a save of a stored session is a plain UPDATE of
// it), and the rest as before: a floor, not a store to use (no merge, no size bound, and a save
// of a session deleted meanwhile is lost silently).
import { createHash } from 'node:crypto';
import pg from 'pg';

const digest = (key: string) => createHash('sha256').update(key).digest('hex');

/** The table of the `pg` and `pg-prepared` stores: `http_sessions`' definition, rows of their own. */
export const pgStoresTable = 'http_sessions_pg';

export class NaivePgStore {
	readonly #pool: pg.Pool;
	readonly #prepared: boolean;
	// `prepared`: the keys read and not saved since (a request's session, between its get and its set).
	readonly #loaded = new Set<string>();

	constructor(connectionString: string, prepared = false) {
		this.#pool = new pg.Pool({ connectionString, max: 10 });
		this.#prepared = prepared;
	}

	#query(name: string, text: string, values: unknown[]) {
		return this.#pool.query(this.#prepared ? { name, text, values } : { text, values });
	}

	async get(key: string): Promise<Record<string, unknown> | undefined> {
		const { rows } = await this.#query('get', `SELECT data FROM ${pgStoresTable} WHERE key = $1 AND expires_on > $2`, [digest(key), new Date()]);
		const data = (rows[0] as { data: Record<string, unknown> } | undefined)?.data;
		if (this.#prepared && data !== undefined) {
			this.#loaded.add(key);
		}
		return data;
	}

	async set(key: string, session: Record<string, unknown>, maxAge: number | 'session'): Promise<void> {
		const now = new Date();
		const expires = new Date(now.getTime() + (typeof maxAge === 'number' ? maxAge : 86_400_000));
		if (this.#prepared) {
			const values = [digest(key), JSON.stringify(session), now, expires];
			// A session this process just read is stored: a plain UPDATE. Any other, as koa-session's new ones: an INSERT.
			if (this.#loaded.delete(key)) {
				const { rowCount } = await this.#query('update', `UPDATE ${pgStoresTable} SET data = $2, modified_on = $3, expires_on = $4 WHERE key = $1`, values);
				if (rowCount !== 0) {
					return;
				}
			}
			await this.#query('upsert', `INSERT INTO ${pgStoresTable} (key, data, created_on, modified_on, expires_on) VALUES ($1, $2, $3, $3, $4)
				ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, modified_on = EXCLUDED.modified_on, expires_on = EXCLUDED.expires_on`, values);
			return;
		}
		await this.#pool.query(
			`INSERT INTO ${pgStoresTable} (key, data, created_on, modified_on, expires_on) VALUES ($1, $2, $3, $3, $4)
			 ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, modified_on = EXCLUDED.modified_on, expires_on = EXCLUDED.expires_on`,
			[digest(key), JSON.stringify(session), now, expires],
		);
	}

	async destroy(key: string): Promise<void> {
		await this.#query('delete', `DELETE FROM ${pgStoresTable} WHERE key = $1`, [digest(key)]);
	}

	close(): Promise<void> {
		return this.#pool.end();
	}
}
