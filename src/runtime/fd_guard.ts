import { getLogger } from "@logtape/logtape";
import { closeSync, openSync } from "node:fs";
import process from "node:process";
import { type Clock, systemClock } from "../core/clock.ts";

const log = getLogger(["shoal", "runtime"]);

export interface FdGuardOptions {
  /** Stop accepting connections: the process is out of file descriptors. */
  pause(): void;
  /** Accept again; false when that failed (tried again at the next check). */
  resume(): boolean;
  /** Whether `count` more file descriptors can be opened right now (default: open /dev/null that many times). */
  readonly probe?: (count: number) => boolean;
  /** Milliseconds between checks (default 1000): how long a runtime that spins at the limit may spin. */
  readonly intervalMs?: number;
  /** Free descriptors needed before accepting again (default 32), so the next connections do not hit the limit. */
  readonly headroom?: number;
  readonly clock?: Clock;
}

/**
 * Pauses a listener while the process is at its file descriptor limit. For a runtime whose native accept loop cannot
 * be told to back off (Bun spins at 100 % CPU while `accept` fails with EMFILE): once a check finds no free
 * descriptor, the listener stops listening (new clients are refused; open connections go on) until `headroom`
 * descriptors are free again. A pause that follows a resume closely lasts twice as long as the one before, up to
 * 30 s, so a flood of reconnecting clients does not make it flap.
 */
export class FdGuard {
  readonly #options: FdGuardOptions;
  readonly #clock: Clock;
  readonly #probe: (count: number) => boolean;
  #timer: unknown;
  #paused = false;
  #pausedAt = 0;
  #resumedAt = -Infinity;
  #minPauseMs = 0;
  #closed = false;

  constructor(options: FdGuardOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#probe = options.probe ?? openDevNull;
  }

  /** Whether the listener is paused now. */
  get paused(): boolean {
    return this.#paused;
  }

  start(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#schedule();
  }

  close(): void {
    this.#closed = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      try {
        this.#check();
      } catch (error) {
        log.error("file descriptor check failed", { error });
      }
      if (!this.#closed) this.#schedule();
    }, this.#options.intervalMs ?? 1000);
  }

  #check(): void {
    const now = this.#clock.now();
    if (!this.#paused) {
      if (this.#probe(1)) return;
      this.#paused = true;
      this.#pausedAt = now;
      const interval = this.#options.intervalMs ?? 1000;
      this.#minPauseMs = now - this.#resumedAt < 10 * interval
        ? Math.min(30_000, Math.max(interval, 2 * this.#minPauseMs))
        : 0;
      log.warn("out of file descriptors; not accepting connections", { min_pause_ms: this.#minPauseMs });
      this.#options.pause();
      return;
    }
    if (now - this.#pausedAt < this.#minPauseMs || !this.#probe(this.#options.headroom ?? 32)) return;
    if (!this.#options.resume()) return;
    this.#paused = false;
    this.#resumedAt = now;
    log.info("file descriptors free again; accepting connections", { paused_ms: now - this.#pausedAt });
  }
}

/** Open /dev/null `count` times and close them again; false if the process ran out of descriptors meanwhile. */
function openDevNull(count: number): boolean {
  if (process.platform === "win32") return true; // no /dev/null, and no EMFILE spin to guard against
  const fds: number[] = [];
  try {
    for (let i = 0; i < count; i++) fds.push(openSync("/dev/null", "r"));
    return true;
  } catch (error) {
    const code = (error as { code?: string }).code;
    return code !== "EMFILE" && code !== "ENFILE";
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}
