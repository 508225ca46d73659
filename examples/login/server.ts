// `npm run example:login`, then open http://localhost:3001. README.md beside this file shows a
// key rotation step by step.
import type { AddressInfo } from 'node:net';
import { openDatabase } from '../database.js';
import { createLoginApp } from './app.js';

// Two demo secrets, "new,old", as during a rotation. Never use fixed secrets in production: make
// each with `openssl rand -base64 32` and keep them out of the code.
const demoSecrets = 'login-example-new-secret-0123456789abcdef,login-example-old-secret-0123456789abcdef';
const secrets = process.env['SESSION_KEYS'] ?? demoSecrets;
if (secrets === demoSecrets) {
	console.log('SESSION_KEYS is not set: signing cookies with the two demo secrets "new,old"');
}

const database = await openDatabase('login', 54_330);
const { app, store } = await createLoginApp({ connectionString: database.url, secrets });

const server = app.listen(Number(process.env['PORT'] ?? 3001), () => {
	console.log(`Login example listening on http://localhost:${(server.address() as AddressInfo).port}`);
});

async function shutdown(): Promise<void> {
	server.close();
	server.closeAllConnections();
	await store.close();
	await database.stop();
	process.exit(0);
}
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
