import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** The repository root: the server runs from here so `main.ts` and `node_modules` resolve. */
export const REPO_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** How the server is started: `deno run`, `bun run`, or the `bun build --compile` executable. */
export type ShoalTarget = "deno" | "bun" | "binary";

/** One parsed log line (LogTape JSON lines: `@timestamp`, `level`, `message`, `logger`, then properties). */
export type LogLine = Readonly<Record<string, unknown>> & { readonly message?: unknown; readonly level?: unknown };

export interface ShoalOptions {
  /** Defaults to env SHOAL_TARGET, else "bun". */
  readonly target?: ShoalTarget;
  /** Milliseconds to wait for the "shoal ready" line. */
  readonly startupTimeoutMs?: number;
  /** Extra environment variables for the server process (e.g. `SHOAL_*` overrides). */
  readonly env?: Readonly<Record<string, string>>;
}

/** The target chosen by env SHOAL_TARGET (default "bun"). */
export function shoalTarget(): ShoalTarget {
  const target = process.env.SHOAL_TARGET ?? "bun";
  if (target !== "deno" && target !== "bun" && target !== "binary") {
    throw new Error(`SHOAL_TARGET must be deno, bun or binary, not ${JSON.stringify(target)}`);
  }
  return target;
}

function command(target: ShoalTarget, configPath: string): { cmd: string; args: string[] } {
  return shoalCommand(target, ["-c", configPath]);
}

/** The command line that runs Shoal with `args` on a target. */
export function shoalCommand(target: ShoalTarget, args: string[]): { cmd: string; args: string[] } {
  switch (target) {
    case "deno":
      return { cmd: "deno", args: ["run", "-A", "main.ts", ...args] };
    case "bun":
      return { cmd: "bun", args: ["run", "main.ts", ...args] };
    case "binary": {
      const binary = process.env.SHOAL_BINARY;
      if (!binary) throw new Error("SHOAL_TARGET=binary needs SHOAL_BINARY, the path of the compiled executable");
      return { cmd: binary, args };
    }
  }
}

/** Every server still running, killed when the test process exits so none outlives a crashed test run. */
const liveChildren = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
});

type Exit = { readonly code: number | null; readonly signal: string | null };

/**
 * The real Shoal server as a child process, started from a config object. Its JSON log lines are kept in
 * `logs`; `stop()` sends a signal and resolves with the exit code. Dispose (or `kill()`) in every test's cleanup.
 */
export class ShoalProcess {
  /** Every log line so far, parsed; a line that is not JSON is kept as `{ message: <text>, raw: true }`. */
  readonly logs: LogLine[] = [];
  readonly target: ShoalTarget;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  readonly #child: ChildProcess;
  readonly #dir: string;
  readonly #commandLine: string;
  readonly #logWaiters = new Set<() => void>();
  #stderr = "";
  #partial = "";
  #port = 0;

