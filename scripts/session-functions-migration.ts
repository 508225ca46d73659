// Prints the migration that creates the session functions of this package's table, as
// src/sql/statements.ts builds the statements now. A release that changes a statement ships its
// output as a new migration folder (`<timestamp>_session_functions`); a deployed migration is never
// edited (Prisma checks their checksums), and the functions of the older release stay for its
// instances. test/unit/session-functions.test.ts fails until the newest one matches.
// Run: npx tsx scripts/session-functions-migration.ts > prisma/migrations/<timestamp>_session_functions/migration.sql
import { functionsMigration } from '../src/sql/session-functions.js';
import { packageTable } from '../src/sql/session-table.js';

process.stdout.write(functionsMigration(packageTable));
