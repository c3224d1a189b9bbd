import type { Clock } from "../../src/core/clock.ts";

/** A clock that moves only when told: timers fire in due order during `advance`. */
export class FakeClock implements Clock {
  #now: number;
  #timers = new Map<number, { due: number; callback: () => void }>();
  #nextId = 1;
  /** Values `random()` returns in turn (then 0.5). */
  randoms: number[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.#timers.set(id, { due: this.#now + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  random(): number {
    return this.randoms.shift() ?? 0.5;
  }

  /** Timers not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Move time forward by `ms`, firing due timers in order, and letting promise callbacks run between them. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await flush();
      let next: [number, { due: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].due <= end && (!next || entry[1].due < next[1].due)) next = entry;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].due);
      next[1].callback();
    }
    this.#now = end;
    await flush();
  }
}

/** Let pending promise callbacks (and one macrotask turn) run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

/** Wait (on real time, at most `ms`) until `condition` holds; fails naming `what` otherwise. */
export async function until(condition: () => boolean, what = "condition", ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 1));
  }
}

/** A promise the test opens when it chooses: holds a scripted service reply. */
export function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
