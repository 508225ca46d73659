import { debuglog } from 'node:util';

/**
 * Traces the store's decisions with `NODE_DEBUG=koa-pgstore`, as koa-session does with its own
 * name: skipped touches, ended sessions not recreated, batch sizes, skipped sweeps. Never
 * session data, keys or digests.
 */
export const debug = debuglog('koa-pgstore');
