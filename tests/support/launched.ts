/**
 * A process started by a command line of the test's choosing (npm, deno task, Shoal with the example config), for
 * tests that cannot use `ShoalProcess` (which writes its own config). Its JSON stdout lines are parsed; the
 * processes below it are tracked (Linux /proc) so that a test can check they end, and kill them if not.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import type { LogLine } from "./shoal_process.ts";

/** The pids below `pid`, children first (Linux /proc). */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name may hold spaces and parentheses: the fields after the last ")" are unambiguous.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // it exited while we looked
    }
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const child of parents.get(p) ?? []) {
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolve once `done()` holds, polling; reject after `timeoutMs` naming `what`. */
export async function until(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export class Launched {
  readonly child: ChildProcess;
  /** The stdout lines that are JSON objects (Shoal's log lines), in order. */
  readonly lines: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Every pid seen below the launcher, killed by `kill()` even once orphaned. */
  readonly #seen = new Set<number>();
  #text = "";

  constructor(cmd: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
    this.child = spawn(cmd, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => {
      this.child.once("close", (code, signal) => resolve({ code, signal }));
      this.child.once("error", (error) => resolve({ code: null, signal: `spawn error: ${error.message}` }));
    });
    let partial = "";
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      this.#text += chunk;
      partial += chunk;
      let newline: number;
      while ((newline = partial.indexOf("\n")) >= 0) {
        const text = partial.slice(0, newline).trim();
        partial = partial.slice(newline + 1);
        try {
          const value = JSON.parse(text);
          if (value !== null && typeof value === "object") this.lines.push(value);
        } catch {
          // npm's banner and other plain text
        }
      }
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.#text += chunk));
  }

  /** Everything written to stdout and stderr so far. */
  get output(): string {
    return this.#text;
  }

  /** The "shoal ready" line, waiting up to `timeoutMs` for it. */
  async ready(timeoutMs = 20_000): Promise<LogLine> {
    const what = `"shoal ready" from ${this.child.spawnargs.join(" ")}`;
    let exited = false;
    void this.exited.then(() => (exited = true));
    await until(what, () => {
      if (!this.has("shoal ready") && exited) throw new Error(`${what}: the process exited`);
      return this.has("shoal ready");
    }, timeoutMs).catch((error) => {
      throw new Error(`${error.message}\n${this.output}`);
    });
    return this.lines.find((l) => l.message === "shoal ready")!;
  }

  /** Whether a log line with this message was written. */
  has(message: string): boolean {
    return this.lines.some((l) => l.message === message);
  }

  /** The processes running below the launcher now (remembered for `kill()`). */
  below(): number[] {
    const pids = this.child.pid === undefined ? [] : descendants(this.child.pid);
    for (const pid of pids) this.#seen.add(pid);
    return pids;
  }

  /** SIGKILL the launcher and every process seen below it. Safe to call more than once. */
  kill(): void {
    for (const pid of [...this.below(), ...this.#seen, ...(this.child.pid === undefined ? [] : [this.child.pid])]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
}
