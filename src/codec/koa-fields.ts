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

/**
 * The names of koa-session's fields in `data`, and `expiresOn` for the row's expiry, that hold a
 * value neither koa-session nor this store writes, and on which a request would fail: a `_maxAge`
 * that is not a lifetime (`-1`, `"x"`: its next save would pass the store a negative or no
 * lifetime), an `_expire` that is not a number, or an expiry column past what a `Date` holds
 * (`'infinity'`, the year 200000). A lifetime longer than a `Date` holds is no fault: a save clamps
 * its expiry to the last moment a `Date` holds. Empty for a sound row.
 */
export function outOfRange(data: Record<string, unknown>, expiresOn: Date): string[] {
	const names: string[] = [];
	if (Object.hasOwn(data, '_expire')) {
		const expire = data['_expire'];
		if (typeof expire !== 'number' || !Number.isFinite(expire)) {
			names.push('_expire');
		}
	}
	if (Object.hasOwn(data, '_maxAge')) {
		const maxAge = data['_maxAge'];
		// koa-session's own value for a browser-session cookie, should a store hand it back.
		if (maxAge !== 'session' && (typeof maxAge !== 'number' || !(maxAge >= 0 && Number.isFinite(maxAge)))) {
			names.push('_maxAge');
		}
	}
	if (Number.isNaN(expiresOn.getTime())) {
		names.push('expiresOn');
	}
	return names;
}
