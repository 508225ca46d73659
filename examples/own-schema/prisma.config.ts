import { defineConfig } from 'prisma/config';

// The app's Prisma config: `npx prisma migrate dev --config examples/own-schema/prisma.config.ts`
// (or, inside an app of its own, plain `npx prisma migrate dev`). Paths are relative to this file.
export default defineConfig({
	schema: 'prisma/schema',
	migrations: { path: 'prisma/migrations' },
	datasource: { url: process.env['DATABASE_URL'] ?? '' },
});
