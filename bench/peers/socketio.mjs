// Peer "socketio": Socket.IO 4 as its docs set it up for many processes: WebSocket transport only, the Redis
// adapter over node-redis, rooms named after the subscription. Services publish with @socket.io/redis-emitter
// (see publish.ts); the adapter receives every broadcast on one PSUBSCRIBE and delivers to the room's sockets.
//
//   PORT=8003 REDIS_URL=redis://127.0.0.1:6400 node bench/peers/socketio.mjs
//
// Client: socket.io-client with `transports: ["websocket"]`, `emit("subscribe", name, ack)` → ack `{status: "ok"}`,
// then `"message"` events carrying `{subscription, data}`; `emit("unsubscribe", name, ack)` leaves the room.
import { createServer } from "node:http";
import process from "node:process";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

const port = Number(process.env.PORT);
const redisUrl = process.env.REDIS_URL;
if (!Number.isInteger(port) || port <= 0 || !redisUrl) {
  console.error("socketio: set PORT and REDIS_URL");
  process.exit(2);
}

const pubClient = createClient({ url: redisUrl, RESP: 2, maintNotifications: "disabled" });
const subClient = pubClient.duplicate();
for (const client of [pubClient, subClient]) {
  client.on("error", (error) => console.error("socketio: redis:", error.message));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, { transports: ["websocket"], perMessageDeflate: false, serveClient: false });
io.adapter(createAdapter(pubClient, subClient));
// The adapter issues its PSUBSCRIBE without returning a promise. Redis answers a connection's commands in order,
// so once a later SUBSCRIBE on the same connection is confirmed, so is the adapter's: then the peer is ready.
const BARRIER_CHANNEL = "shoal-bench:socketio-ready";
await subClient.subscribe(BARRIER_CHANNEL, () => {});
await subClient.unsubscribe(BARRIER_CHANNEL);

io.on("connection", (socket) => {
  socket.on("subscribe", async (name, ack) => {
    if (typeof name !== "string") return ack?.({ status: "error", error: "Invalid subscription format." });
    await socket.join(name);
    ack?.({ status: "ok" });
  });
  socket.on("unsubscribe", async (name, ack) => {
    if (typeof name !== "string") return ack?.({ status: "error", error: "Invalid subscription format." });
    await socket.leave(name);
    ack?.({ status: "ok" });
  });
});

await new Promise((resolve, reject) => {
  httpServer.once("error", reject);
  httpServer.listen(port, "127.0.0.1", resolve);
});

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  // Disconnects every client, closes the adapter (its UNSUBSCRIBEs) and the HTTP server.
  await io.close();
  await Promise.all([pubClient.close(), subClient.close()]);
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

console.log(JSON.stringify({ message: "ready", port: httpServer.address().port }));
