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
