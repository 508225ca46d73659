// The ceiling of any external store: a koa-session store with no I/O, an in-process Map. What
// a request costs with it is koa-session's own cost plus the least any store must do.
//
// Why a JSON round trip and not structuredClone or the object itself: every external store
// keeps the session outside the app's heap as text (koa-redis JSON.stringify's on set and
// JSON.parse's on get; koa-pgstore and the `pg` baseline send JSON text and node-postgres parses
// the jsonb it reads with JSON.parse), so one stringify per save and one parse per load is the
// work no real store escapes. Handing out the stored object would let two requests share it
// (a store nobody could use), and structuredClone is neither what any store does nor cheaper
// for small sessions; it would also keep values (Date, Map) a real store turns into strings.
//
// Why `async` methods that resolve at once: koa-session awaits the store; an already resolved
// promise is the cheapest thing it can await (a microtask, no turn of the event loop), which
// keeps this a ceiling rather than a model of any store's latency.

/** A session as koa-session hands it to a store. */
type SessionData = Record<string, unknown>;

interface StoredSession {
	readonly json: string;
	readonly expiresAt: number;
}

// The `new` workload creates sessions nobody reads again. A real store keeps them in another
// process; keeping all of them here would grow this app's heap (and its GC cost) with every
// request, so the least recently saved are dropped beyond this many: far more than one
// measurement creates, so the 100 sessions that the other workloads use (and save) stay.
const maxSessions = 250_000;

export class MapStore {
	readonly #sessions = new Map<string, StoredSession>();

	async get(key: string): Promise<SessionData | undefined> {
		const stored = this.#sessions.get(key);
		if (stored === undefined || stored.expiresAt <= Date.now()) {
			return undefined;
		}
		return JSON.parse(stored.json) as SessionData;
	}

	async set(key: string, session: SessionData, maxAge: number | 'session' | undefined): Promise<void> {
		// Re-inserting moves the key to the end of the Map's order: the oldest stays first.
		this.#sessions.delete(key);
		this.#sessions.set(key, {
			json: JSON.stringify(session),
			expiresAt: Date.now() + (typeof maxAge === 'number' ? maxAge : 86_400_000),
		});
		if (this.#sessions.size > maxSessions) {
			const oldest = this.#sessions.keys().next();
			if (oldest.done !== true) {
				this.#sessions.delete(oldest.value);
			}
		}
	}

	async destroy(key: string): Promise<void> {
		this.#sessions.delete(key);
	}

	async close(): Promise<void> {
		this.#sessions.clear();
	}
}
