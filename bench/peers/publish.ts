// The service side of a benchmark: publishes `{subscription, data}` the way each kind of peer expects it.
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
