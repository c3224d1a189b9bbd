/** Gives back a slot taken from a `FetchSlots`; calling it again does nothing. */
export type Release = () => void;

/**
 * Shoal's split of Bun's fetch pool, so that no kind of outgoing request can starve another.
 *
 * Bun runs at most 256 fetches at once per process; the rest wait in Bun's own queue, where an abort timer that
 * is already running cannot tell waiting from a slow service, and a long-lived stream holds its slot for good.
 * Each kind of request therefore gets a fixed share, and queues in Shoal (or is refused) past it:
 * callbacks 200 (every service together; `limits.maxCallbacksPerService` bounds each one), Upstash event streams
 * 32 dedicated + 1 shared (see `UpstashBroker`), Upstash commands (PING, PUBLISH) 16; 249 in all, under 256.
 * Deno has no such pool; the same shares apply there and cost nothing.
 *
 * Checked on Bun 1.4.5: `BUN_CONFIG_MAX_HTTP_REQUESTS` (1-65535) is read once at start-up, so it raises the pool
 * only when set in the environment of the process (`BUN_CONFIG_MAX_HTTP_REQUESTS=400 bun run main.ts` let 300
 * fetches run at once); setting `process.env.BUN_CONFIG_MAX_HTTP_REQUESTS` inside the process, even before its
 * first fetch, changes nothing (still 256). Setting it lower than 249 brings the starvation back.
 */
export const FETCH_BUDGET = {
  /** Service callbacks in flight, all services together. */
  callbacks: 200,
  /** Upstash event streams with a channel of their own; one more shared stream carries the other channels. */
  upstashStreams: 32,
  /** Upstash REST commands in flight (PING, PUBLISH). */
  upstashCommands: 16,
} as const;

/**
 * A counting semaphore for outgoing fetches, first come first served: `acquire` waits for a free slot, so a
 * request's own timer starts only once it can really be sent.
 */
export class FetchSlots {
  readonly #limit: number;
  #used = 0;
  /** Waiters in arrival order (a Set keeps insertion order and forgets an aborted waiter in O(1)). */
  readonly #waiting = new Set<(release: Release) => void>();

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`a fetch budget needs at least 1 slot, not ${limit}`);
    }
    this.#limit = limit;
  }

  /** Slots taken now. */
  get used(): number {
    return this.#used;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** A slot now, or undefined when all are taken. */
  tryAcquire(): Release | undefined {
    if (this.#used >= this.#limit) return undefined;
    this.#used++;
    return this.#releaser();
  }

  /** A slot once one is free (in arrival order), or undefined if `signal` aborts first. */
  acquire(signal?: AbortSignal): Promise<Release | undefined> {
    if (signal?.aborted) return Promise.resolve(undefined);
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const onAbort = () => {
        this.#waiting.delete(grant);
        resolve(undefined);
      };
      const grant = (release: Release) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(release);
      };
      this.#waiting.add(grant);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Wait for a slot, run `task` in it and give the slot back. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    const release = (await this.acquire())!;
    try {
      return await task();
    } finally {
      release();
    }
  }

  #releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // The slot passes straight to the first waiter, so `used` never dips and no newcomer can jump the queue.
      const [next] = this.#waiting;
      if (next) {
        this.#waiting.delete(next);
        next(this.#releaser());
      } else {
        this.#used--;
      }
    };
  }
}
