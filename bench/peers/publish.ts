// The service side of a benchmark: publishes `{subscription, data}` the way each kind of peer expects it.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

/** How a peer receives published messages. */
export type PublisherKind = "redis" | "socketio";

/** Publishes to one subscription at a time; `publish` resolves once Redis has accepted the message. */
export interface Publisher {
  publish(subscription: string, data: unknown): Promise<void>;
  close(): Promise<void>;
}

/**
 * Connect a publisher to `redisUrl`. "redis": `PUBLISH <subscription> {"subscription","data"}` (Shoal, bun-limit,
 * node-ws). "socketio": `@socket.io/redis-emitter`, `to(subscription).emit("message", {subscription, data})`.
 */
export async function createPublisher(kind: PublisherKind, redisUrl: string): Promise<Publisher> {
  const client = createClient({ url: redisUrl, RESP: 2, maintNotifications: "disabled" });
  client.on("error", (error: Error) => console.error("publisher: redis:", error.message));
  await client.connect();
  const close = async (): Promise<void> => {
    await client.close();
  };

  if (kind === "redis") {
    return {
      async publish(subscription, data) {
        await client.publish(subscription, JSON.stringify({ subscription, data }));
      },
      close,
    };
  }
  if (kind === "socketio") {
    // The emitter calls `publish` and drops its promise; keep it so `publish()` can wait for (and fail with) it.
    let sent: Promise<unknown> = Promise.resolve();
    const emitter = new Emitter({
      publish: (channel: string, message: Buffer) => (sent = client.publish(channel, message)),
    });
    return {
      async publish(subscription, data) {
        emitter.to(subscription).emit("message", { subscription, data });
        await sent;
      },
      close,
    };
  }
  await client.close();
  throw new TypeError(`unknown publisher kind: ${String(kind)}`);
}

/** A Shoal service's `history` option: how many messages, for how many seconds. */
export interface HistorySettings {
  readonly size: number;
  readonly ttl: number;
}

/** The offsets the history script handed out to one subscription: `first` to `last`, all in one epoch. */
export interface AppendedRange {
  readonly first: number;
  readonly last: number;
  readonly epoch: string;
  /** Appends counted; `last - first + 1` when nothing else appended meanwhile. */
  readonly count: number;
  /** Appends that came back with another epoch than the first (the history was lost meanwhile). */
  readonly epochChanges: number;
}

/** A publisher that appends: `appended(name)` says which offsets it was given since the last `resetRanges()`. */
export interface HistoryPublisher extends Publisher {
  appended(subscription: string): AppendedRange | undefined;
  resetRanges(): void;
}

/** The script a service runs to append and publish (README, "Publishing to a history from your service"). */
const HISTORY_SCRIPT_PATH = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "scripts",
  "shoal_history_publish.lua",
);

/**
 * Connect a history publisher to `redisUrl`: what a service does for a Shoal service with `history` (Redis broker,
 * no channel prefix): `EVALSHA` of `scripts/shoal_history_publish.lua` with the subscription's three keys, the
 * message `{"subscription","data"}`, `size`, `ttl` in ms and `PUBLISH`. Every append is published with its
 * `offset` and `epoch`, and the offsets handed out are recorded per subscription.
 */
export async function createHistoryPublisher(redisUrl: string, history: HistorySettings): Promise<HistoryPublisher> {
  const client = createClient({ url: redisUrl, RESP: 2, maintNotifications: "disabled" });
  client.on("error", (error: Error) => console.error("history publisher: redis:", error.message));
  await client.connect();
  const sha = await client.scriptLoad(readFileSync(HISTORY_SCRIPT_PATH, "utf8"));
  const size = String(history.size);
  const ttlMs = String(Math.round(history.ttl * 1000));
  let ranges = new Map<string, { first: number; last: number; epoch: string; count: number; epochChanges: number }>();
  return {
    async publish(subscription, data) {
      const tag = `{${subscription}}`;
      const reply = await client.evalSha(sha, {
        keys: [`shoal:history:${tag}`, `shoal:history-meta:${tag}`, `shoal:history-idem:${tag}`],
        arguments: [subscription, JSON.stringify({ subscription, data }), size, ttlMs, "PUBLISH"],
      });
      const [offset, epoch] = reply as [number, string, number];
      const range = ranges.get(subscription);
      if (!range) {
        ranges.set(subscription, { first: offset, last: offset, epoch, count: 1, epochChanges: 0 });
        return;
      }
      range.count++;
      if (epoch !== range.epoch) range.epochChanges++;
      else {
        range.first = Math.min(range.first, offset);
        range.last = Math.max(range.last, offset);
      }
    },
    appended: (subscription) => {
      const range = ranges.get(subscription);
      return range && { ...range };
    },
    resetRanges() {
      ranges = new Map();
    },
    async close() {
      await client.close();
    },
  };
}