  private constructor(child: ChildProcess, options: { dir: string; target: ShoalTarget; commandLine: string }) {
    this.#child = child;
    this.#dir = options.dir;
    this.target = options.target;
    this.#commandLine = options.commandLine;
    liveChildren.add(child);
    this.exited = new Promise<Exit>((resolve) => {
      // "close" comes after stdout and stderr have ended, so every line is in `logs` by then.
      child.once("close", (code, signal) => {
        liveChildren.delete(child);
        resolve({ code, signal });
      });
      child.once("error", (error) => {
        liveChildren.delete(child);
        resolve({ code: null, signal: `spawn error: ${error.message}` });
      });
    });
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => this.#stdout(chunk));
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => (this.#stderr += chunk));
  }

  /**
   * Write `config` as a config module in a fresh temporary directory (with `log: {level: "debug", format: "json"}`
   * and `ws.port: 0` unless given) and start the server on it; resolves once it logged "shoal ready".
   */
  static async start(config: Readonly<Record<string, unknown>> = {}, options: ShoalOptions = {}): Promise<ShoalProcess> {
    const target = options.target ?? shoalTarget();
    const ws = (config.ws ?? {}) as Readonly<Record<string, unknown>>;
    const full = { ...config, ws: { port: 0, ...ws }, log: config.log ?? { level: "debug", format: "json" } };
    const dir = mkdtempSync(join(tmpdir(), "shoal-e2e-"));
    const configPath = join(dir, "config.ts");
    writeFileSync(configPath, `// Written by tests/support/shoal_process.ts\nexport default ${JSON.stringify(full, null, 2)};\n`);
    const { cmd, args } = command(target, configPath);
    const child = spawn(cmd, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const shoal = new ShoalProcess(child, { dir, target, commandLine: `${cmd} ${args.join(" ")}` });
    try {
      const ready = await shoal.waitForLog(
        (line) => line.message === "shoal ready" && typeof line.port === "number",
        options.startupTimeoutMs ?? 20_000,
        "shoal was not ready",
      );
      shoal.#port = ready.port as number;
      return shoal;
    } catch (error) {
      await shoal.kill();
      throw error;
    }
  }

  /** The port the server listens on. */
  get port(): number {
    return this.#port;
  }

  /** What the process wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** `ws://127.0.0.1:PORT/` */
  get url(): string {
    return `ws://127.0.0.1:${this.port}/`;
  }

  /** `http://127.0.0.1:PORT` (no trailing slash), for `/publish`, `/healthz`, `/readyz`. */
  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Whether the process is still running. */
  get running(): boolean {
    return liveChildren.has(this.#child);
  }

  /** Log lines whose `message` equals `message`. */
  logsWith(message: string): LogLine[] {
    return this.logs.filter((line) => line.message === message);
  }

  /**
   * Resolve with the first log line matching `predicate`, waiting up to `timeoutMs` for it. Rejects at once if
   * the process exits first, with its output in the message.
   */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 5000, what = "no matching log line"): Promise<LogLine> {
    const found = this.logs.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (why: string) => {
        cleanup();
        reject(new Error(`${what}: ${why}\n${this.describe()}`));
      };
      const wake = () => {
        if (settled) return;
        const line = this.logs.find(predicate);
        if (line) {
          cleanup();
          resolve(line);
        } else if (!this.running) {
          fail("the process exited");
        }
      };
      const timer = setTimeout(() => fail(`not within ${timeoutMs} ms`), timeoutMs);
      const cleanup = () => {
        settled = true;
        clearTimeout(timer);
        this.#logWaiters.delete(wake);
      };
      this.#logWaiters.add(wake);
      void this.exited.then(wake);
    });
  }

  /** The command line, the log lines and stderr: for error messages. */
  describe(): string {
    const stdout = this.logs.map((l) => JSON.stringify(l)).join("\n") + (this.#partial ? `\n${this.#partial}` : "");
    return `${this.#commandLine} (cwd ${REPO_ROOT})\n--- stdout ---\n${stdout}\n--- stderr ---\n${this.#stderr}`;
  }

  /**
   * Send `signal` and resolve with the exit code (null if killed by a signal). If the process has not exited
   * within `timeoutMs` it is killed and this rejects, naming the last log lines.
   */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<number | null> {
    this.#signal(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const exit = await Promise.race([
        this.exited,
        new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs))),
      ]);
      if (exit === "timeout") {
        await this.kill();
        throw new Error(`shoal did not exit within ${timeoutMs} ms of ${signal}:\n${this.describe()}`);
      }
      return exit.code;
    } finally {
      clearTimeout(timer);
      rmSync(this.#dir, { recursive: true, force: true });
    }
  }

  /** Kill at once (SIGKILL) if still running and remove the temporary config. Safe to call more than once. */
  async kill(): Promise<void> {
    this.#signal("SIGKILL");
    await this.exited;
    rmSync(this.#dir, { recursive: true, force: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.kill();
  }

  /**
   * Signal the process by pid: Deno's `node:child_process` reports a child that was sent a signal with
   * `ChildProcess.kill()` as killed by it (code null) even when it handled the signal and exited with a code.
   */
  #signal(signal: NodeJS.Signals): void {
    if (!this.running || this.#child.pid === undefined) return;
    try {
      process.kill(this.#child.pid, signal);
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
      if (text !== "") this.logs.push(parseLine(text));
    }
    for (const wake of [...this.#logWaiters]) wake();
  }
}

function parseLine(text: string): LogLine {
  try {
    const value = JSON.parse(text);
    if (value !== null && typeof value === "object" && !Array.isArray(value)) return value as LogLine;
  } catch {
    // not JSON: kept as raw text below
  }
  return { message: text, raw: true };
}
