// `npm run example:own-schema`, then open http://localhost:3002.
import type { AddressInfo } from 'node:net';
import { openDatabase } from '../database.js';
import { applyMigrationSqlIfMissing, createClient, createOwnSchemaApp } from './app.js';

const database = await openDatabase('own-schema', 54_331);
const prisma = createClient(database.url);
if (await applyMigrationSqlIfMissing(prisma)) {
	console.log('Applied prisma/migrations/ (what `prisma migrate deploy` would do)');
}
// Never use a fixed secret in production: `openssl rand -base64 32`, kept out of the code.
const { app, store } = createOwnSchemaApp(prisma, process.env['SESSION_KEYS'] ?? 'own-schema-example-secret-0123456789abcdef');

const server = app.listen(Number(process.env['PORT'] ?? 3002), () => {
	console.log(`Own-schema example listening on http://localhost:${(server.address() as AddressInfo).port}`);
});

async function shutdown(): Promise<void> {
	server.close();
	server.closeAllConnections();
	await store.close(); // stops the cleanup schedule; the client stays the app's
	await prisma.$disconnect();
	await database.stop();
	process.exit(0);
}
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
