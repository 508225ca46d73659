import http from 'node:http';
import test from 'ava';
import { createDatabase } from './helpers/database.js';
import { startExample } from './helpers/example.js';
import { CookieJar, parseSetCookie } from './helpers/http.js';

// A GET on a connection of its own (no keep-alive), so that the cluster's primary hands each
// request to the next worker in turn.
async function visit(url: string, jar: CookieJar): Promise<{ worker: string; body: string }> {
	return new Promise((resolve, reject) => {
		const request = http.get(url, { agent: false, headers: jar.cookies.size > 0 ? { cookie: jar.header() } : {} }, (response) => {
			for (const header of response.headers['set-cookie'] ?? []) {
				const cookie = parseSetCookie(header);
				jar.cookies.set(cookie.name, cookie.value);
			}
			let body = '';
			response.setEncoding('utf8');
			response.on('data', (chunk: string) => { body += chunk; });
			response.on('end', () => resolve({ worker: String(response.headers['x-worker']), body }));
		});
		request.on('error', reject);
	});
}

test('a session created through one worker is read and written by the others', async (t) => {
	const database = await createDatabase(t, { migrate: false });
	const example = await startExample(t, 'examples/cluster/server.ts', { DATABASE_URL: database.url, WORKERS: '2' });
	t.regex(example.output(), /\(2 workers\)/);
	const jar = new CookieJar();
	const first = await visit(`${example.url}/`, jar);
	t.regex(first.body, /Visit 1, served by worker/);

	const workers = new Set([first.worker]);
	let visits = 1;
	// The primary deals connections round-robin; 20 tries leave room for any other order.
	for (let attempt = 0; attempt < 20 && workers.size < 2; attempt += 1) {
		const next = await visit(`${example.url}/`, jar);
		visits += 1;
		t.regex(next.body, new RegExp(`Visit ${visits}, served by worker ${next.worker} `));
		workers.add(next.worker);
	}
	t.is(workers.size, 2, 'both workers served the one session');
	const rows = await database.query<{ data: { visits: number; servedBy: number[] } }>('SELECT data FROM http_sessions');
	t.is(rows.length, 1);
	t.is(rows[0]?.data.visits, visits);
	t.deepEqual(new Set(rows[0]?.data.servedBy.map(String)), workers);
	t.is(await example.stop(), 0, example.output());
});

test('the workers\' cleanup schedules delete expired sessions of the shared table', async (t) => {
	const database = await createDatabase(t);
	await database.query(`INSERT INTO http_sessions (key, data, created_on, modified_on, expires_on)
		SELECT 'expired-' || n, '{}', now() - interval '2 days', now() - interval '2 days', now() - interval '1 day'
		FROM generate_series(1, 5) AS n`);
	const example = await startExample(t, 'examples/cluster/server.ts', { DATABASE_URL: database.url, WORKERS: '2', CLEANUP_INTERVAL: '500' });
	const live = new CookieJar();
	await visit(`${example.url}/`, live);
	const deadline = Date.now() + 20_000;
	let left = 6;
	while (Date.now() < deadline) {
		[{ left = left } = {}] = await database.query<{ left: number }>('SELECT count(*)::int AS "left" FROM http_sessions');
		if (left === 1) {
			break;
		}
		await new Promise((resolve) => setTimeout(resolve, 200));
	}
	t.is(left, 1, 'only the live session is left');
	t.is(await example.stop(), 0, example.output());
});
