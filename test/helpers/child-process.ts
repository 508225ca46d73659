import { spawn } from 'node:child_process';

/**
 * Runs an ES module (JavaScript, from the repository root) in a new Node process, as an app's
 * process runs, and waits for it to exit on its own. It imports the package by its name,
 * `koa-pgstore`, which resolves to the built dist/ as in an app (`npm test` builds it when older
 * than src/). `code` is `null` when it was still running after `timeoutMs` and had to be killed:
 * what a timer or pool left referenced looks like. `errorOutput` is its stderr.
 *
 * The default bound is mostly for starting Node and the store on a loaded machine (over 20 s seen
 * on two shared cores, under tsx); it stays under AVA's 60 s timeout, and a process that waits for
 * a timer of a minute or more is still caught.
 */
export async function runScript(script: string, env: Record<string, string>, timeoutMs = 45_000): Promise<{ code: number | null; output: string; errorOutput: string }> {
	const child = spawn(process.execPath, ['--input-type=module', '--eval', script], {
		env: { ...process.env, ...env },
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let output = '';
	let errorOutput = '';
	child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
	child.stderr.on('data', (chunk: Buffer) => { errorOutput += chunk.toString(); });
	const code = await new Promise<number | null>((resolve) => {
		const timer = setTimeout(() => { child.kill(); resolve(null); }, timeoutMs);
		// 'close', not 'exit': a process may exit before its parent has read all its output, and a
		// loaded machine then handed the test an empty stdout of a run that printed its result.
		child.on('close', (exitCode) => { clearTimeout(timer); resolve(exitCode); });
	});
	return { code, output: output.trim(), errorOutput };
}
