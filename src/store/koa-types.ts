// Types for `ctx.session` in Koa apps that use this store: koa-session 7 does not declare them.
import 'koa';

/**
 * The fields your app keeps in its sessions. Declare them once and `ctx.session` is typed:
 *
 * @example
 * ```ts
 * declare module 'koa-pgstore' {
 * 	interface SessionFields {
 * 		userId?: string;
 * 		views?: number;
 * 	}
 * }
 * ```
 */
// biome-ignore lint: an empty interface is the point: apps merge their fields into it.
export interface SessionFields {}

/** `ctx.session` as koa-session makes it: your fields plus koa-session's own members. */
export type KoaSession = SessionFields & {
	[field: string]: unknown;
	/** `true` when this request created the session. */
	readonly isNew: boolean;
	/** Whether the session holds any field. */
	readonly populated: boolean;
	/** Number of fields. */
	readonly length: number;
	/** Lifetime of this session's cookie; setting it saves the session. */
	maxAge: number | 'session' | undefined;
	/** The session key (the cookie's value). */
	readonly externalKey: string | undefined;
	/** Saves the session now, changed or not. */
	save(): Promise<void>;
	/** Moves the session to a new key (do it on login): the old key stops working. */
	regenerate(): Promise<void>;
	/** Commits headers when koa-session's `autoCommit` is off. */
	manuallyCommit(): Promise<void>;
	toJSON(): Record<string, unknown>;
};

declare module 'koa' {
	interface ExtendableContext {
		/** The session (koa-session); assign `null` to end it. */
		session: KoaSession | null;
		/** koa-session's options for this request. */
		readonly sessionOptions: Record<string, unknown> & { key?: string; maxAge?: number | 'session' };
	}
}
