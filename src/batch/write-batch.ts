import { coalesce, type Coalesced } from './coalesce.js';
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

/** What became of one save. A write whose row another transaction holds is tried again, so never `busy`. */
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

/**
 * What an operation that waits for an earlier one of its key starts after, given that one's
 * settling (`previous`, which never rejects). Only this package's tests give one
 * (`writeTurn`, store/internal-options.ts); without it an operation starts once `previous` settled.
 */
export type WriteTurn = (previous: Promise<void>) => Promise<unknown>;

/** The store's writes and deletes, coalesced per turn of the event loop (see `createSessionWriter`). */
export interface SessionWriter {
	write(write: SessionWrite): Promise<WriteOutcome>;
	delete(target: DeleteTarget): Promise<DeleteOutcome>;
	/**
	 * Resolves once every batch asked for so far has settled. A write waiting to be tried again
	 * (its row held) or behind an earlier one of its key is not waited for.
	 */
	drain(): Promise<void>;
}

type Operation = SessionWrite | (DeleteTarget & { readonly kind: 'delete' });
type Outcome = WriteOutcome | { readonly kind: 'deleted' } | { readonly kind: 'absent' } | { readonly kind: 'busy' };

// A deadlock or serialization failure rolled the statement back: it is run again, once.
const retriedOnce: ReadonlySet<string> = new Set([sqlStates.serializationFailure, sqlStates.deadlockDetected]);

/**
 * Coalesces the writes and deletes of one turn of the event loop into at most four statements
 * (one UPDATE, one INSERT, one upsert, one DELETE, each for many rows; an INSERT that meets a
 * stored key runs again as an upsert); each operation gets its own outcome or its statement's
 * error. One request's data never fails another's write: a batch that fails for a row-caused
 * reason is retried in halves until the culprit is alone.
 *
 * Operations on one key (concurrent requests of one session) run one after the other, in the
 * order they were asked for (see `keyQueue`), so a batch holds each key once and the order of its
 * operations does not matter. A write whose row another transaction holds is skipped by its
 * statement and tried again alone, so it delays no other session's write.
 */
export function createSessionWriter(runner: StatementRunner, statements: SessionStatements, maxLength: number, lockWait: number, waitTurn?: WriteTurn): SessionWriter {
	const run: StatementRunner = (statement, operation) => runner(statement, operation).catch((error: unknown) => {
		throw statements.missingSubjectColumn(error) ?? error;
	});
	const loader: Coalesced<Operation, Outcome> = coalesce((operations) => writeBatch(run, statements, maxLength, operations));
	const inOrder = keyQueue(waitTurn);
	// A row another transaction holds was skipped: the write goes into a later statement, after a
	// pause that doubles up to 50 ms, until `lockWait` has passed.
	const untilApplied = async (write: SessionWrite): Promise<Outcome> => {
		const deadline = performance.now() + lockWait;
		for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
			const outcome = await loader.load(write);
			if (outcome.kind !== 'busy') {
				return outcome;
			}
			if (performance.now() >= deadline) {
				throw new DatabaseError('set', Object.assign(new Error(`The session's row stayed locked by another transaction for ${lockWait} ms`), { failure: 'query-timeout' }));
			}
			debug('write skipped: another transaction holds the row; tried again in %d ms', pause);
			await new Promise((resolve) => setTimeout(resolve, pause));
		}
	};
	return {
		async write(write) {
			const outcome = await inOrder(write.digest, () => untilApplied(write));
			return outcome.kind === 'deleted' || outcome.kind === 'absent' || outcome.kind === 'busy' ? { kind: 'noLiveRow' } : outcome;
		},
		async delete(target) {
			return { existed: (await inOrder(target.digest, () => loader.load({ kind: 'delete', ...target }))).kind === 'deleted' };
		},
		drain: () => loader.drain(),
	};
}

/**
 * Runs the operations on one key one after the other, in the order they were asked for, each
 * once the one before has settled; operations on other keys do not wait. A batch so never holds
 * a key twice, and a session whose writes pile up (a hot session, a row another transaction
 * holds) delays its own requests only.
 */
function keyQueue(waitTurn: WriteTurn | undefined): <Result>(key: string, operation: () => Promise<Result>) => Promise<Result> {
	const tails = new Map<string, Promise<void>>();
	return (key, operation) => {
		const previous = tails.get(key);
		const result = previous === undefined ? operation() : (waitTurn === undefined ? previous : waitTurn(previous)).then(operation, operation);
		const tail = result.then(() => {}, () => {});
		tails.set(key, tail);
		void tail.then(() => {
			if (tails.get(key) === tail) {
				tails.delete(key);
			}
		});
		return result;
	};
}

/** One batch, each key once (see `keyQueue`): its kinds side by side, a statement each. */
async function writeBatch(run: StatementRunner, statements: SessionStatements, maxLength: number, operations: readonly Operation[]): Promise<(Outcome | Error)[]> {
	debug('write batch: %d writes', operations.length);
	const updates: (LiveWrite & { readonly kind: 'updateLive' })[] = [];
	const upserts: WholeWrite[] = [];
	const inserts: WholeWrite[] = [];
	const deletes: DeleteTarget[] = [];
	for (const operation of operations) {
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
				if (row?.['busy'] === true) {
					return { kind: 'busy' };
				}
				return row === undefined || row['size'] === null ? { kind: 'noLiveRow' } : saveOutcome(row, maxLength);
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
	return operations.map((operation) => byDigest.get(operation.digest) ?? new Error('No outcome for a write'));
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
