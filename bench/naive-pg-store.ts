// The baseline: the smallest koa-session store a developer would write by hand on `pg`, one
// statement per operation, same table, same hashed keys, same pool size as koa-pgstore's default.
import { createHash } from 'node:crypto';
import pg from 'pg';

const digest = (key: string) => createHash('sha256').update(key).digest('hex');

export class NaivePgStore {
	readonly #pool: pg.Pool;

	constructor(connectionString: string) {
		this.#pool = new pg.Pool({ connectionString, max: 10 });
	}

	async get(key: string): Promise<Record<string, unknown> | undefined> {
		const { rows } = await this.#pool.query<{ data: Record<string, unknown> }>(
			'SELECT data FROM http_sessions WHERE key = $1 AND expires_on > $2',
			[digest(key), new Date()],
		);
		return rows[0]?.data;
	}

	async set(key: string, session: Record<string, unknown>, maxAge: number | 'session'): Promise<void> {
		const now = new Date();
		const expires = new Date(now.getTime() + (typeof maxAge === 'number' ? maxAge : 86_400_000));
		await this.#pool.query(
			`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on) VALUES ($1, $2, $3, $3, $4)
			 ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, modified_on = EXCLUDED.modified_on, expires_on = EXCLUDED.expires_on`,
			[digest(key), JSON.stringify(session), now, expires],
		);
	}

	async destroy(key: string): Promise<void> {
		await this.#pool.query('DELETE FROM http_sessions WHERE key = $1', [digest(key)]);
	}

	close(): Promise<void> {
		return this.#pool.end();
	}
}
