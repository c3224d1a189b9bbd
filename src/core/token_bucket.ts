import type { Clock } from "./clock.ts";

/**
 * A token bucket: `rate` tokens a second up to `burst`, starting full. Refilled lazily from the clock when asked,
 * so an idle connection costs no timer.
 */
export class TokenBucket {
  readonly #clock: Clock;
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #updated: number;

  constructor(clock: Clock, options: { readonly rate: number; readonly burst: number }) {
    this.#clock = clock;
    this.#rate = options.rate;
    this.#burst = options.burst;
    this.#tokens = options.burst;
    this.#updated = clock.now();
  }

  /** Take one token; false when the bucket is empty. */
  take(): boolean {
    const now = this.#clock.now();
    if (now > this.#updated) {
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#updated) / 1000) * this.#rate);
      this.#updated = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}
