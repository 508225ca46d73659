// koa-session's own fields in a stored session: the one list of them. They travel together with
// the expiry column (a save writes all of them or none), and with encryption on they stay plain
// (the expiry must stay readable to koa-session).

/** The fields koa-session itself keeps in every session it stores. */
export const koaSessionFields: ReadonlySet<string> = new Set(['_expire', '_maxAge', '_session']);

/**
 * Whether `value` is what koa-session itself stores under `name`: a finite number for `_expire`
 * and `_maxAge`, `true` for `_session`. Anything else under these names is an app's value.
 */
export function isKoaSessionValue(name: string, value: unknown): boolean {
	switch (name) {
		case '_expire':
		case '_maxAge':
			return typeof value === 'number' && Number.isFinite(value);
		case '_session':
			return value === true;
		default:
			return false;
	}
}

// The largest time JavaScript's Date holds, in ms since the epoch (ECMA-262, TimeClip).
const latestDate = 8.64e15;
// koa-session stores the session under a lifetime 10 s longer than the cookie's.
const koaStoreMargin = 10_000;

/**
 * The names of koa-session's fields in `data`, and `expiresOn` for the row's expiry, that hold a
 * value neither koa-session nor this store writes, and on which a request would fail: a `_maxAge`
 * that is not a lifetime koa-session can add to the clock (`1e300`, `-1`, `"x"`: its next save
 * would compute an expiry no `Date` holds), an `_expire` that is not a time a `Date` holds, or an
 * expiry column past what a `Date` holds (`'infinity'`, the year 200000). Empty for a sound row.
 */
export function outOfRange(data: Record<string, unknown>, expiresOn: Date, now: number): string[] {
	const names: string[] = [];
	if (Object.hasOwn(data, '_expire')) {
		const expire = data['_expire'];
		if (typeof expire !== 'number' || !(Math.abs(expire) <= latestDate)) {
			names.push('_expire');
		}
	}
	if (Object.hasOwn(data, '_maxAge')) {
		const maxAge = data['_maxAge'];
		// koa-session's own value for a browser-session cookie, should a store hand it back.
		if (maxAge !== 'session' && (typeof maxAge !== 'number' || !(maxAge >= 0 && now + maxAge + koaStoreMargin <= latestDate))) {
			names.push('_maxAge');
		}
	}
	if (Number.isNaN(expiresOn.getTime())) {
		names.push('expiresOn');
	}
	return names;
}
