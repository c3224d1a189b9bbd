import { cpuSeconds, cpuTimes, rssBytes } from "./proc_stats.ts";

/** What the server (and the load side) used over one measurement window. */
export interface ResourceUsage {
  readonly seconds: number;
  /** Server CPU seconds (user + system) in the window. */
  readonly serverCpuSeconds: number;
  /** Server CPU seconds per wall second: 1 is one core busy. */
  readonly serverCpu: number;
  readonly rssStart: number;
  readonly rssEnd: number;
  /** Highest RSS seen (sampled every 100 ms and at both ends). */
  readonly rssPeak: number;
  /** Busy share of the load CPU (redis, workers, publisher, the runner): near 1 means the load side was the limit. */
  readonly loadCpuBusy: number;
}

/**
 * Measures a server process over a window: CPU from /proc/<pid>/stat, RSS from /proc/<pid>/status, and how
 * busy the load CPU was. `finish()` stops the sampling timer and returns the usage.
 */
export class ResourceWindow {
  readonly #pid: number;
  readonly #loadCpu: number;
  readonly #start = performance.now();
  readonly #cpuStart: number;
  readonly #rssStart: number;
  readonly #loadStart: { busy: number; total: number };
  readonly #timer: ReturnType<typeof setInterval>;
  #rssPeak: number;

  constructor(pid: number, loadCpu: number) {
    this.#pid = pid;
    this.#loadCpu = loadCpu;
    this.#cpuStart = cpuSeconds(pid);
    this.#rssStart = rssBytes(pid);
    this.#rssPeak = this.#rssStart;
    this.#loadStart = cpuTimes(loadCpu);
    this.#timer = setInterval(() => this.#sample(), 100);
  }

  /** The RSS right now (also counted towards the peak). */
  rss(): number {
    return this.#sample();
  }

  finish(): ResourceUsage {
    clearInterval(this.#timer);
    const seconds = (performance.now() - this.#start) / 1000;
    const serverCpuSeconds = cpuSeconds(this.#pid) - this.#cpuStart;
    const rssEnd = this.#sample();
    const load = cpuTimes(this.#loadCpu);
    const total = load.total - this.#loadStart.total;
    return {
      seconds,
      serverCpuSeconds,
      serverCpu: serverCpuSeconds / seconds,
      rssStart: this.#rssStart,
      rssEnd,
      rssPeak: this.#rssPeak,
      loadCpuBusy: total > 0 ? (load.busy - this.#loadStart.busy) / total : 0,
    };
  }

  #sample(): number {
    try {
      const rss = rssBytes(this.#pid);
      if (rss > this.#rssPeak) this.#rssPeak = rss;
      return rss;
    } catch {
      return this.#rssPeak; // the process has exited; the caller notices that itself
    }
  }
}
