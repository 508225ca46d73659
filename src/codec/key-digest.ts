import { createHash } from 'node:crypto';

/**
 * The form in which a session key is stored and looked up: its SHA-256, in hex.
 *
 * Keys are random (koa-session's are UUIDs), so a plain hash suffices; no salt or slow hash is
 * needed. Whoever reads the table (a backup, Prisma Studio, an injection elsewhere) cannot turn
 * a digest back into a cookie.
 */
export function digestKey(key: string): string {
	return createHash('sha256').update(key).digest('hex');
}
