/**
 * Holds requests at a point of a route handler until the test opens it, so that interleavings
 * of concurrent requests are set by the test, not by timing luck.
 *
 * @example
 * ```ts
 * const gate = new Gate();
 * const slow = request(`${url}/slow-write`, jar.clone()); // the handler awaits gate.wait()
 * await gate.arrivals(1);  // it has loaded its session and waits
 * await request(`${url}/logout`, jar);
 * gate.open();
 * ```
 */
export class Gate {
	#arrived = 0;
	readonly #waiting: { count: number; resolve: () => void }[] = [];
	#open: () => void = () => {};
	readonly #opened = new Promise<void>((resolve) => { this.#open = resolve; });

	/** Called by a handler: counts as an arrival and waits until the gate opens. */
	wait(): Promise<void> {
		this.#arrived += 1;
		for (const waiter of this.#waiting.filter((candidate) => candidate.count <= this.#arrived)) {
			waiter.resolve();
		}
		return this.#opened;
	}

	/** Resolves once `count` requests wait at the gate (or have passed it). */
	arrivals(count = 1): Promise<void> {
		if (this.#arrived >= count) {
			return Promise.resolve();
		}
		return new Promise((resolve) => { this.#waiting.push({ count, resolve }); });
	}

	/** Lets every waiting request, and every later one, through. */
	open(): void {
		this.#open();
	}
}
