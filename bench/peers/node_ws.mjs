// Peer "node-ws": what a user would hand-roll on Node. `ws` WebSocketServer, node-redis with one SUBSCRIBE per topic,
// and a JS send loop over Map<topic, Set<socket>>. Speaks Shoal's subscribe/unsubscribe/message subset; no auth,
// services, ordering or throttling.
//
//   PORT=8002 REDIS_URL=redis://127.0.0.1:6400 node bench/peers/node_ws.mjs
import { Buffer } from "node:buffer";
import process from "node:process";
import { createClient } from "redis";
import { WebSocket, WebSocketServer } from "ws";

/** A socket with more than this many bytes waiting to be written is dropped as a slow consumer (as Shoal). */
const MAX_BUFFERED = 8 * 1024 * 1024;
const MAX_PAYLOAD = 64 * 1024;
const INVALID_EVENT = "Messages must be JSON and contain an event field.";

const port = Number(process.env.PORT);
const redisUrl = process.env.REDIS_URL;
if (!Number.isInteger(port) || port <= 0 || !redisUrl) {
  console.error("node_ws: set PORT and REDIS_URL");
  process.exit(2);
}

const subscriber = createClient({ url: redisUrl, RESP: 2, maintNotifications: "disabled" });
subscriber.on("error", (error) => console.error("node_ws: redis:", error.message));
await subscriber.connect();

/** @type {Map<string, { sockets: Set<WebSocket>, ready: Promise<unknown> }>} local subscribers and their SUBSCRIBE */
const topics = new Map();
/** @type {WeakMap<WebSocket, Set<string>>} each socket's subscriptions */
const subscriptions = new WeakMap();

function onRedisMessage(message, channel) {
  const topic = topics.get(channel);
  if (!topic) return;
  let data;
  try {
    data = JSON.parse(message).data;
  } catch {
    return;
  }
  // Encoded to UTF-8 once, not by each send() (ws sends a Buffer as-is; `binary: false` keeps it a text frame).
  const frame = Buffer.from(JSON.stringify({ event: "message", subscription: channel, data }));
  for (const ws of topic.sockets) {
    if (ws.bufferedAmount > MAX_BUFFERED) ws.terminate();
    else ws.send(frame, { binary: false });
  }
}

function reply(ws, frame) {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
}

async function subscribe(ws, name) {
  const mine = subscriptions.get(ws);
  if (mine.has(name)) {
    reply(ws, { event: "subscribe", status: "error", error: "Already subscribed.", subscription: name });
    return;
  }
  mine.add(name);
  let topic = topics.get(name);
  if (topic) topic.sockets.add(ws);
  else topics.set(name, topic = { sockets: new Set([ws]), ready: subscriber.subscribe(name, onRedisMessage) });
  try {
    await topic.ready;
  } catch (error) {
    if (mine.delete(name)) release(ws, name);
    throw error;
  }
  reply(ws, { event: "subscribe", status: "ok", subscription: name });
}

/** Remove one local subscriber; the last one leaves the Redis channel. */
function release(ws, name) {
  const topic = topics.get(name);
  if (!topic) return;
  topic.sockets.delete(ws);
  if (topic.sockets.size > 0) return;
  topics.delete(name);
  subscriber.unsubscribe(name).catch((error) => console.error("node_ws: unsubscribe:", error.message));
}

function unsubscribe(ws, name) {
  if (!subscriptions.get(ws).delete(name)) {
    reply(ws, { event: "unsubscribe", status: "error", error: "Subscription does not exist.", subscription: name });
    return;
  }
  release(ws, name);
  reply(ws, { event: "unsubscribe", status: "ok", subscription: name });
}

function onClientMessage(ws, raw) {
  let frame;
  try {
    frame = JSON.parse(raw.toString());
  } catch {
    reply(ws, { status: "error", error: INVALID_EVENT });
    return;
  }
  const name = frame?.subscription;
  if (typeof name !== "string") {
    reply(ws, { status: "error", error: INVALID_EVENT });
  } else if (frame.event === "subscribe") {
    subscribe(ws, name).catch((error) => {
      reply(ws, { event: "subscribe", status: "error", error: error.message, subscription: name });
    });
  } else if (frame.event === "unsubscribe") {
    unsubscribe(ws, name);
  } else {
    reply(ws, { event: frame.event, status: "error", error: "Event not found." });
  }
}

const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
wss.on("connection", (ws) => {
  subscriptions.set(ws, new Set());
  ws.on("message", (raw) => onClientMessage(ws, raw));
  ws.on("error", () => {});
  ws.on("close", () => {
    for (const name of subscriptions.get(ws)) release(ws, name);
    subscriptions.delete(ws);
  });
});
await new Promise((resolve, reject) => {
  wss.once("listening", resolve);
  wss.once("error", reject);
});

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.terminate();
  await new Promise((resolve) => wss.close(resolve));
  await subscriber.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

console.log(JSON.stringify({ message: "ready", port: wss.address().port }));
