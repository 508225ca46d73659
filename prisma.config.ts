import { defineConfig } from 'prisma/config';

// Used by `prisma generate`, `prisma migrate deploy` and `prisma studio`. DATABASE_URL is only
// needed by the commands that connect.
export default defineConfig({
	schema: 'prisma/schema.prisma',
	migrations: { path: 'prisma/migrations' },
	datasource: { url: process.env['DATABASE_URL'] ?? '' },
});
