// What the benchmark scripts and their app servers (bench/server.ts) agree on. Kept apart from
// bench/server.ts, which starts a server when imported.

/** The stores the benchmark app can run with. */
export type StoreKind = 'koa-pgstore' | 'koa-pgstore-unprepared' | 'pg' | 'map' | 'cookie';
export const storeKinds: readonly StoreKind[] = ['koa-pgstore', 'koa-pgstore-unprepared', 'pg', 'map', 'cookie'];

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
