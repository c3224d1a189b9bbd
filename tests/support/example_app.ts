// The example service (examples/service/) and a Shoal on its config, as its README starts them: for the e2e and
// browser tests.
import assert from "node:assert/strict";
import process from "node:process";
import { exampleConfig } from "../../examples/service/shoal.config.ts";
import { Launched, until } from "./launched.ts";
import { freePort } from "./redis_server.ts";
import { REPO_ROOT, ShoalProcess } from "./shoal_process.ts";
import { WsClient } from "./ws_client.ts";

/** The example service and Shoal, started as the example's README says (ports chosen by the test). */
export class Example {
  readonly serviceUrl: string;
  readonly service: Launched;
  readonly #config: Readonly<Record<string, unknown>>;
  shoal: ShoalProcess;

  private constructor(
    serviceUrl: string,
    config: Readonly<Record<string, unknown>>,
    shoal: ShoalProcess,
    service: Launched,
  ) {
    this.serviceUrl = serviceUrl;
    this.#config = config;
    this.shoal = shoal;
    this.service = service;
  }

  static async start(options: { redisUrl?: string } = {}): Promise<Example> {
    const serviceUrl = `http://127.0.0.1:${await freePort()}`;
    const config = exampleConfig({ serviceUrl, redisUrl: options.redisUrl }) as Readonly<Record<string, unknown>>;
    const shoal = await startShoal(config, 0);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NO_COLOR: "1",
      HOST: "127.0.0.1",
      PORT: new URL(serviceUrl).port,
      SHOAL_URL: shoal.httpUrl,
    };
    if (options.redisUrl) env.REDIS_URL = options.redisUrl;
    else delete env.REDIS_URL;
    const service = new Launched("bun", ["run", "examples/service/main.ts"], { cwd: REPO_ROOT, env });
    const example = new Example(serviceUrl, config, shoal, service);
    try {
      let exited = false;
      void service.exited.then(() => (exited = true));
      await until("the example service listening", () => {
        if (exited) throw new Error(`the example service exited:\n${service.output}`);
        return service.output.includes("example service listening on");
      }, 20_000);
    } catch (error) {
      await example.close();
      throw error;
    }
    return example;
  }

  /** A fresh ticket for `username`, from the service's login endpoint. */
  async ticket(username: string): Promise<string> {
    const answer = await this.post("/auth/ticket", { username });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return (answer.body as { ticket: string }).ticket;
  }

  /** POST JSON to the service. */
  async post(path: string, body: unknown): Promise<{ status: number; body: unknown }> {
    const response = await fetch(new URL(path, this.serviceUrl), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, body: await response.json() };
  }

  /** A WebSocket client authenticated as `username` (with a ticket of its own). */
  async login(username: string): Promise<WsClient> {
    const client = await WsClient.connect(this.shoal.url);
    client.send({ event: "auth", ticket: await this.ticket(username) });
    assert.deepEqual(await client.next(5000), { event: "auth", status: "ok" });
    return client;
  }

  /** A Shoal on the same config and port as the one killed, as after a crash and a restart. */
  async restartShoal(): Promise<void> {
    await this.shoal.kill();
    this.shoal = await startShoal(this.#config, this.shoal.port);
  }

  async close(): Promise<void> {
    this.service.kill();
    await this.service.exited;
    await this.shoal.kill();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function startShoal(config: Readonly<Record<string, unknown>>, port: number): Promise<ShoalProcess> {
  const ws = config.ws as Readonly<Record<string, unknown>>;
  return ShoalProcess.start({ ...config, ws: { ...ws, port }, log: { level: "debug", format: "json" } });
}

