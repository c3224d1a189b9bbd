import { getLogger } from "@logtape/logtape";
import type { Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import type { Router } from "../core/router.ts";
import { parsePublishedMessage, TOO_DEEP } from "../protocol/broker_message.ts";
import { parseJson } from "../protocol/json.ts";

const log = getLogger(["shoal", "server"]);

/**
 * `POST /publish` (README, "Publishing"): the JSON a service would PUBLISH to Redis, one message or an array, under
 * the `publish.token` bearer token; 404 when no token is configured. The admin API will sit beside it.
 */
export function addPublishRoute(app: Hono, router: Router): void {
  const publish = router.config.publish;
  if (publish.token) {
    app.post(
      "/publish",
      bearerAuth({
        token: publish.token,
        noAuthenticationHeader: { message: { status: "error", error: "Missing bearer token." } },
        invalidAuthenticationHeader: { message: { status: "error", error: "Invalid Authorization header." } },
        invalidToken: { message: { status: "error", error: "Invalid bearer token." } },
      }),
      bodyLimit({
        maxSize: publish.maxBodyBytes,
        onError: (c) => c.json({ status: "error", error: `Body larger than ${publish.maxBodyBytes} bytes.` }, 413),
      }),
      async (c) => {
        // A body that cannot be read (malformed chunks, a client gone mid-body) is answered 400 by `app.onError`.
        const json = parseJson(await c.req.text());
        if (!json.ok) {
          const error = json.reason === "too deep"
            ? `Body must not be ${TOO_DEEP}.`
            : "Body must be JSON: a message object or an array of them.";
          return c.json({ status: "error", error }, 400);
        }
        const body = json.value;
        const messages = Array.isArray(body) ? body : [body];
        const problems: string[] = [];
        messages.forEach((message, i) => {
          const parsed = parsePublishedMessage(message);
          if (!parsed.ok) problems.push(Array.isArray(body) ? `[${i}]: ${parsed.reason}` : parsed.reason);
        });
        if (problems.length > 0) return c.json({ status: "error", error: "Invalid message.", problems }, 400);
        if (!router.broker.ready) return c.json({ status: "error", error: "Broker not connected." }, 503);
        try {
          // Each message goes to the channel named by its subscription, exactly as a service would PUBLISH it.
          for (const message of messages as { subscription: string }[]) {
            await router.broker.publish(message.subscription, JSON.stringify(message));
          }
        } catch (error) {
          log.error("publish failed", { error: String(error) });
          return c.json({ status: "error", error: "Broker publish failed." }, 503);
        }
        return c.json({ status: "ok", published: messages.length });
      },
    );
  } else {
    app.post("/publish", (c) =>
      c.json({ status: "error", error: "The publish API is disabled: set publish.token in the config." }, 404));
  }
}
