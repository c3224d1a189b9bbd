import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Child } from "./child.ts";
import { freePort } from "./free_port.ts";
import { cpuSeconds, rssBytes } from "./proc_stats.ts";
import type { Target, Tools } from "./targets.ts";

export interface ServerStartOptions {
  readonly tools: Tools;
  readonly cwd: string;
  readonly redisUrl: string;
  /** Where Shoal's config module is written. */
  readonly configDir: string;
  /** Shoal's config beyond the listener, the broker and the log (e.g. `ws` options, `services`). */
  readonly shoalConfig?: ShoalConfigExtras;
  /** Environment for a peer beside PORT and REDIS_URL (e.g. bun-limit's CALLBACK_URL). */
  readonly peerEnv?: Readonly<Record<string, string>>;
  readonly cpu?: number;
  /** Listen port; a free one if not given. */
  readonly port?: number;
  readonly startupTimeoutMs?: number;
}

/** The parts of Shoal's config a scenario sets. */
export interface ShoalConfigExtras {
  readonly ws?: Readonly<Record<string, unknown>>;
  /** Options of the `bench` service, beside `requireAuthentication: false`. */
  readonly service?: Readonly<Record<string, unknown>>;
  /** `metrics` (e.g. `{prometheus: {}}` for /metrics on the listener); none by default. */
  readonly metrics?: Readonly<Record<string, unknown>>;
}

/** Shoal's config module for the benchmark: the listener, service "bench", the Redis broker, JSON logs. */
export function shoalConfig(port: number, redisUrl: string, extras: ShoalConfigExtras = {}): Record<string, unknown> {
  return {
    ws: { host: "127.0.0.1", port, ping: { interval: 0 }, ...extras.ws },
    services: { bench: { requireAuthentication: false, ...extras.service } },
    broker: { kind: "redis", url: redisUrl },
    // "info": the "shoal ready" line is logged at info; nothing is logged per message at this level.
    log: { level: "info", format: "json" },
    ...(extras.metrics ? { metrics: extras.metrics } : {}),
  };
}

/** One target's server process, started pinned and ready; `cpuSeconds()` and `rssBytes()` read /proc. */
export class ServerUnderTest {
  readonly target: Target;
  readonly port: number;
  readonly #child: Child;
  /** How many log lines had each `message` (Shoal logs "ping timeout", "slow consumer; closing", ...). */
  readonly #messages = new Map<string, number>();

  private constructor(target: Target, port: number, child: Child) {
    this.target = target;
    this.port = port;
    this.#child = child;
    child.onLine = (line) => {
      const message = (line as { message?: unknown } | null)?.message;
      if (typeof message === "string") this.#messages.set(message, (this.#messages.get(message) ?? 0) + 1);
    };
  }

  /** Log lines so far whose `message` is `message`. */
  logged(message: string): number {
    return this.#messages.get(message) ?? 0;
  }

  static async start(target: Target, options: ServerStartOptions): Promise<ServerUnderTest> {
    const port = options.port ?? await freePort();
    let configPath = "";
    if (target.shoal) {
      mkdirSync(options.configDir, { recursive: true });
      configPath = join(options.configDir, `${target.name}-${port}.config.ts`);
      const config = shoalConfig(port, options.redisUrl, options.shoalConfig);
      writeFileSync(configPath, `// Written by bench/run.ts\nexport default ${JSON.stringify(config, null, 2)};\n`);
    }
    const child = new Child(target.name, target.command(options.tools, configPath), {
      cwd: options.cwd,
      cpu: options.cpu,
      env: { ...options.peerEnv, PORT: String(port), REDIS_URL: options.redisUrl },
    });
    try {
      await child.waitFor(
        (line) => isReady(line, target.readyMessage, port),
        options.startupTimeoutMs ?? 30_000,
        "not ready",
      );
    } catch (error) {
      await child.stop("SIGKILL", 5000).catch(() => {});
      throw error;
    }
    return new ServerUnderTest(target, port, child);
  }

  get pid(): number {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#child.running;
  }

  get commandLine(): string {
    return this.#child.commandLine;
  }

  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  rssBytes(): number {
    return rssBytes(this.pid);
  }

  /** An error naming the server and the tail of its output. */
  error(message: string): Error {
    return this.#child.error(message);
  }

  /** SIGTERM and wait; resolves with the seconds it took, rejects if it does not exit 0 within the timeout. */
  async stop(timeoutMs = 60_000): Promise<number> {
    const started = performance.now();
    const code = await this.#child.stop("SIGTERM", timeoutMs);
    if (code !== 0) throw this.#child.error(`exited with ${code} after SIGTERM`);
    return (performance.now() - started) / 1000;
  }

  /** Kill at once (after a failure). */
  async kill(): Promise<void> {
    await this.#child.stop("SIGKILL", 5000).catch(() => {});
  }
}

function isReady(line: unknown, message: string, port: number): boolean {
  if (typeof line !== "object" || line === null) return false;
  const ready = line as { message?: unknown; port?: unknown };
  return ready.message === message && ready.port === port;
}
