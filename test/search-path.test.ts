import test from 'ava';
import pg from 'pg';
import { PgStore } from '../src/index.js';
import { readSessionTable } from '../src/sql/session-table.js';
import { sweepStatements } from '../src/sql/sweep-statements.js';
import { sessionStatements } from '../src/sql/statements.js';
import { createDatabase, withDatabase } from './helpers/database.js';
import { CookieJar, request, startApp } from './helpers/http.js';
import { sessionRoutes } from './helpers/routes.js';
import { catalogNames, everyStatement, unqualifiedNames } from './helpers/sql-names.js';
import { hour } from './helpers/time.js';

// A role that may create objects in `public` but has no grant on the session table shadows every
// operator and function the store's statements use (read from their text), with the same argument
// types, in `public`; and the app role's search_path puts `public` before pg_catalog, so any name
// the store left unqualified would resolve to the intruder's copy and run it as the app role. None
// may run: each copy records its call in a table the intruder reads.

test('a role with CREATE on public cannot run its operators or functions as the app role through search_path', async (t) => {
	const database = await createDatabase(t);
	const role = `app_${database.name.slice(-12)}`;
	const intruder = `intruder_${database.name.slice(-12)}`;
	await database.query(`CREATE ROLE ${role} LOGIN PASSWORD 'app'`);
	await database.query(`CREATE ROLE ${intruder}`);
	t.teardown(async () => {
		await database.query(`DROP OWNED BY ${intruder}, ${role} CASCADE; DROP ROLE ${intruder}; DROP ROLE ${role}`).catch(() => {});
	});
	await database.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON http_sessions TO ${role}; GRANT USAGE ON SEQUENCE http_sessions_id_seq TO ${role}`);
	await database.query(`GRANT CREATE, USAGE ON SCHEMA public TO ${intruder}`);
	await database.query(`ALTER ROLE ${role} IN DATABASE ${database.name} SET search_path = public, pg_catalog`);

	// The names the statements use, with and without the subject column.
	const { PrismaClient } = await import('../src/generated/prisma/client.js');
	const { PrismaPg } = await import('@prisma/adapter-pg');
	const model = new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) });
	const texts = [true, false].flatMap((withSubject) => everyStatement(sessionStatements(readSessionTable(model, undefined), withSubject), sweepStatements(readSessionTable(model, undefined))).map((statement) => statement.text));
	// Qualified or not (test/unit/statements.test.ts fails on the latter; here they would run).
	const unqualified = texts.flatMap((text) => unqualifiedNames(text));
	const named = (kind: string) => unqualified.filter((name) => name.startsWith(`${kind} `)).map((name) => name.slice(kind.length + 1));
	const functions = [...new Set([...texts.flatMap((text) => catalogNames(text).functions), ...named('function')])];
	const operators = [...new Set([...texts.flatMap((text) => catalogNames(text).operators), ...named('operator')])];
	t.true(functions.includes('to_timestamp') && operators.includes('/'), 'the names were read from the statements');

	const attacker = new pg.Client({ connectionString: database.url });
	await attacker.connect();
	t.teardown(() => attacker.end());
	await attacker.query(`SET ROLE ${intruder}`);
	await attacker.query(`CREATE TABLE public.stolen (what text); GRANT INSERT ON public.stolen TO PUBLIC`);
	// A copy of every pg_catalog function and operator of those names whose argument and result
	// types are ordinary ones, plus the two inexact matches once exploited (float8 / integer,
	// numeric * integer).
	await attacker.query(`
		DO $$
		DECLARE
			f record; o record; m int := 0;
		BEGIN
			FOR f IN SELECT p.oid, p.proname, p.proretset, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
			                pg_catalog.format_type(p.prorettype, NULL) AS returns
			         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_type r ON r.oid = p.prorettype
			         WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f' AND p.proname = ANY($1)
			           AND (r.typtype <> 'p' OR r.typname = 'record')
			           AND NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proargtypes::oid[]) a JOIN pg_catalog.pg_type ty ON ty.oid = a WHERE ty.typtype = 'p')
			LOOP
				EXECUTE pg_catalog.format('CREATE FUNCTION public.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %L',
					f.proname, f.args, CASE WHEN f.proretset THEN 'SETOF ' ELSE '' END, f.returns,
					pg_catalog.format('BEGIN INSERT INTO public.stolen VALUES (%L); RETURN%s; END', f.proname || '(' || f.args || ')',
						CASE WHEN f.proretset THEN '' ELSE ' NULL' END));
			END LOOP;
			FOR o IN SELECT op.oid, op.oprname, pg_catalog.format_type(op.oprleft, NULL) AS l, pg_catalog.format_type(op.oprright, NULL) AS r,
			                pg_catalog.format_type(op.oprresult, NULL) AS res
			         FROM pg_catalog.pg_operator op
			         JOIN pg_catalog.pg_type lt ON lt.oid = op.oprleft JOIN pg_catalog.pg_type rt ON rt.oid = op.oprright
			         JOIN pg_catalog.pg_type rest ON rest.oid = op.oprresult
			         WHERE op.oprnamespace = 'pg_catalog'::regnamespace AND op.oprname = ANY($2)
			           AND lt.typtype <> 'p' AND rt.typtype <> 'p' AND rest.typtype <> 'p'
			         UNION ALL SELECT 0, '/', 'double precision', 'integer', 'double precision'
			         UNION ALL SELECT 0, '*', 'numeric', 'integer', 'numeric'
			LOOP
				m := m + 1;
				EXECUTE pg_catalog.format('CREATE FUNCTION public.intruder_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L',
					m, o.l, o.r, o.res,
					pg_catalog.format('BEGIN INSERT INTO public.stolen VALUES (%L); RETURN NULL; END', o.l || ' ' || o.oprname || ' ' || o.r));
				EXECUTE pg_catalog.format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.intruder_%s)', o.oprname, o.l, o.r, m);
			END LOOP;
		END $$`.replace('$1', `ARRAY[${functions.map((name) => `'${name}'`).join(',')}]::name[]`)
		.replace('$2', `ARRAY[${operators.map((name) => `'${name}'`).join(',')}]::name[]`));
	const [created] = await database.query<{ functions: number; operators: number }>(`SELECT
		(SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname NOT LIKE 'intruder\\_%') AS functions,
		(SELECT count(*)::int FROM pg_operator WHERE oprnamespace = 'public'::regnamespace) AS operators`);
	t.true((created?.functions ?? 0) > 5 && (created?.operators ?? 0) > 20, `shadows created: ${JSON.stringify(created)}`);

	// The app, as the app role: sessions, a regenerate, a logout, the subject methods, a sweep, status.
	const url = new URL(withDatabase(database.url, database.name));
	url.username = role;
	url.password = 'app';
	const store = new PgStore({ connectionString: url.toString(), cleanupInterval: 0, subject: (session) => session['userId'] as string | undefined });
	t.teardown(() => store.close());
	t.deepEqual(await store.ensureSchema(), []);
	const { url: app } = await startApp(t, { session: { store, maxAge: hour, rolling: true }, handler: sessionRoutes({ store }) });
	const jar = new CookieJar();
	t.like((await request(`${app}/sign-in?user=alice`, jar)).body, { userId: 'alice' });
	t.like((await request(`${app}/set?cart=1`, jar)).body, { userId: 'alice', cart: '1' });
	t.like((await request(`${app}/login`, jar)).body, { cart: '1' });
	t.is((await request(`${app}/devices`, jar)).status, 200);
	const other = new CookieJar();
	await request(`${app}/sign-in?user=alice`, other);
	const [listed] = await store.list('alice');
	t.true(await store.destroySession('alice', listed?.id ?? '0'));
	t.is(await store.destroyAll('alice'), 1);
	await request(`${app}/set?cart=2`, jar);
	t.like((await request(`${app}/logout`, jar)).body, { loggedOut: true });
	t.false((await store.cleanup()).skipped);
	t.like(await store.status(), { exists: true });
	t.deepEqual(await database.query('SELECT what FROM public.stolen'), [], 'no copy of the intruder ran');
});
