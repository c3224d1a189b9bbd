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
