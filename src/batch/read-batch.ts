import { coalesce } from './coalesce.js';
import type { StatementRunner } from '../driver/driver.js';
import { debug } from '../base/debug.js';
import { copyOf, storedRow, type StoredRow } from '../codec/session-codec.js';
import type { SessionStatements } from '../sql/statements.js';

/** The store's reads, coalesced per turn of the event loop. */
export interface SessionReader {
	/** The live row of `digest`, or `undefined` when there is none or it expired. */
	read(digest: string): Promise<StoredRow | undefined>;
	/** Resolves once every read asked for so far has settled. */
	drain(): Promise<void>;
}

/**
 * Coalesces the reads of one turn of the event loop into one statement (`key = ANY($1)`). Each
 * caller gets its own row (`undefined` for none or an expired one) or the statement's error.
 * Keys are digests.
 */
export function createSessionReader(run: StatementRunner, statements: SessionStatements): SessionReader {
	const loader = coalesce((digests: readonly string[]) => readBatch(run, statements, digests));
	return { read: (digest) => loader.load(digest), drain: () => loader.drain() };
}

async function readBatch(run: StatementRunner, statements: SessionStatements, digests: readonly string[]): Promise<(StoredRow | undefined | Error)[]> {
	debug('read batch: %d reads', digests.length);
	let rows: unknown[];
	try {
		rows = await run(statements.selectLive({ digests: [...new Set(digests)], now: new Date() }), 'get');
	} catch (error) {
		const failure = statements.missingSubjectColumn(error) ?? error as Error;
		return digests.map(() => failure);
	}
	const found = new Map<string, StoredRow>();
	for (const row of rows) {
		const stored = storedRow(row);
		if (stored !== undefined) {
			found.set(stored.key, stored);
		}
	}
	// Concurrent requests of one session must not share one mutable object.
	const handedOut = new Set<string>();
	return digests.map((digest) => {
		const row = found.get(digest);
		if (row === undefined || !handedOut.has(digest)) {
			handedOut.add(digest);
			return row;
		}
		return copyOf(row);
	});
}
