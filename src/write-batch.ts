import DataLoader from 'dataloader';
import { DatabaseError } from './errors.js';
import type { RawSqlClient } from './prisma-client.js';
import type { SessionStatements } from './session-table.js';

/** One write as `set` or `destroy` asks for it. */
export type SessionWrite =
	| {
		readonly kind: 'updateLive' | 'upsert';
		readonly digest: string;
		readonly json: string;
		readonly now: Date;
		readonly expiresOn: Date;
		/** `undefined`: the store keeps no subject; `null`: the session has none. */
		readonly subject: string | null | undefined;
	}
	| { readonly kind: 'delete'; readonly digest: string };

/**
 * Coalesces the writes of one turn of the event loop into at most three statements (one
 * UPDATE, one upsert, one DELETE, each for many rows). Each write resolves to whether it
 * touched a row (`updateLive` may find none) or rejects with its statement's error.
 *
 * Writes to distinct keys do not depend on each other, so their order within the batch does
 * not matter. A batch that writes one key twice (concurrent requests of one session) keeps
 * per-key order by running its writes one by one, in the order they were asked for.
 */
export function createWriteBatcher(client: RawSqlClient, sql: SessionStatements): DataLoader<SessionWrite, boolean> {
	const single = async (write: SessionWrite): Promise<boolean> => {
		try {
			const rows = write.kind === 'delete'
				? await client.$executeRawUnsafe(sql.delete, write.digest)
				: await client.$executeRawUnsafe(
					write.kind === 'upsert' ? sql.upsert : sql.updateLive,
					write.digest, write.json, write.now, write.expiresOn,
					...write.subject === undefined ? [] : [write.subject],
				);
			return rows > 0;
		} catch (error) {
			throw new DatabaseError(write.kind === 'delete' ? 'destroy' : 'set', error);
		}
	};

	const batch = async (writes: readonly SessionWrite[]): Promise<(boolean | Error)[]> => {
		if (writes.length === 1 || new Set(writes.map((write) => write.digest)).size < writes.length) {
			const results: (boolean | Error)[] = [];
			for (const write of writes) {
				results.push(await single(write).catch((error: Error) => error));
			}
			return results;
		}
		const groups = { updateLive: [] as SessionWrite[], upsert: [] as SessionWrite[], delete: [] as SessionWrite[] };
		for (const write of writes) {
			groups[write.kind].push(write);
		}
		const columns = (group: SessionWrite[]) => [
			group.map((write) => write.digest),
			group.map((write) => (write.kind === 'delete' ? '' : write.json)),
			group.map((write) => (write.kind === 'delete' ? '' : write.now.toISOString())),
			group.map((write) => (write.kind === 'delete' ? '' : write.expiresOn.toISOString())),
			...sql.bySubject === undefined ? [] : [group.map((write) => (write.kind === 'delete' ? null : write.subject ?? null))],
		];
		const [updated, upserted, deleted] = await Promise.allSettled([
			groups.updateLive.length === 0 ? Promise.resolve([]) : client.$queryRawUnsafe(sql.updateLiveMany, ...columns(groups.updateLive)),
			groups.upsert.length === 0 ? Promise.resolve(0) : client.$executeRawUnsafe(sql.upsertMany, ...columns(groups.upsert)),
			groups.delete.length === 0 ? Promise.resolve(0) : client.$executeRawUnsafe(sql.deleteMany, groups.delete.map((write) => write.digest)),
		]);
		const updatedKeys = new Set(updated.status === 'fulfilled' && Array.isArray(updated.value)
			? updated.value.map((row: unknown) => (typeof row === 'object' && row !== null ? Reflect.get(row, 'key') : undefined))
			: []);
		return writes.map((write) => {
			const outcome = write.kind === 'updateLive' ? updated : write.kind === 'upsert' ? upserted : deleted;
			if (outcome.status === 'rejected') {
				return new DatabaseError(write.kind === 'delete' ? 'destroy' : 'set', outcome.reason);
			}
			return write.kind === 'updateLive' ? updatedKeys.has(write.digest) : true;
		});
	};

	return new DataLoader(batch, {
		cache: false,
		maxBatchSize: 500,
		batchScheduleFn: (callback) => setImmediate(callback),
	});
}
