/**
 * Time, timers and randomness behind one seam, so the reconnect, keep-alive and connect timers can be driven by
 * a fake clock in tests. Structurally the same as the server's `Clock` (src/core/clock.ts).
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Call `callback` once after `ms` milliseconds; the handle goes to `clearTimeout`. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancel a timer from `setTimeout`; a handle that already fired or was cleared is ignored. */
  clearTimeout(handle: unknown): void;
  /** A number in [0, 1). */
  random(): number;
}

/** The real clock: `Date.now`, the global timers and `Math.random`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, Math.max(0, ms)),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  random: () => Math.random(),
};

/** One timer slot: `set` replaces whatever was scheduled, `clear` cancels it; nothing fires after `clear`. */
export class Timer {
  readonly #clock: Clock;
  #handle: unknown;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Whether a callback is scheduled. */
  get pending(): boolean {
    return this.#handle !== undefined;
  }

  /** Schedule `callback` in `ms` milliseconds, cancelling the previous one. */
  set(ms: number, callback: () => void): void {
    this.clear();
    const handle = this.#clock.setTimeout(() => {
      if (this.#handle !== handle) return;
      this.#handle = undefined;
      callback();
    }, ms);
    this.#handle = handle;
  }

  /** Cancel the scheduled callback, if any. */
  clear(): void {
    if (this.#handle === undefined) return;
    this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
  }
}
