/**
 * Shoal's config for the example service (examples/service/main.ts): run it from the repository root with
 * `bun run main.ts -c examples/service/shoal.config.ts`.
 *
 * Environment: EXAMPLE_SERVICE_URL (where the service listens, default http://127.0.0.1:8080), REDIS_URL (Redis
 * instead of the in-process broker; give the service the same one), SHOAL_PUBLISH_TOKEN (read by Shoal itself).
 */
import process from "node:process";
import type { ConfigInput } from "../../src/config.ts";

/** The chat history Shoal keeps per room, so a client that reconnects recovers what it missed. */
export const CHAT_HISTORY = { size: 100, ttl: 3600 } as const;

/**
 * The publish token when SHOAL_PUBLISH_TOKEN is unset. It is printed here, so it is no secret: Shoal refuses it
 * on any address but loopback. Anywhere else set SHOAL_PUBLISH_TOKEN (e.g. `openssl rand -hex 32`) for both.
 */
export const LOCAL_PUBLISH_TOKEN = "change-me";

/** The config for a service at `serviceUrl` (its callbacks, and the origin of its page). */
export function exampleConfig(options: { serviceUrl: string; redisUrl?: string }): ConfigInput {
  const callback = (path: string) => new URL(path, options.serviceUrl).href;
  return {
    ws: {
      port: 9000, // host: 127.0.0.1 by default, this machine only
      // Browsers may connect only from the service's page (cross-site WebSocket hijacking).
      allowedOrigins: pageOrigins(options.serviceUrl),
    },
    // The service is on this machine: fail fast rather than keep a client waiting through the default 51 s.
    http: { timeout: 5, tries: 2, wait: 1 },
    authentication: {
      // {"event":"auth","ticket":T} → POST {"ticket":T}; the answer's user_id and session_id become the identity.
      ticket: { validationUrl: callback("/shoal/ticket"), authFields: ["user_id", "session_id"] },
    },
    services: {
      // chat.<room>: anyone logged in; a snapshot on subscribe; messages go through the service (on_message).
      chat: {
        authorizer: callback("/shoal/chat/authorize"),
        beforeSubscribe: callback("/shoal/chat/before_subscribe"),
        onSubscribe: callback("/shoal/chat/on_subscribe"),
        onMessage: callback("/shoal/chat/on_message"),
        beforeUnsubscribe: callback("/shoal/chat/before_unsubscribe"),
        onUnsubscribe: callback("/shoal/chat/on_unsubscribe"),
        // A message published with "user_id": "bob" reaches only bob's subscriptions (whispers).
        filterFields: ["user_id"],
        history: CHAT_HISTORY,
      },
      // user.<user_id>: each user's own notices; a message with "session_id" reaches only that connection.
      user: {
        authorizer: callback("/shoal/user/authorize"),
        filterFields: ["session_id"],
      },
    },
    broker: options.redisUrl ? { kind: "redis", url: options.redisUrl } : { kind: "memory" },
    // SHOAL_PUBLISH_TOKEN, when set, overrides this (Shoal reads it itself).
    publish: { token: LOCAL_PUBLISH_TOKEN },
    // Watch the frames at http://127.0.0.1:9000/console.
    console: { enabled: true },
  };
}

/** The origins a browser shows for the page at `serviceUrl`: as given, and as localhost or 127.0.0.1. */
function pageOrigins(serviceUrl: string): string[] {
  const url = new URL(serviceUrl);
  const origins = new Set([url.origin]);
  for (const alias of ["localhost", "127.0.0.1"]) {
    if (url.hostname === "localhost" || url.hostname === "127.0.0.1") {
      url.hostname = alias;
      origins.add(url.origin);
    }
  }
  return [...origins];
}

export default exampleConfig({
  serviceUrl: process.env.EXAMPLE_SERVICE_URL ?? "http://127.0.0.1:8080",
  redisUrl: process.env.REDIS_URL,
});
