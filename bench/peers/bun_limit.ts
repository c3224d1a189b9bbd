/// <reference types="@types/bun" />
// Peer "bun-limit": the practical ceiling of a JS router. Raw Bun.serve, one Redis SUBSCRIBE per topic, and fan-out
// through Bun's native pub/sub (`ws.subscribe` + `server.publish`), which writes a frame to every subscriber in
// native code. Speaks Shoal's subscribe/unsubscribe/message subset; no auth, ordering or throttling.
// With CALLBACK_URL (S4) each subscribe first POSTs `{subscription}` to CALLBACK_URL/authorize and
// CALLBACK_URL/before_subscribe, one after the other, answers OK, then POSTs CALLBACK_URL/on_subscribe: the same
// three calls Shoal makes, done by hand with fetch.
//
//   PORT=8001 REDIS_URL=redis://127.0.0.1:6400 [CALLBACK_URL=http://127.0.0.1:8002] bun run bench/peers/bun_limit.ts
import type { ServerWebSocket } from "bun";
import { createClient } from "redis";

/** Bun drops frames past this many buffered bytes and, with `closeOnBackpressureLimit`, closes the socket (as Shoal). */
const BACKPRESSURE_LIMIT = 8 * 1024 * 1024;
const MAX_PAYLOAD = 64 * 1024;
const INVALID_EVENT = "Messages must be JSON and contain an event field.";

type Socket = ServerWebSocket<{ readonly topics: Set<string> }>;

const port = Number(process.env.PORT);
const redisUrl = process.env.REDIS_URL;
const callbackUrl = process.env.CALLBACK_URL;
if (!Number.isInteger(port) || port <= 0 || !redisUrl) {
  console.error("bun_limit: set PORT and REDIS_URL");
  process.exit(2);
}

const subscriber = createClient({ url: redisUrl, RESP: 2, maintNotifications: "disabled" });
subscriber.on("error", (error: Error) => console.error("bun_limit: redis:", error.message));
await subscriber.connect();

/** Local subscriber count per topic, and the promise of its Redis SUBSCRIBE. */
const topics = new Map<string, { count: number; ready: Promise<unknown> }>();

function onRedisMessage(message: string, channel: string): void {
  let data: unknown;
  try {
    data = (JSON.parse(message) as { data?: unknown }).data;
  } catch {
    return;
  }
  server.publish(channel, JSON.stringify({ event: "message", subscription: channel, data }));
}

/** POST `{subscription}` to one of the service's callbacks; true if it answered `{"status":"ok"}`. */
async function callback(path: string, name: string): Promise<boolean> {
  const response = await fetch(`${callbackUrl}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ subscription: name }),
  });
  return response.ok && ((await response.json()) as { status?: unknown }).status === "ok";
}

async function subscribe(ws: Socket, name: string): Promise<void> {
  if (ws.data.topics.has(name)) {
    ws.send(JSON.stringify({ event: "subscribe", status: "error", error: "Already subscribed.", subscription: name }));
    return;
  }
  if (callbackUrl && !(await callback("authorize", name) && await callback("before_subscribe", name))) {
    ws.send(JSON.stringify({ event: "subscribe", status: "error", error: "Unauthorized.", subscription: name }));
    return;
  }
  ws.data.topics.add(name);
  ws.subscribe(name);
  let topic = topics.get(name);
  if (topic) topic.count++;
  else topics.set(name, topic = { count: 1, ready: subscriber.subscribe(name, onRedisMessage) });
  try {
    await topic.ready;
  } catch (error) {
    if (ws.data.topics.delete(name)) {
      ws.unsubscribe(name);
      release(name);
    }
    throw error;
  }
  ws.send(JSON.stringify({ event: "subscribe", status: "ok", subscription: name }));
  if (callbackUrl) await callback("on_subscribe", name);
}

/** Forget one local subscriber; the last one leaves the Redis channel. */
function release(name: string): void {
  const topic = topics.get(name);
  if (!topic || --topic.count > 0) return;
  topics.delete(name);
  subscriber.unsubscribe(name).catch((error: Error) => console.error("bun_limit: unsubscribe:", error.message));
}

function unsubscribe(ws: Socket, name: string): void {
  if (!ws.data.topics.delete(name)) {
    ws.send(
      JSON.stringify({
        event: "unsubscribe",
        status: "error",
        error: "Subscription does not exist.",
        subscription: name,
      }),
    );
    return;
  }
  ws.unsubscribe(name);
  release(name);
  ws.send(JSON.stringify({ event: "unsubscribe", status: "ok", subscription: name }));
}

const server = Bun.serve<{ topics: Set<string> }>({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    if (server.upgrade(req, { data: { topics: new Set<string>() } })) return undefined;
    return new Response("WebSocket only", { status: 426 });
  },
  websocket: {
    idleTimeout: 0,
    perMessageDeflate: false,
    maxPayloadLength: MAX_PAYLOAD,
    backpressureLimit: BACKPRESSURE_LIMIT,
    closeOnBackpressureLimit: true,
    message(ws, raw) {
      let frame: { event?: unknown; subscription?: unknown };
      try {
        frame = JSON.parse(String(raw));
      } catch {
        ws.send(JSON.stringify({ status: "error", error: INVALID_EVENT }));
        return;
      }
      const name = frame?.subscription;
      if (typeof name !== "string") {
        ws.send(JSON.stringify({ status: "error", error: INVALID_EVENT }));
      } else if (frame.event === "subscribe") {
        subscribe(ws, name).catch((error: Error) => {
          ws.send(JSON.stringify({ event: "subscribe", status: "error", error: error.message, subscription: name }));
        });
      } else if (frame.event === "unsubscribe") {
        unsubscribe(ws, name);
      } else {
        ws.send(JSON.stringify({ event: frame.event, status: "error", error: "Event not found." }));
      }
    },
    // Bun has already dropped the socket from its native topics; only the Redis refcounts remain.
    close(ws) {
      for (const name of ws.data.topics) release(name);
      ws.data.topics.clear();
    },
  },
});

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.stop(true);
  await subscriber.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

console.log(JSON.stringify({ message: "ready", port: server.port }));
