import type DataLoader from 'dataloader';
import { coalesce } from './batching.js';
import { execute, queryRows } from './database.js';
import { debug } from './debug.js';
import { isRecord } from './invalid.js';
import type { RawSqlClient } from './prisma-client.js';
import type { RowWrite, SessionStatements } from './statements.js';

/** One write as `set` or `destroy` asks for it. */
export type SessionWrite =
	| (RowWrite & { readonly kind: 'updateLive' | 'upsert' })
	| { readonly kind: 'delete'; readonly digest: string };

/**
 * Coalesces the writes of one turn of the event loop into at most three statements (one
 * UPDATE, one upsert, one DELETE, each for many rows). Each write resolves to whether it
 * touched a row (`updateLive` may find none) or rejects with its statement's error.
 *
 * Writes to distinct keys do not depend on each other, so their order within the batch does
 * not matter. A batch that writes one key twice (concurrent requests of one session) keeps
 * per-key order by running its writes one statement at a time, in the order they were asked for.
 */
export function createWriteBatcher(client: RawSqlClient, statements: SessionStatements): DataLoader<SessionWrite, boolean> {
	// Runs writes of one kind as one statement; resolves to the digests it touched.
	const run = async (kind: SessionWrite['kind'], writes: readonly SessionWrite[]): Promise<Set<string>> => {
		const digests = writes.map((write) => write.digest);
		if (kind === 'delete') {
			await execute(client, statements.delete({ digests }), 'destroy');
			return new Set(digests);
		}
		const rows = writes as readonly RowWrite[];
		if (kind === 'upsert') {
			await execute(client, statements.upsert(rows), 'set');
			return new Set(digests);
		}
		const updated = await queryRows(client, statements.updateLive(rows), 'set');
		return new Set(updated.flatMap((row) => (isRecord(row) && typeof row['key'] === 'string' ? [row['key']] : [])));
	};

	return coalesce(async (writes: readonly SessionWrite[]) => {
		debug('write batch: %d writes', writes.length);
		if (new Set(writes.map((write) => write.digest)).size < writes.length) {
			const results: (boolean | Error)[] = [];
			for (const write of writes) {
				results.push(await run(write.kind, [write]).then((touched) => touched.has(write.digest), (error: Error) => error));
			}
			return results;
		}
		const kinds = ['updateLive', 'upsert', 'delete'] as const;
		const outcomes = new Map(await Promise.all(kinds.map(async (kind) => {
			const group = writes.filter((write) => write.kind === kind);
			const outcome = group.length === 0 ? new Set<string>() : await run(kind, group).catch((error: Error) => error);
			return [kind, outcome] as const;
		})));
		return writes.map((write) => {
			const outcome = outcomes.get(write.kind);
			return outcome instanceof Error ? outcome : outcome?.has(write.digest) === true;
		});
	});
}
