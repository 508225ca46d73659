import test from 'ava';
import { runScript } from './helpers/child-process.js';
import { createDatabase } from './helpers/database.js';

test('NODE_DEBUG=koa-pgstore traces the store\'s decisions, never keys or data', async (t) => {
	const database = await createDatabase(t);
	const script = `
		import { PgStore } from 'koa-pgstore';
		const store = new PgStore({ connectionString: process.env.URL, cleanupInterval: 0, touchAfter: 60_000 });
		await store.set('secret-key-1', { email: 'ada@example.com' }, 3_600_000);
		const touch = {};
		const loaded = await store.get('secret-key-1', 3_600_000, { ctx: touch });
		await store.set('secret-key-1', loaded, 3_600_000, { ctx: touch, changed: false });
		const ended = {};
		await store.get('secret-key-1', 3_600_000, { ctx: ended });
		await store.destroy('secret-key-1', {});
		await store.set('secret-key-1', { email: 'ada@example.com', more: 1 }, 3_600_000, { ctx: ended, changed: true });
		console.log(String(await store.get('secret-key-1', 3_600_000, {}) ?? 'none'));
		await store.close();
	`;
	const { code, output, errorOutput } = await runScript(script, { URL: database.url, NODE_DEBUG: 'koa-pgstore' });
	t.is(code, 0);
	t.is(output, 'none', 'the ended session was not recreated');
	t.regex(errorOutput, /KOA-PGSTORE \d+: save skipped: unchanged/);
	t.regex(errorOutput, /KOA-PGSTORE \d+: save not written: the session ended/);
	t.regex(errorOutput, /KOA-PGSTORE \d+: read batch: 1 reads/);
	t.false(errorOutput.includes('secret-key-1'), 'no key');
	t.false(errorOutput.includes('ada@example.com'), 'no data');
	t.false(/[0-9a-f]{64}/.test(errorOutput), 'no digest');
});
