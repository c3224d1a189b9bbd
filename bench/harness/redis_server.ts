import { Child } from "./child.ts";
import { freePort } from "./free_port.ts";

/** A private redis-server on a free port, without persistence; `stop()` ends it. */
export class RedisServer {
  readonly port: number;
  readonly #child: Child;

  private constructor(child: Child, port: number) {
    this.#child = child;
    this.port = port;
  }

  static async start(options: { readonly cwd: string; readonly cpu?: number }): Promise<RedisServer> {
    const port = await freePort();
    const child = new Child(
      "redis-server",
      ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { cwd: options.cwd, cpu: options.cpu },
    );
    await child.waitFor(
      (line) => typeof line === "string" && line.includes("Ready to accept connections"),
      10_000,
      "not ready",
    );
    return new RedisServer(child, port);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child.running;
  }

  async stop(): Promise<void> {
    await this.#child.stop("SIGTERM", 5000);
  }
}
