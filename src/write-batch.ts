import type DataLoader from 'dataloader';
import { coalesce } from './batching.js';
import type { StatementRunner } from './database.js';
import { debug } from './debug.js';
import { DatabaseError } from './errors.js';
import { isRecord } from './invalid.js';
import type { LiveWrite, SessionStatements, WholeWrite } from './statements.js';

/** One write as `set` or `destroy` asks for it. */
export type SessionWrite =
	| (LiveWrite & { readonly kind: 'updateLive' })
	| (WholeWrite & { readonly kind: 'upsert' })
	/** A whole write of a key expected to be new: an upsert if the key is stored after all. */
	| (WholeWrite & { readonly kind: 'insert' })
	| { readonly kind: 'delete'; readonly digest: string };

/**
 * What became of one write. `written: false` means: for `updateLive`, no live row (when `size`
 * is absent) or a session too large to store (`size` says how large); for `upsert` and `insert`, too large;
 * for `delete`, no row to delete.
 */
export interface WriteOutcome {
	readonly written: boolean;
	readonly size?: number;
}

// A deadlock or serialization failure rolled the statement back: it is run again, once.
const retriedOnce = new Set(['40001', '40P01']);

// Failures of a statement that certainly rolled back and that one row's data can cause: data
// exceptions (22), integrity constraints of the app's own (23), program limits such as jsonb's
// size limit (54). Their batch is retried row by row, so only the culprit fails. Timeouts and
// lost connections are not retried: they would fail again for every row, slowly.
const rowCausedClasses = new Set(['22', '23', '54']);

/**
 * Coalesces the writes of one turn of the event loop into at most four statements (one UPDATE,
 * one INSERT, one upsert, one DELETE, each for many rows; an INSERT that meets a stored key runs
 * again as an upsert); each write gets its own outcome or its statement's error. One request's
 * data never fails another's write: a batch that fails for a row-caused reason is retried one row
 * per statement.
 *
 * Writes to distinct keys do not depend on each other, so their order within the batch does not
 * matter. A batch that writes one key twice (concurrent requests of one session) keeps per-key
 * order by running in rounds (see `rounds`).
 */
export function createWriteBatcher(query: StatementRunner, statements: SessionStatements, maxLength: number): DataLoader<SessionWrite, WriteOutcome> {
	// Runs writes of one kind as one statement: the outcome of each, by digest.
	const run = async (kind: SessionWrite['kind'], writes: readonly SessionWrite[]): Promise<Map<string, WriteOutcome>> => {
		const digests = writes.map((write) => write.digest);
		const outcomes = new Map<string, WriteOutcome>(digests.map((digest) => [digest, { written: false }]));
		const statement = kind === 'delete'
			? statements.delete({ digests })
			: kind === 'upsert'
				? statements.upsert(writes as readonly WholeWrite[], maxLength)
				: kind === 'insert'
					? statements.insert(writes as readonly WholeWrite[], maxLength)
					: statements.updateLive(writes as readonly LiveWrite[], maxLength);
		const rows = await query(statement, kind === 'delete' ? 'destroy' : 'set').catch((error: unknown) => {
			throw statements.missingSubjectColumn(error) ?? error;
		});
		for (const row of rows) {
			if (isRecord(row) && typeof row['key'] === 'string') {
				outcomes.set(row['key'], kind === 'delete'
					? { written: true }
					: { written: row['written'] === true, size: Number(row['size']) });
			}
		}
		return outcomes;
	};

	// One statement for the group; when a row's data made it fail, one statement per row.
	const runGroup = async (kind: SessionWrite['kind'], writes: readonly SessionWrite[]): Promise<(WriteOutcome | Error)[]> => {
		try {
			const outcomes = await run(kind, writes).catch((error: unknown) => {
				if (error instanceof DatabaseError && retriedOnce.has(error.sqlState ?? '')) {
					debug('write batch of %d rolled back (SQLSTATE %s): run again', writes.length, error.sqlState);
					return run(kind, writes);
				}
				throw error;
			});
			return writes.map((write) => outcomes.get(write.digest) ?? { written: false });
		} catch (error) {
			if (kind === 'insert' && error instanceof DatabaseError && error.sqlState === '23505') {
				debug('insert of %d new keys met a stored one (SQLSTATE 23505): run as an upsert', writes.length);
				return runGroup('upsert', writes);
			}
			if (writes.length === 1 || !(error instanceof DatabaseError) || !rowCausedClasses.has(error.sqlState?.slice(0, 2) ?? '')) {
				return writes.map(() => error as Error);
			}
			debug('write batch of %d failed for a row\'s data (SQLSTATE %s): retried row by row', writes.length, error.sqlState);
			return Promise.all(writes.map(async (write) => (await runGroup(kind, [write]))[0] ?? { written: false }));
		}
	};

	return coalesce(async (writes: readonly SessionWrite[]) => {
		debug('write batch: %d writes', writes.length);
		const results = new Map<SessionWrite, WriteOutcome | Error>();
		for (const round of rounds(writes)) {
			await Promise.all((['updateLive', 'upsert', 'insert', 'delete'] as const).map(async (kind) => {
				const group = round.filter((write) => write.kind === kind);
				if (group.length > 0) {
					const outcomes = await runGroup(kind, group);
					group.forEach((write, index) => results.set(write, outcomes[index] ?? { written: false }));
				}
			}));
		}
		return writes.map((write) => results.get(write) ?? { written: false });
	});
}

// The writes of a batch in rounds that each hold a key at most once: round n has the n-th write
// of every key, in the order they were asked for. Rounds run one after the other, so the writes
// of one key (concurrent requests of one session) apply in order, and the other keys still share
// the first round's statements.
function rounds(writes: readonly SessionWrite[]): SessionWrite[][] {
	const result: SessionWrite[][] = [];
	const seen = new Map<string, number>();
	for (const write of writes) {
		const index = seen.get(write.digest) ?? 0;
		seen.set(write.digest, index + 1);
		(result[index] ??= []).push(write);
	}
	return result;
}
