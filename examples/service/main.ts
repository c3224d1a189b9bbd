/// <reference types="@types/bun" />
/**
 * The example service: run it from the repository root with `bun run examples/service/main.ts`, and Shoal beside it
 * with `bun run main.ts -c examples/service/shoal.config.ts`; then open http://127.0.0.1:8080/.
 *
 * Environment: HOST, PORT (default 127.0.0.1:8080); SHOAL_URL (default http://127.0.0.1:9000); REDIS_URL (publish
 * to Redis instead of through Shoal's POST /publish); SHOAL_PUBLISH_TOKEN (default the config's local token).
 */
import process from "node:process";
import { createApp } from "./app.ts";
import { ChatRooms } from "./chat.ts";
import { pageAssets } from "./page_assets.ts";
import { type Publisher, RedisPublisher, ShoalHttpPublisher } from "./publisher.ts";
import { CHAT_HISTORY, LOCAL_PUBLISH_TOKEN } from "./shoal.config.ts";
import { TicketBook } from "./tickets.ts";

const env = process.env;
const shoalUrl = env.SHOAL_URL ?? "http://127.0.0.1:9000";

const publisher: Publisher = env.REDIS_URL
  ? await RedisPublisher.connect(env.REDIS_URL, { chat: CHAT_HISTORY })
  : new ShoalHttpPublisher(shoalUrl, env.SHOAL_PUBLISH_TOKEN ?? LOCAL_PUBLISH_TOKEN);

const app = createApp({
  tickets: new TicketBook(),
  rooms: new ChatRooms(),
  publisher,
  shoalWsUrl: webSocketUrl(shoalUrl),
  assets: pageAssets,
});

const server = Bun.serve({ hostname: env.HOST ?? "127.0.0.1", port: Number(env.PORT ?? 8080), fetch: app.fetch });
console.log(`example service listening on ${server.url}, publishing through ${publisher.description}`);

/** ws://host:port/ for http://host:port (wss for https): Shoal serves WebSockets on its HTTP port, at any path. */
function webSocketUrl(httpUrl: string): string {
  const url = new URL("/", httpUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, async () => {
    await server.stop();
    await publisher.close();
    process.exit(0);
  });
}
