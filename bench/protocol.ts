// What the benchmark scripts and their app servers (bench/server.ts) agree on. Kept apart from
// bench/server.ts, which starts a server when imported.

/**
 * The stores the benchmark app can run with: koa-pgstore on its own client (`connectionString`,
 * prepared statements on or off), on the app's Prisma client (`prisma`), each also from the
 * older build of BENCH_BASELINE; the hand-written `pg` store; `pg-prepared`, the least a
 * PostgreSQL store does per request (one prepared single-row statement per operation); koa-redis;
 * the Map ceiling; and koa-session's cookie-only sessions.
 */
export type StoreKind =
	| 'koa-pgstore' | 'koa-pgstore-unprepared' | 'koa-pgstore-prisma'
	| 'koa-pgstore-baseline' | 'koa-pgstore-prisma-baseline'
	| 'pg' | 'pg-prepared' | 'koa-redis' | 'map' | 'cookie';
export const storeKinds: readonly StoreKind[] = [
	'koa-pgstore', 'koa-pgstore-unprepared', 'koa-pgstore-prisma',
	'koa-pgstore-baseline', 'koa-pgstore-prisma-baseline',
	'pg', 'pg-prepared', 'koa-redis', 'map', 'cookie',
];

/** Kinds that run the older build of BENCH_BASELINE, a checkout of another commit. */
export const isBaseline = (kind: StoreKind): boolean => kind.endsWith('-baseline');

/** Kinds whose sessions are rows of PostgreSQL's session table (statement counts are theirs). */
export const inPostgres = (kind: StoreKind): boolean => kind.startsWith('koa-pgstore') || kind.startsWith('pg');

/** What a server prints once listening: its plain app and its `rolling: true` app. */
export interface ServerPorts {
	readonly plain: number;
	readonly rolling: number;
}

/** What bench/profile.ts sends a server through the IPC channel. */
export type ProfileCommand =
	| { readonly type: 'start'; readonly samplingInterval?: number }
	| { readonly type: 'stop'; readonly profilePath?: string };

/** A server's answer to `stop`: the CPU its process used since `start`. */
export interface ProfileReport {
	readonly type: 'stopped';
	readonly cpuMicroseconds: number;
	readonly wallMicroseconds: number;
}
