import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "redis";

/** A message for Shoal (README, "Publishing"): `subscription`, `data`, and any filter fields at the top level. */
export interface Message {
  readonly subscription: string;
  readonly data: unknown;
  readonly [filterField: string]: unknown;
}

/** One message to publish, with an idempotency key for history services: a retry is then stored only once. */
export interface Publication {
  readonly message: Message;
  readonly idempotencyKey?: string;
}

/** Where the service publishes: Shoal's `POST /publish`, or Redis directly. */
export interface Publisher {
  /** Human-readable, for the start-up line. */
  readonly description: string;
  /** Publish in order; rejects when a message could not be published. */
  publish(publications: readonly Publication[]): Promise<void>;
  close(): Promise<void>;
}

/** `POST /publish` on Shoal with its bearer token (Shoal's memory broker, or any broker it is configured with). */
export class ShoalHttpPublisher implements Publisher {
  readonly description: string;
  readonly #url: string;
  readonly #token: string;

  constructor(shoalUrl: string, token: string) {
    this.#url = new URL("/publish", shoalUrl).href;
    this.#token = token;
    this.description = `Shoal's POST ${this.#url}`;
  }

  async publish(publications: readonly Publication[]): Promise<void> {
    const body = JSON.stringify(
      publications.map(({ message, idempotencyKey }) =>
        idempotencyKey === undefined ? message : { ...message, idempotency_key: idempotencyKey }
      ),
    );
    // Retried while Shoal is unreachable or its broker is down (503); the idempotency keys keep a retried chat
    // message from being stored twice.
    for (let attempt = 1;; attempt++) {
      const response = await fetch(this.#url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.#token}` },
        body,
        signal: AbortSignal.timeout(5000),
      }).catch((error: Error) => error);
      if (response instanceof Response && response.ok) return void await response.body?.cancel();
      const retry = !(response instanceof Response) || response.status === 503;
      const why = response instanceof Response ? `${response.status} ${await response.text()}` : response.message;
      if (!retry || attempt === 3) throw new Error(`POST /publish: ${why}`);
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Shoal's history script, the one it runs itself for `POST /publish` (README, "History and recovery"). */
const HISTORY_SCRIPT = readFileSync(
  join(dirname(fileURLToPath(import.meta.url)), "..", "..", "scripts", "shoal_history_publish.lua"),
  "utf8",
);

/** How a service keeps its history: `services.<name>.history` in Shoal's config. */
export interface History {
  readonly size: number;
  readonly ttl: number;
}

const newRedis = (url: string) => createClient({ url });
type Redis = ReturnType<typeof newRedis>;

/**
 * Redis, as SocketShark services publish: `PUBLISH <subscription> <json>`, or, for a service with a history, the
 * history script, which stores the message and publishes it in one step. Shoal must use the same Redis (and the
 * same channel prefix: none here).
 */
export class RedisPublisher implements Publisher {
  readonly description: string;
  readonly #redis: Redis;
  readonly #histories: Readonly<Record<string, History>>;
  #sha = "";

  private constructor(redis: Redis, histories: Readonly<Record<string, History>>) {
    this.#redis = redis;
    this.#histories = histories;
    this.description = "Redis";
  }

  /** Connect to `url`; `histories` names the services that keep a history (service name → size and ttl). */
  static async connect(url: string, histories: Readonly<Record<string, History>>): Promise<RedisPublisher> {
    const redis = newRedis(url);
    // node-redis reconnects by itself; without a listener an error event would end the process.
    redis.on("error", (error: Error) => console.error(`redis: ${error.message}`));
    await redis.connect();
    return new RedisPublisher(redis, histories);
  }

  async publish(publications: readonly Publication[]): Promise<void> {
    for (const { message, idempotencyKey } of publications) {
      const channel = message.subscription;
      const text = JSON.stringify(message);
      const history = this.#histories[channel.slice(0, channel.indexOf("."))];
      if (!history) {
        await this.#redis.publish(channel, text);
        continue;
      }
      // The keys hold the channel as a hash tag, so that in a Redis Cluster they live on the channel's slot.
      const tag = `{${channel}}`;
      const keys = [`shoal:history:${tag}`, `shoal:history-meta:${tag}`, `shoal:history-idem:${tag}`];
      const args = [channel, text, String(history.size), String(history.ttl * 1000), "PUBLISH"];
      // The key is optional, and must then be left out: the script takes an empty string for a key.
      if (idempotencyKey !== undefined) args.push(idempotencyKey);
      await this.#runScript(keys, args);
    }
  }

  async close(): Promise<void> {
    await this.#redis.close();
  }

  /** EVALSHA, loading the script first, and again after Redis forgot it (a restart: NOSCRIPT). */
  async #runScript(keys: string[], args: string[]): Promise<void> {
    for (let attempt = 1;; attempt++) {
      if (this.#sha === "") this.#sha = await this.#redis.scriptLoad(HISTORY_SCRIPT);
      try {
        await this.#redis.evalSha(this.#sha, { keys, arguments: args });
        return;
      } catch (error) {
        if (attempt > 1 || !String(error).includes("NOSCRIPT")) throw error;
        this.#sha = "";
      }
    }
  }
}
