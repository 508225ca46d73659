// What `maxLength` is checked against in SQL is the byte length of PostgreSQL's text form of the
// stored `jsonb`. jsonb keeps a number as `numeric` and prints it without an exponent: `1e308`,
// 6 bytes of JSON, is 309 bytes of text, and as many digits to parse, keep and print. A save whose
// JSON is small can thus cost PostgreSQL a thousand times its size; the store measures it here,
// before its write joins a batch, so no client value makes other users' statements slow.

// JSON.stringify writes an exponent always with its sign (`1e+21`, `5e-324`): a session without
// `e+` or `e-` has no exponent, and its printed size is at least its bytes.
const stringOrExponentNumber = /"(?:[^"\\]|\\.)*"|-?(\d+)(?:\.(\d+))?[eE]([+-]?\d+)/g;

/**
 * At least the bytes PostgreSQL's text of `json`, parsed as `jsonb`, has (exact for compact JSON
 * but for the separators PostgreSQL adds): its UTF-8 bytes, with each number written with an
 * exponent counted as the digits PostgreSQL prints for it.
 */
export function printedSizeAtLeast(json: string): number {
	const bytes = Buffer.byteLength(json);
	if (!json.includes('e+') && !json.includes('e-')) {
		return bytes;
	}
	let extra = 0;
	for (const match of json.matchAll(stringOrExponentNumber)) {
		const [token, whole, fraction = '', exponent] = match;
		if (whole === undefined || exponent === undefined) {
			continue;
		}
		const digits = whole.length + fraction.length;
		// Where the decimal point falls once the exponent is applied.
		const point = whole.length + Number(exponent);
		const printed = point >= digits ? point : point > 0 ? digits + 1 : 2 - point + digits;
		extra += printed + (token.startsWith('-') ? 1 : 0) - token.length;
	}
	return bytes + Math.max(0, extra);
}
