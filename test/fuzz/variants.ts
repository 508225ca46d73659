import type { PgStoreOptions } from '../../src/index.js';
import { day } from '../helpers/time.js';

/** Store options a variant chooses; the harness adds the connection, the subject and the gated pool. */
export type VariantStoreOptions = Pick<PgStoreOptions, 'fieldLevelWrites' | 'touchAfter' | 'encryptionKeys' | 'encryptionMigration'>;

/**
 * One configuration the fuzzer runs. Each app is a Koa app on a PgStore of its own, all on one
 * database. The setup (each browser's first session) runs on `setupApp`, "before the deploy"; the
 * steps run on `mainApps`, so a variant whose setup app differs has its sessions stored by one
 * configuration and raced under another (a rotated secret, encryption turned on).
 */
export interface Variant {
	readonly name: string;
	readonly stores: readonly VariantStoreOptions[];
	readonly setupApp: number;
	readonly mainApps: readonly number[];
	/** koa-session's `rolling`. */
	readonly rolling: boolean;
}

const oldSecret = 'fuzz: the data secret before the rotation, 32+ bytes';
const newSecret = 'fuzz: the data secret after the rotation, also 32+ bytes';

export const variants: readonly Variant[] = [
	{ name: 'defaults', stores: [{}], setupApp: 0, mainApps: [0], rolling: false },
	{ name: 'field-level-writes-off', stores: [{ fieldLevelWrites: false }], setupApp: 0, mainApps: [0], rolling: false },
	{ name: 'rolling', stores: [{}], setupApp: 0, mainApps: [0], rolling: true },
	{ name: 'touch-after-0', stores: [{ touchAfter: 0 }], setupApp: 0, mainApps: [0], rolling: false },
	// Sessions stored under the old secret; the app that races them lists a new secret first.
	{ name: 'encryption-rotation', stores: [{ encryptionKeys: [oldSecret] }, { encryptionKeys: [newSecret, oldSecret] }], setupApp: 0, mainApps: [1], rolling: false },
	// Sessions stored plain; the app that races them encrypts, reading plain rows meanwhile.
	{ name: 'encryption-migration', stores: [{}, { encryptionKeys: [newSecret], encryptionMigration: { acceptPlainRowsUntil: new Date(Date.now() + 30 * day) } }], setupApp: 0, mainApps: [1], rolling: false },
	// Two PgStores and two Koa apps on one database; a browser's requests go to either.
	{ name: 'two-instances', stores: [{}, {}], setupApp: 0, mainApps: [0, 1], rolling: false },
];

export function variantNamed(name: string): Variant {
	const variant = variants.find((candidate) => candidate.name === name);
	if (variant === undefined) {
		throw new Error(`No variant ${name}: choose one of ${variants.map((candidate) => candidate.name).join(', ')}`);
	}
	return variant;
}

/** Every encryption secret of the variant's stores, to open any row they wrote. */
export function secretsOf(variant: Variant): string[] {
	const secrets = new Set<string>();
	for (const store of variant.stores) {
		const keys = store.encryptionKeys;
		for (const secret of typeof keys === 'string' ? keys.split(',') : keys ?? []) {
			secrets.add(secret);
		}
	}
	return [...secrets];
}

/** Whether any of its stores writes whole sessions: then "last save wins" by design, and I3 does not apply. */
export function wholeWrites(variant: Variant): boolean {
	return variant.stores.some((store) => store.fieldLevelWrites === false);
}
