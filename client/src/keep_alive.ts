import { type Clock, Timer } from "./clock.ts";

/**
 * Watches one connection for silence: after `intervalMs` without a frame from the server it calls `ping`, and if
 * still no frame has come `timeoutMs` later, `dead`. Any frame counts (a busy connection never pings). One timer,
 * re-armed lazily, so a frame costs one clock read.
 */
export class KeepAlive {
  readonly #clock: Clock;
  readonly #timer: Timer;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #ping: () => void;
  readonly #dead: () => void;
  #lastFrame = 0;
  /** When the unanswered probe went out; undefined while none is out. */
  #probeAt: number | undefined;

  constructor(
    clock: Clock,
    options: { intervalMs: number; timeoutMs: number; ping: () => void; dead: () => void },
  ) {
    this.#clock = clock;
    this.#timer = new Timer(clock);
    this.#intervalMs = options.intervalMs;
    this.#timeoutMs = options.timeoutMs;
    this.#ping = options.ping;
    this.#dead = options.dead;
  }

  /** Start watching (the connection just opened). */
  start(): void {
    this.#lastFrame = this.#clock.now();
    this.#probeAt = undefined;
    this.#timer.set(this.#intervalMs, () => this.#check());
  }

  /** A frame arrived. */
  frame(): void {
    this.#lastFrame = this.#clock.now();
    this.#probeAt = undefined;
  }

  /** Ping now rather than after the idle interval (the network changed, or the page became visible again). */
  probe(): void {
    if (!this.#timer.pending || this.#probeAt !== undefined) return;
    this.#sendProbe();
  }

  /** Stop watching. */
  stop(): void {
    this.#timer.clear();
    this.#probeAt = undefined;
  }

  #sendProbe(): void {
    this.#probeAt = this.#clock.now();
    this.#timer.set(this.#timeoutMs, () => this.#check());
    this.#ping();
  }

  #check(): void {
    const now = this.#clock.now();
    if (this.#probeAt !== undefined) {
      const waited = now - this.#probeAt;
      if (waited >= this.#timeoutMs) return this.#dead();
      return this.#timer.set(this.#timeoutMs - waited, () => this.#check());
    }
    const idle = now - this.#lastFrame;
    if (idle >= this.#intervalMs) return this.#sendProbe();
    this.#timer.set(this.#intervalMs - idle, () => this.#check());
  }
}
