// `npm run fuzz -- [--minutes N] [--seed S] [--variant NAME] [--steps N] [--no-examples]`: the randomized
// concurrency test of test/fuzz/ for longer than `npm test` runs it. Starts a throwaway
// PostgreSQL (unless DATABASE_URL names one), a database per variant, and shares the time between
// the variants (all of them unless --variant). Within a variant's share it runs fast-check until
// a violation, prints it shrunk with what replays it, then goes on with the next seed, no longer
// failing on the invariants already found, so that one run shows each invariant that breaks.
// Prints per variant: iterations, requests, row versions checked, violations.
//
// `--variant NAME --seed S --path P [--ignore I1,I2]`, as printed with a failure, replays it.
// `--program file.json [--variant NAME]` runs one program written by hand (test/fuzz/model.ts).
// FUZZ_LOG=1 adds every row version of a counterexample to its report.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { migratedTemplate, withDatabase } from '../test/helpers/database.js';
import { invariantsOf, type Invariant } from '../test/fuzz/checker.js';
import { knownRaces } from '../test/fuzz/examples.js';
import { describeProgram, type Program } from '../test/fuzz/model.js';
import { describeCounts, describeFailure, describeLog, fuzzVariant, hunt, runOnce } from '../test/fuzz/property.js';
import { startHarness, type Harness } from '../test/fuzz/run.js';
import { variantNamed, variants, type Variant } from '../test/fuzz/variants.js';
import { startPostgres, type PostgresServer } from './embedded-postgres.js';

const { values } = parseArgs({
	options: {
		minutes: { type: 'string', default: '1' },
		seed: { type: 'string' },
		variant: { type: 'string' },
		path: { type: 'string' },
		ignore: { type: 'string', default: '' },
		steps: { type: 'string', default: '12' },
		program: { type: 'string' },
		'no-examples': { type: 'boolean', default: false },
	},
});
// The known races (test/fuzz/examples.ts) go first, as in `npm test`, unless --no-examples: then
// only what the random search finds.
const examples = values['no-examples'] ? undefined : knownRaces.map((race) => race.program);
const minutes = Number(values.minutes);
if (!Number.isFinite(minutes) || minutes <= 0) {
	throw new TypeError(`Expected \`--minutes\` to be a number > 0, got ${values.minutes}`);
}
const maxSteps = Number(values.steps);
if (!Number.isInteger(maxSteps) || maxSteps < 1) {
	throw new TypeError(`Expected \`--steps\` to be an integer >= 1, got ${values.steps}`);
}
const chosen: readonly Variant[] = values.variant === undefined ? variants : [variantNamed(values.variant)];
const firstSeed = values.seed === undefined ? randomBytes(4).readUInt32BE() >>> 1 : Number(values.seed);
const ignoredAtStart = new Set(values.ignore.split(',').filter((name) => name !== '') as Invariant[]);
if (values.path !== undefined && (values.seed === undefined || values.variant === undefined)) {
	throw new TypeError('`--path` replays a counterexample: give its `--seed` and `--variant` too');
}
const printLog = process.env['FUZZ_LOG'] === '1';

const root = fileURLToPath(new URL('..', import.meta.url));
const generated = spawnSync(process.execPath, ['scripts/generate.mjs'], { cwd: root, stdio: 'inherit' });
if (generated.status !== 0) {
	process.exit(generated.status ?? 1);
}

let server: PostgresServer | undefined;
let serverUrl = process.env['DATABASE_URL'];
if (serverUrl === undefined || serverUrl === '') {
	server = await startPostgres();
	serverUrl = server.url;
}
const template = await migratedTemplate(serverUrl);
const admin = new pg.Client({ connectionString: serverUrl });
// Databases are dropped with FORCE, which ends what is still connected.
admin.on('error', () => {});
await admin.connect();

const budgetMs = minutes * 60_000;
const started = Date.now();
const summaries: string[] = [];
let failed = false;
try {
	for (const [index, variant] of chosen.entries()) {
		// Each variant gets an equal share of what is left.
		const deadline = Date.now() + (budgetMs - (Date.now() - started)) / (chosen.length - index);
		failed = (await withHarness(variant, (harness) => {
			if (values.program !== undefined) {
				return runProgramFile(harness, values.program);
			}
			return values.path === undefined ? fuzzUntil(harness, deadline) : replay(harness, values.path);
		})) || failed;
	}
} finally {
	await admin.end();
	await server?.stop();
}
console.log(`\n${summaries.join('\n')}`);
process.exit(failed ? 1 : 0);

async function withHarness(variant: Variant, use: (harness: Harness) => Promise<boolean>): Promise<boolean> {
	const name = `fuzz_${variant.name.replaceAll('-', '_')}_${randomBytes(4).toString('hex')}`;
	await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
	const url = withDatabase(serverUrl ?? '', name);
	const pool = new pg.Pool({ connectionString: url, max: 2 });
	pool.on('error', () => {});
	try {
		const harness = await startHarness({ url, query: async (sql, parameters) => (await pool.query(sql, parameters)).rows }, variant);
		try {
			return await use(harness);
		} finally {
			await harness.close();
		}
	} finally {
		await pool.end();
		await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
	}
}

// Runs one variant until `deadline`, printing each new invariant's counterexample. Returns whether any was found.
async function fuzzUntil(harness: Harness, deadline: number): Promise<boolean> {
	console.log(`\n== ${harness.variant.name} (seed ${firstSeed}, until ${new Date(deadline).toISOString()})`);
	const result = await hunt(harness, {
		seed: firstSeed,
		numRuns: 1_000_000_000,
		deadline,
		ignore: ignoredAtStart,
		maxSteps,
		...(examples === undefined ? {} : { examples }),
		onFailure: (report) => console.log(`\n${describeFailure(report, { log: printLog })}`),
	});
	summaries.push(`${describeCounts(result.variant, result)}${result.found.length === 0 ? '' : `; found ${result.found.join(', ')}`}`);
	// An invariant broken only on the way (while another failure was shrunk, or ignored): its first violation.
	for (const [invariant, message] of result.firstSeen) {
		if (!result.found.includes(invariant)) {
			summaries.push(`  ${invariant} also broken, first: ${message}`);
		}
	}
	return result.found.length > 0;
}

async function replay(harness: Harness, path: string): Promise<boolean> {
	const report = await fuzzVariant(harness, { seed: firstSeed, numRuns: 1, path, ignore: ignoredAtStart, maxSteps, ...(examples === undefined ? {} : { examples }) });
	console.log(`\n${describeFailure(report, { log: printLog })}`);
	summaries.push(describeCounts(report.variant, report));
	return report.failure !== undefined;
}

async function runProgramFile(harness: Harness, file: string): Promise<boolean> {
	const program = JSON.parse(await readFile(file, 'utf8')) as Program;
	const { trace, violations } = await runOnce(harness, program);
	console.log([
		`== ${harness.variant.name}: ${file}`,
		describeProgram(program, harness.variant.mainApps),
		'what happened:',
		...trace.transcript.map((line) => `  ${line}`),
		...(printLog ? ['the row versions (seq, writer, op, row):', ...describeLog(trace).map((line) => `  ${line}`)] : []),
		violations.length === 0 ? 'no violation' : violations.map((violation) => `${violation.invariant} ${violation.message}`).join('\n'),
	].join('\n'));
	summaries.push(`${harness.variant.name}: ${violations.length === 0 ? 'no violation' : invariantsOf(violations).join(', ')}`);
	return violations.length > 0;
}
