import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

export interface ChildOptions {
  readonly cwd: string;
  readonly env?: Readonly<Record<string, string>>;
  /** Run pinned to this CPU (`taskset -c`, which execs the command: the pid is the command's). */
  readonly cpu?: number;
  /** Keep stdin open for `write()`. */
  readonly stdin?: boolean;
}

type Exit = { readonly code: number | null; readonly signal: string | null };
type LineWaiter = { match(line: unknown): boolean; resolve(line: unknown): void };

/** Every child still running, killed if the runner exits so that none outlives it. */
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/**
 * A process the runner started: its stdout parsed as JSON lines (non-JSON lines kept as strings), the tail of
 * its output kept for error messages, and `stop()` that signals and waits.
 */
export class Child {
  readonly name: string;
  readonly pid: number;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  /** Called with every stdout line, parsed. */
  onLine: ((line: unknown) => void) | undefined;
  readonly #child: ChildProcess;
  readonly #commandLine: string;
  readonly #tail: string[] = [];
  readonly #waiters = new Set<LineWaiter>();
  #partial = "";
  #exit: Exit | undefined;

  constructor(name: string, command: readonly string[], options: ChildOptions) {
    const argv = options.cpu === undefined ? [...command] : ["taskset", "-c", String(options.cpu), ...command];
    this.name = name;
    this.#commandLine = argv.join(" ");
    this.#child = spawn(argv[0], argv.slice(1), {
      cwd: options.cwd,
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...options.env },
      stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"],
    });
    if (this.#child.pid === undefined) throw new Error(`${name}: could not start ${this.#commandLine}`);
    this.pid = this.#child.pid;
    live.add(this.#child);
    this.exited = new Promise((resolve) => {
      this.#child.once("close", (code, signal) => {
        live.delete(this.#child);
        this.#exit = { code, signal };
        for (const waiter of [...this.#waiters]) waiter.resolve(undefined);
        resolve(this.#exit);
      });
    });
    this.#child.stdout!.setEncoding("utf8");
    this.#child.stdout!.on("data", (chunk: string) => this.#stdout(chunk));
    this.#child.stderr!.setEncoding("utf8");
    this.#child.stderr!.on("data", (chunk: string) => this.#keep(`stderr: ${chunk.trimEnd()}`));
    this.#child.stdin?.on("error", () => {}); // a worker that died: its exit is reported instead
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  get commandLine(): string {
    return this.#commandLine;
  }

  /** Write one line to stdin. */
  write(line: string): void {
    this.#child.stdin?.write(`${line}\n`);
  }

  /**
   * The first stdout line from now on that `match` accepts; rejects after `timeoutMs` or if the process exits
   * first, naming the process and the tail of its output.
   */
  waitFor<T>(match: (line: unknown) => line is T, timeoutMs: number, what: string): Promise<T>;
  waitFor(match: (line: unknown) => boolean, timeoutMs: number, what: string): Promise<unknown>;
  waitFor(match: (line: unknown) => boolean, timeoutMs: number, what: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (!this.running) return reject(this.error(`${what}: it had exited`));
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(this.error(`${what}: not within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: LineWaiter = {
        match,
        resolve: (line) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          if (line === undefined) reject(this.error(`${what}: it exited (${JSON.stringify(this.#exit)})`));
          else resolve(line);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  /** An error naming the process, its command line and the tail of its output. */
  error(message: string): Error {
    return new Error(`${this.name}: ${message}\n  command: ${this.#commandLine}\n  ${this.#tail.join("\n  ")}`);
  }

  /** Signal and wait up to `timeoutMs`; then SIGKILL. Resolves with the exit code (null: killed by a signal). */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<number | null> {
    if (this.running) this.#signal(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exit = await Promise.race([
      this.exited,
      new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (exit !== "timeout") return exit.code;
    this.#signal("SIGKILL");
    await this.exited;
    throw this.error(`did not exit within ${timeoutMs} ms of ${signal}`);
  }

  #signal(signal: NodeJS.Signals): void {
    try {
      process.kill(this.pid, signal);
    } catch (error) {
      if ((error as { code?: string }).code !== "ESRCH") throw error;
    }
  }

  #stdout(chunk: string): void {
    this.#partial += chunk;
    let newline: number;
    while ((newline = this.#partial.indexOf("\n")) >= 0) {
      const text = this.#partial.slice(0, newline).trim();
      this.#partial = this.#partial.slice(newline + 1);
      if (text === "") continue;
      let line: unknown = text;
      try {
        line = JSON.parse(text);
      } catch {
        // kept as text
      }
      if (typeof line === "string" || !isProgress(line)) this.#keep(text);
      this.onLine?.(line);
      for (const waiter of [...this.#waiters]) if (waiter.match(line)) waiter.resolve(line);
    }
  }

  #keep(text: string): void {
    this.#tail.push(text.length > 500 ? `${text.slice(0, 500)}…` : text);
    if (this.#tail.length > 20) this.#tail.shift();
  }
}

/** Worker progress lines are many and say nothing about a failure: they stay out of the kept tail. */
function isProgress(line: unknown): boolean {
  return typeof line === "object" && line !== null && (line as { type?: unknown }).type === "progress";
}
