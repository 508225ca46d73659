// Programs that found the bugs of issue #17 on the code before their fixes, as the fuzzer shrank
// them. Every run checks them first (fast-check's `examples`), whatever the seed draws, so the
// short run in `npm test` always tries each of these races; the random programs come after.
import type { Program } from './model.js';

export const knownRaces: readonly { readonly name: string; readonly program: Program }[] = [
	{
		// Bug 1: koa-session's regenerate() is destroy(old) then set(new); a sign-out everywhere
		// between the two found neither row, and the new key came back signed in.
		name: 'sign-out everywhere between regenerate\'s delete and insert',
		program: {
			browsers: [{ fields: ['a'], user: 'u1' }],
			steps: [
				{ kind: 'request', browser: 0, app: 0, route: { path: 'sudo' }, holdAfterLoad: false, holdWrites: 'after' },
				{ kind: 'destroyAll', user: 'u1', app: 0 },
			],
			ending: 'newest-first',
		},
	},
	{
		// Bug 2: a logout in one tab, while another tab regenerates the session it loaded.
		name: 'logout in one tab while another tab regenerates',
		program: {
			browsers: [{ fields: ['a'] }],
			steps: [
				{ kind: 'request', browser: 0, app: 0, route: { path: 'logout' }, holdAfterLoad: true, holdWrites: 'none' },
				{ kind: 'request', browser: 0, app: 0, route: { path: 'sudo' }, holdAfterLoad: false, holdWrites: 'none' },
			],
			ending: 'newest-first',
		},
	},
	{
		// Bug 3: under an older secret (or plain), a re-encrypting save wrote every field of its own
		// old view, undoing a field another request changed meanwhile.
		name: 'a re-encrypting save after another request changed a field',
		program: {
			browsers: [{ fields: ['a', 'b'] }],
			steps: [
				{ kind: 'request', browser: 0, app: 0, route: { path: 'set', set: ['b'], remove: [] }, holdAfterLoad: true, holdWrites: 'none' },
				{ kind: 'request', browser: 0, app: 0, route: { path: 'set', set: ['a'], remove: [] }, holdAfterLoad: false, holdWrites: 'none' },
			],
			ending: 'newest-first',
		},
	},
	{
		// Bug 3 with `userId`: a removed userId came back while the subject column stayed NULL.
		name: 'a re-encrypting save after another request left the account',
		program: {
			browsers: [{ fields: ['a'], user: 'u1' }],
			steps: [
				{ kind: 'request', browser: 0, app: 0, route: { path: 'set', set: ['a'], remove: [] }, holdAfterLoad: true, holdWrites: 'none' },
				{ kind: 'request', browser: 0, app: 0, route: { path: 'set', set: ['b'], remove: ['userId'] }, holdAfterLoad: false, holdWrites: 'none' },
			],
			ending: 'newest-first',
		},
	},
	{
		// Bug 6: a save computed earlier lands after a later one and moves the expiry back
		// (whole writes, `touchAfter: 0`, re-encrypting saves).
		name: 'a save computed earlier lands later',
		program: {
			browsers: [{ fields: ['a'] }],
			steps: [
				{ kind: 'request', browser: 0, app: 0, route: { path: 'set', set: ['b'], remove: [] }, holdAfterLoad: false, holdWrites: 'before' },
				{ kind: 'request', browser: 0, app: 0, route: { path: 'set', set: ['c'], remove: [] }, holdAfterLoad: false, holdWrites: 'none' },
			],
			ending: 'newest-first',
		},
	},
];
