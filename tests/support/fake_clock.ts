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

  /**
   * What `advance` waits on before and after each timer it fires, so the work a timer starts has run before the
   * next one is due. The harness sets it to its `settled()`; the default waits for one macrotask, by which time
   * every promise callback already queued has run (enough for fakes that never wait on I/O).
   */
  settle: () => Promise<void> = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

  /** Move time forward by `ms`, firing due timers in order, and letting the work they start settle between them. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await this.settle();
      let next: [number, { due: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].due <= end && (!next || entry[1].due < next[1].due)) next = entry;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].due);
      next[1].callback();
    }
    this.#now = end;
    await this.settle();
  }
}

/** Wait (on real time, at most `ms`) until `condition` holds; fails naming `what` otherwise. */
export async function until(condition: () => boolean, what = "condition", ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 1));
  }
}

/** A promise the test opens when it chooses: holds a scripted service reply (`ScriptedFetch`'s `after`). */
export interface Gate {
  readonly promise: Promise<void>;
  /** True from the moment `open()` is called (the promise's callbacks run a microtask later). */
  readonly opened: boolean;
  open(): void;
}

export function gate(): Gate {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  let opened = false;
  return {
    promise,
    get opened() {
      return opened;
    },
    open() {
      opened = true;
      resolve();
    },
  };
}
