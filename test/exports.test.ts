import test from 'ava';
import * as entry from '../src/index.js';

test('the package exports what an app writes, and no internal helper', (t) => {
	t.deepEqual(Object.keys(entry).sort(), [
		'CleanupBlockedError',
		'DatabaseError',
		'InvalidSessionError',
		'PgStore',
		'PgStoreError',
		'SchemaMismatchError',
		'SessionEndedError',
		'SessionTamperedError',
		'SessionTooLargeError',
		'SessionUnreadableError',
		'StoreClosedError',
		'createKeys',
		'isPgStoreError',
		'reissueOnRotation',
		'sessionFunctionsMigration',
	].sort());
});
