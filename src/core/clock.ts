/** Time, timers and randomness behind one seam, so order, throttle, renewal and heartbeat tests need not sleep. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** A number in [0, 1), as Python's `random.random()`. */
  random(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, Math.max(0, ms)),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  random: () => Math.random(),
};

let lastMs = NaN;
let lastIso = "";

/** ISO-8601 UTC in Python's `isoformat()` shape (`…T02:52:18.131000+00:00`), which every SocketShark client reads. */
export function isoTimestamp(ms: number): string {
  // A busy channel asks for the same millisecond many times over (received_at, sent_at): format it once.
  if (ms === lastMs) return lastIso;
  lastIso = new Date(ms).toISOString().replace("Z", "000+00:00");
  lastMs = ms;
  return lastIso;
}

/** A promise that resolves after `ms` on the given clock, or at once if the signal aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) return resolve();
    const onAbort = () => {
      clock.clearTimeout(handle);
      resolve();
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * `promise`'s outcome, or `onTimeout()`'s once `ms` pass first (on `clock`); the timer is cleared either way.
 * The one timeout race of the code base: brokers' start-up, the router's drain, the runtimes' close waits.
 */
export async function raceTimeout<T, U>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => U,
  clock: Clock = systemClock,
): Promise<T | U> {
  let handle: unknown;
  const timeout = new Promise<U>((resolve, reject) => {
    handle = clock.setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (error) {
        reject(error);
      }
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clock.clearTimeout(handle);
  }
}

/**
 * `promise`, or a rejection with `Error("<what> within <said> s")` if it takes longer than `seconds` (`said`, the
 * limit as configured, defaults to `seconds`: a caller sharing one deadline between steps names the whole of it).
 */
export function withTimeout<T>(promise: Promise<T>, seconds: number, what: string, said = seconds): Promise<T> {
  return raceTimeout(promise, seconds * 1000, () => {
    throw new Error(`${what} within ${said} s`);
  });
}

/**
 * The wait before reconnect attempt `attempt` (0 first): 100 ms doubling per attempt, capped at `maxMs`, plus up
 * to `jitterMs` (default 100) of random spread so that many clients do not come back in step; `random` defaults to
 * `Math.random` (a broker passes its clock's). One policy for every broker.
 */
export function backoffDelay(
  attempt: number,
  options: { readonly maxMs: number; readonly jitterMs?: number; readonly random?: () => number },
): number {
  const jitter = options.jitterMs ?? 100;
  const random = options.random ?? Math.random;
  return Math.min(100 * 2 ** attempt, options.maxMs) + (jitter > 0 ? Math.floor(random() * jitter) : 0);
}
