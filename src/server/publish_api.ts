import { getLogger } from "@logtape/logtape";
import type { Handler, Hono, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import type { HistoryOptions } from "../broker/broker.ts";
import type { Config } from "../config.ts";
import type { Router } from "../core/router.ts";
import { parsePublishedMessage, TOO_DEEP } from "../protocol/broker_message.ts";
import { jsonDepthExceeds, MAX_JSON_DEPTH, parseJson } from "../protocol/json.ts";
import { CONTROL_CHANNEL } from "../core/control_message.ts";

const log = getLogger(["shoal", "server"]);

/**
 * `POST /publish` (README, "Publishing"): the JSON a service would PUBLISH to Redis, one message or an array, under
 * the `publish.token` bearer token; 404 when no token is configured. `POST /admin/publish` is the same under the
 * admin token (`admin_api.ts`).
 */
export function addPublishRoute(app: Hono, router: Router): void {
  const publish = router.config.publish;
  if (publish.token) {
    const { limit, handler } = publishHandlers(router);
    app.post(
      "/publish",
      bearerAuth({
        token: publish.token,
        noAuthenticationHeader: { message: { status: "error", error: "Missing bearer token." } },
        invalidAuthenticationHeader: { message: { status: "error", error: "Invalid Authorization header." } },
        invalidToken: { message: { status: "error", error: "Invalid bearer token." } },
      }),
      limit,
      handler,
    );
  } else {
    app.post("/publish", (c) =>
      c.json({ status: "error", error: "The publish API is disabled: set publish.token in the config." }, 404));
  }
}

/**
 * What publishing does once the caller's token was checked: the body limit (`publish.maxBodyBytes`), then
 * validation and the broker. Shared by `POST /publish` and `POST /admin/publish`.
 */
export function publishHandlers(router: Router): { readonly limit: MiddlewareHandler; readonly handler: Handler } {
  const publish = router.config.publish;
  return {
    limit: bodyLimit({
      maxSize: publish.maxBodyBytes,
      onError: (c) => c.json({ status: "error", error: `Body larger than ${publish.maxBodyBytes} bytes.` }, 413),
    }),
    handler: async (c) => {
      // A body that cannot be read (malformed chunks, a client gone mid-body) is answered 400 by `app.onError`.
      const text = await c.req.text();
      const json = parseJson(text);
      if (!json.ok) {
        const error = json.reason === "too deep"
          ? `Body must not be ${TOO_DEEP}.`
          : "Body must be JSON: a message object or an array of them.";
        return c.json({ status: "error", error }, 400);
      }
      const body = json.value;
      const messages = Array.isArray(body) ? body : [body];
      // Live, a history message travels inside an envelope one level deeper; in an array body the array's own level
      // already leaves room for it, so only a single message can be one level too deep (read off the text once).
      const tooDeepForHistory = !Array.isArray(body) && jsonDepthExceeds(text, MAX_JSON_DEPTH - 1);
      const problems: string[] = [];
      messages.forEach((message, i) => {
        const parsed = parsePublishedMessage(message);
        const problem = parsed.ok
          ? messageProblem(router.config, message as Record<string, unknown>, tooDeepForHistory)
          : parsed.reason;
        if (problem) problems.push(Array.isArray(body) ? `[${i}]: ${problem}` : problem);
      });
      if (problems.length > 0) return c.json({ status: "error", error: "Invalid message.", problems }, 400);
      if (!router.broker.ready) return c.json({ status: "error", error: "Broker not connected." }, 503);
      const positions: ({ offset: number; epoch: string; duplicate?: true } | null)[] = [];
      try {
        // Each message goes to the channel named by its subscription, exactly as a service would PUBLISH it; a
        // history service's is appended to its history in the same step (extension E1).
        for (const message of messages as Record<string, unknown>[]) {
          const channel = message.subscription as string;
          const history = historyOf(router.config, channel);
          if (!history) {
            await router.broker.publish(channel, JSON.stringify(message));
            positions.push(null);
            continue;
          }
          const { idempotency_key: idempotencyKey, ...stored } = message;
          const started = performance.now();
          const appended = await router.broker.append(channel, JSON.stringify(stored), {
            ...history,
            idempotencyKey: idempotencyKey as string | undefined,
          });
          router.observer.historyAppend?.((performance.now() - started) / 1000);
          positions.push({ offset: appended.offset, epoch: appended.epoch, ...(appended.duplicate ? { duplicate: true } : {}) });
        }
      } catch (error) {
        log.error("publish failed", { error: String(error) });
        return c.json({ status: "error", error: "Broker publish failed." }, 503);
      }
      // Positions only when some message went to a history: a SocketShark publisher sees the answer it knew.
      if (positions.every((p) => p === null)) return c.json({ status: "ok", published: messages.length });
      return c.json({ status: "ok", published: messages.length, positions });
    },
  };
}

/** The history settings of the service a subscription name belongs to (split at the first dot), if it has any. */
function historyOf(config: Config, subscription: string): HistoryOptions | undefined {
  const dot = subscription.indexOf(".");
  const name = subscription.slice(0, dot);
  return dot > 0 && Object.hasOwn(config.services, name) ? config.services[name].history : undefined;
}

/** Longest `idempotency_key`, in UTF-16 code units. */
const MAX_IDEMPOTENCY_KEY = 256;

/**
 * What a parsed message may still not be: a subscription name no client could subscribe to (a lone surrogate would
 * share a channel with U+FFFD), a history message nested so deep that its envelope could not be delivered, or a
 * bad `idempotency_key`.
 */
function messageProblem(config: Config, message: Record<string, unknown>, tooDeepForHistory: boolean): string | undefined {
  const subscription = message.subscription as string;
  if (!subscription.isWellFormed()) return "subscription must be well-formed text (no lone surrogates)";
  if (subscription === CONTROL_CHANNEL) return "subscription must not be Shoal's control channel";
  if (!historyOf(config, subscription)) return undefined;
  if (tooDeepForHistory) {
    return `a history message must not be nested deeper than ${MAX_JSON_DEPTH - 1} levels`;
  }
  if (!Object.hasOwn(message, "idempotency_key")) return undefined;
  const key = message.idempotency_key;
  if (typeof key === "string" && key.length > 0 && [...key].length <= MAX_IDEMPOTENCY_KEY && key.isWellFormed()) {
    return undefined;
  }
  return `idempotency_key must be a string of 1 to ${MAX_IDEMPOTENCY_KEY} characters`;
}
