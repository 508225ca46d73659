import type DataLoader from 'dataloader';
import { coalesce } from './coalesce.js';
import type { StatementRunner } from '../driver/driver.js';
import { debug } from '../base/debug.js';
import { rowCausedClasses, sqlStateOf, sqlStates } from '../base/driver-error.js';
import { DatabaseError } from '../base/errors.js';
import { isRecord } from '../base/validate.js';
import type { Statement } from '../sql/text.js';
import type { DeleteTarget, LiveWrite, SessionStatements, WholeWrite } from '../sql/statements.js';

/** A save as the store sends it: a merge into a live row, or a whole session. */
export type SessionWrite =
	| (LiveWrite & { readonly kind: 'updateLive' })
	/** A whole write that replaces whatever row the key has. */
	| (WholeWrite & { readonly kind: 'upsert' })
	/** A whole write of a key expected to be new: an upsert if the key is stored after all. */
	| (WholeWrite & { readonly kind: 'insert' });

/** What became of one save. */
export type WriteOutcome =
	/** The row now holds the save; a whole write tells the row's `id`. */
	| { readonly kind: 'applied'; readonly id?: string | undefined }
	/** `updateLive` only: the key had no live row (deleted or expired); nothing was written. */
	| { readonly kind: 'noLiveRow' }
	/** The session stored after the save would be `size` bytes, over `maxLength`; nothing was written. */
	| { readonly kind: 'tooLarge'; readonly size: number; readonly maxLength: number };

/** What became of one delete. */
export interface DeleteOutcome {
	/** A row of the key (or of the id) was there, and is gone. */
	readonly existed: boolean;
}

/** The store's writes and deletes, coalesced per turn of the event loop (see `createSessionWriter`). */
export interface SessionWriter {
	write(write: SessionWrite): Promise<WriteOutcome>;
	delete(target: DeleteTarget): Promise<DeleteOutcome>;
}

type Operation = SessionWrite | (DeleteTarget & { readonly kind: 'delete' });
type Outcome = WriteOutcome | { readonly kind: 'deleted' } | { readonly kind: 'absent' };

// A deadlock or serialization failure rolled the statement back: it is run again, once.
const retriedOnce: ReadonlySet<string> = new Set([sqlStates.serializationFailure, sqlStates.deadlockDetected]);

/**
 * Coalesces the writes and deletes of one turn of the event loop into at most four statements
 * (one UPDATE, one INSERT, one upsert, one DELETE, each for many rows; an INSERT that meets a
 * stored key runs again as an upsert); each operation gets its own outcome or its statement's
 * error. One request's data never fails another's write: a batch that fails for a row-caused
 * reason is retried in halves until the culprit is alone.
 *
 * Operations on distinct keys do not depend on each other, so their order within the batch does
 * not matter. A batch that has one key twice (concurrent requests of one session) keeps per-key
 * order by running in rounds (see `rounds`).
 */
export function createSessionWriter(runner: StatementRunner, statements: SessionStatements, maxLength: number): SessionWriter {
	const run: StatementRunner = (statement, operation) => runner(statement, operation).catch((error: unknown) => {
		throw statements.missingSubjectColumn(error) ?? error;
	});
	const loader: DataLoader<Operation, Outcome> = coalesce((operations) => writeBatch(run, statements, maxLength, operations));
	return {
		async write(write) {
			const outcome = await loader.load(write);
			return outcome.kind === 'deleted' || outcome.kind === 'absent' ? { kind: 'noLiveRow' } : outcome;
		},
		async delete(target) {
			return { existed: (await loader.load({ kind: 'delete', ...target })).kind === 'deleted' };
		},
	};
}

/** One batch: its rounds one after the other, the kinds of a round side by side. */
async function writeBatch(run: StatementRunner, statements: SessionStatements, maxLength: number, operations: readonly Operation[]): Promise<(Outcome | Error)[]> {
	debug('write batch: %d writes', operations.length);
	const results = new Map<Operation, Outcome | Error>();
	for (const round of rounds(operations)) {
		const updates: (LiveWrite & { readonly kind: 'updateLive' })[] = [];
		const upserts: WholeWrite[] = [];
		const inserts: WholeWrite[] = [];
		const deletes: DeleteTarget[] = [];
		for (const operation of round) {
			switch (operation.kind) {
				case 'updateLive': updates.push(operation); break;
				case 'upsert': upserts.push(operation); break;
				case 'insert': inserts.push(operation); break;
				case 'delete': deletes.push(operation); break;
			}
		}
		const byDigest = new Map<string, Outcome | Error>();
		const record = (digests: readonly string[], outcomes: readonly (Outcome | Error)[]) => {
			digests.forEach((digest, index) => byDigest.set(digest, outcomes[index] ?? new Error('No outcome for a write')));
		};
		await Promise.all([
			updates.length > 0 && runGroup(run, updates, {
				operation: 'set',
				statement: (writes) => statements.updateLive(writes, maxLength),
				outcomeOf: (write, rows) => {
					const row = rows.byKey.get(write.digest);
					return row === undefined ? { kind: 'noLiveRow' } : saveOutcome(row, maxLength);
				},
			}).then((outcomes) => record(updates.map((write) => write.digest), outcomes)),
			upserts.length > 0 && runWhole(run, statements, maxLength, upserts, false).then((outcomes) => record(upserts.map((write) => write.digest), outcomes)),
			inserts.length > 0 && runWhole(run, statements, maxLength, inserts, true).then((outcomes) => record(inserts.map((write) => write.digest), outcomes)),
			deletes.length > 0 && runGroup(run, deletes, {
				operation: 'destroy',
				statement: (targets) => statements.delete(targets),
				// By the key, or by the row id where another request's regenerate() moved the row.
				outcomeOf: (target, rows) => ({ kind: rows.byKey.has(target.digest) || (target.id !== undefined && rows.byId.has(target.id)) ? 'deleted' : 'absent' }),
			}).then((outcomes) => record(deletes.map((target) => target.digest), outcomes)),
		]);
		for (const operation of round) {
			results.set(operation, byDigest.get(operation.digest) ?? new Error('No outcome for a write'));
		}
	}
	return operations.map((operation) => results.get(operation) ?? new Error('No outcome for a write'));
}

// Inserts go as a plain INSERT (no speculative insertion); a group of them that meets a stored
// key (SQLSTATE 23505) runs again as an upsert.
function runWhole(run: StatementRunner, statements: SessionStatements, maxLength: number, writes: readonly WholeWrite[], insert: boolean): Promise<(Outcome | Error)[]> {
	const upsert: GroupStatements<WholeWrite> = {
		operation: 'set',
		statement: (batch) => statements.upsert(batch, maxLength),
		outcomeOf: (write, rows) => {
			const row = rows.byKey.get(write.digest);
			return row === undefined ? new Error('No result row for a whole write') : saveOutcome(row, maxLength);
		},
	};
	return runGroup(run, writes, insert ? { ...upsert, statement: (batch) => statements.insert(batch, maxLength), onUniqueViolation: upsert } : upsert);
}

/** A statement's result rows, by their `key` and by their `id`. */
interface ResultRows {
	readonly byKey: ReadonlyMap<string, Record<string, unknown>>;
	readonly byId: ReadonlyMap<string, Record<string, unknown>>;
}

/** How one kind of operation becomes a statement, and its result rows each item's outcome. */
interface GroupStatements<Item> {
	readonly operation: 'set' | 'destroy';
	statement(items: readonly Item[]): Statement;
	outcomeOf(item: Item, rows: ResultRows): Outcome | Error;
	/** How to run the group again when it met a stored key (SQLSTATE 23505): an INSERT as an upsert. */
	readonly onUniqueViolation?: GroupStatements<Item>;
}

// One statement for the group; a deadlock runs it again once; when a row's data made it fail,
// one statement per row.
async function runGroup<Item>(run: StatementRunner, items: readonly Item[], group: GroupStatements<Item>): Promise<(Outcome | Error)[]> {
	const once = async (): Promise<(Outcome | Error)[]> => {
		const rows = await run(group.statement(items), group.operation);
		const byKey = new Map<string, Record<string, unknown>>();
		const byId = new Map<string, Record<string, unknown>>();
		for (const row of rows) {
			if (isRecord(row) && typeof row['key'] === 'string') {
				byKey.set(row['key'], row);
				if (typeof row['id'] === 'string') {
					byId.set(row['id'], row);
				}
			}
		}
		return items.map((item) => group.outcomeOf(item, { byKey, byId }));
	};
	try {
		return await once().catch((error: unknown) => {
			if (retriedOnce.has(sqlStateOf(error) ?? '')) {
				debug('write batch of %d rolled back (SQLSTATE %s): run again', items.length, sqlStateOf(error));
				return once();
			}
			throw error;
		});
	} catch (error) {
		if (group.onUniqueViolation !== undefined && sqlStateOf(error) === sqlStates.uniqueViolation) {
			debug('insert of %d new keys met a stored one (SQLSTATE 23505): run as an upsert', items.length);
			return runGroup(run, items, group.onUniqueViolation);
		}
		// A row's data made the batch fail: the batch is split in halves, and each half that fails
		// again is split again, so only the culprit fails, after about 2·log2(n) statements for one
		// bad row among n, not n. Timeouts and lost connections are not retried: they would fail
		// again for every row, slowly.
		if (items.length === 1 || !(error instanceof DatabaseError) || !rowCausedClasses.has(error.sqlState?.slice(0, 2) ?? '')) {
			const failure = error instanceof Error ? error : new Error(String(error));
			return items.map(() => failure);
		}
		debug('write batch of %d failed for a row\'s data (SQLSTATE %s): retried in halves', items.length, error.sqlState);
		const middle = Math.ceil(items.length / 2);
		return (await Promise.all([items.slice(0, middle), items.slice(middle)].map((half) => runGroup(run, half, group)))).flat();
	}
}

// A save's result row: `written`, and `size` (the bytes of the session stored after it).
function saveOutcome(row: Record<string, unknown>, maxLength: number): WriteOutcome {
	if (row['written'] !== true) {
		return { kind: 'tooLarge', size: Number(row['size']), maxLength };
	}
	return typeof row['id'] === 'string' ? { kind: 'applied', id: row['id'] } : { kind: 'applied' };
}

// The operations of a batch in rounds that each hold a key at most once: round n has the n-th
// operation of every key, in the order they were asked for. Rounds run one after the other, so
// the operations on one key (concurrent requests of one session) apply in order, and the other
// keys still share the first round's statements.
function rounds(operations: readonly Operation[]): Operation[][] {
	const result: Operation[][] = [];
	const seen = new Map<string, number>();
	for (const operation of operations) {
		const index = seen.get(operation.digest) ?? 0;
		seen.set(operation.digest, index + 1);
		(result[index] ??= []).push(operation);
	}
	return result;
}
