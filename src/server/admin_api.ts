import { getLogger } from "@logtape/logtape";
import type { Context, Hono, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import type { Control, SessionTarget } from "../core/control.ts";
import type { AdminCommand } from "../core/observer.ts";
import type { Router } from "../core/router.ts";
import { TOO_DEEP } from "../protocol/broker_message.ts";
import { PresenceErrors } from "../protocol/errors.ts";
import { parseJson } from "../protocol/json.ts";
import { utf8Exceeds } from "../protocol/utf8.ts";
import { publishHandlers } from "./publish_api.ts";

const log = getLogger(["shoal", "admin"]);

/** Largest body of `POST /admin/disconnect` and `/admin/unsubscribe` (`/admin/publish` takes `publish.maxBodyBytes`). */
export const MAX_COMMAND_BYTES = 64 * 1024;

/** Longest session id a command may name (ids are short: node id, dash, counter). */
const MAX_SESSION_ID = 256;

const DISABLED = "The admin API is disabled: set admin.token in the config.";

/** The paths of the admin API and the method each takes. */
const ENDPOINTS: Readonly<Record<string, "GET" | "POST">> = {
  "/admin/info": "GET",
  "/admin/channels": "GET",
  "/admin/presence": "GET",
  "/admin/disconnect": "POST",
  "/admin/unsubscribe": "POST",
  "/admin/publish": "POST",
};

/**
 * The admin API (extension E4, docs/protocol.md §17): `/admin/*` under the `admin.token` bearer token, compared in
 * constant time (hono's `bearerAuth` compares SHA-256 digests, then the strings, without an early exit); any failure
 * is 401. Every node acts: commands go through `control` to all nodes sharing the broker. Without a token every
 * `/admin/*` request is 404, except WebSocket upgrades, which stay the WebSocket endpoint they were (any path is).
 */
export function addAdminRoutes(app: Hono, router: Router, control: Control | undefined): void {
  const token = router.config.admin.token;
  if (!token) {
    app.all("/admin/*", async (c, next) => {
      if (c.req.header("upgrade")?.toLowerCase() === "websocket") return await next();
      return c.json({ status: "error", error: DISABLED }, 404);
    });
    return;
  }
  if (!control) throw new Error("admin.token is set but no control module was given to the app");
  const unauthorized = (error: string) => (c: Context) => c.json({ status: "error", error }, 401);
  app.use(
    "/admin/*",
    bearerAuth({
      token,
      noAuthenticationHeader: { message: unauthorized("Missing bearer token.") },
      // A malformed header is a wrong token too: 401, where POST /publish answers 400.
      invalidAuthenticationHeader: { message: unauthorized("Invalid Authorization header.") },
      invalidToken: { message: unauthorized("Invalid bearer token.") },
    }),
  );
  const counted = (command: AdminCommand): MiddlewareHandler => async (_c, next) => {
    router.observer.adminCommand?.(command);
    await next();
  };
  const limit = bodyLimit({
    maxSize: MAX_COMMAND_BYTES,
    onError: (c) => c.json({ status: "error", error: `Body larger than ${MAX_COMMAND_BYTES} bytes.` }, 413),
  });

  app.get("/admin/info", counted("info"), (c) => c.json({ status: "ok", nodes: control.info() }));
  app.get("/admin/channels", counted("channels"), (c) => {
    const prefix = c.req.query("prefix") ?? "";
    return c.json({ status: "ok", channels: control.channels(prefix) });
  });
  app.get("/admin/presence", counted("presence"), async (c) => {
    const subscription = c.req.query("subscription");
    const problem = subscriptionProblem(router, subscription);
    if (problem) return c.json({ status: "error", error: problem }, 400);
    if (!router.broker.ready) return c.json({ status: "error", error: "Broker not connected." }, 503);
    let data;
    try {
      data = await router.presence(subscription!);
    } catch (error) {
      log.error("admin presence failed", { subscription, error: String(error) });
      return c.json({ status: "error", error: "Presence could not be read." }, 503);
    }
    if (!data) return c.json({ status: "error", error: PresenceErrors.notEnabled }, 400);
    return c.json({ status: "ok", data });
  });
  app.post("/admin/disconnect", counted("disconnect"), limit, (c) =>
    command(c, router, targetOf, async (target) => {
      await control.disconnect(target);
      log.info("admin disconnect", describe(target));
    }));
  app.post("/admin/unsubscribe", counted("unsubscribe"), limit, (c) =>
    command(c, router, (body) => {
      const target = targetOf(body);
      if (typeof target === "string") return target;
      const subscription = body.subscription;
      return subscriptionProblem(router, subscription) ?? { target, subscription: subscription as string };
    }, async ({ target, subscription }) => {
      await control.unsubscribe(target, subscription);
      log.info("admin unsubscribe", { ...describe(target), subscription });
    }));
  const publish = publishHandlers(router);
  app.post("/admin/publish", counted("publish"), publish.limit, publish.handler);

  // Anything else under /admin (the token was right): a plain answer rather than the WebSocket endpoint's 426.
  app.all("/admin/*", (c) => {
    const method = ENDPOINTS[c.req.path];
    if (method === undefined) {
      return c.json({ status: "error", error: `No such admin endpoint: ${Object.keys(ENDPOINTS).join(", ")}.` }, 404);
    }
    c.header("Allow", method);
    return c.json({ status: "error", error: `Method not allowed: use ${method}.` }, 405);
  });
}

/**
 * A command with a JSON object body: `parse` reads it (a string is the problem: 400), `run` carries it out (then 200
 * `{"status":"ok"}`). A broker that is down or refuses the command's message is 503: then no node acted on it.
 */
async function command<T>(
  c: Context,
  router: Router,
  parse: (body: Readonly<Record<string, unknown>>) => T | string,
  run: (parsed: T) => Promise<void>,
): Promise<Response> {
  // A body that cannot be read (malformed chunks, a client gone mid-body) is answered 400 by `app.onError`.
  const json = parseJson(await c.req.text());
  if (!json.ok) {
    const error = json.reason === "too deep" ? `Body must not be ${TOO_DEEP}.` : "Body must be a JSON object.";
    return c.json({ status: "error", error }, 400);
  }
  const body = json.value;
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return c.json({ status: "error", error: "Body must be a JSON object." }, 400);
  }
  const parsed = parse(body as Record<string, unknown>);
  if (typeof parsed === "string") return c.json({ status: "error", error: parsed }, 400);
  if (!router.broker.ready) return c.json({ status: "error", error: "Broker not connected." }, 503);
  try {
    await run(parsed);
  } catch (error) {
    log.error("admin command not published", { path: c.req.path, error: String(error) });
    return c.json({ status: "error", error: "Broker publish failed." }, 503);
  }
  return c.json({ status: "ok" });
}

/** Why a value is not a subscription name a command can take, or undefined. */
function subscriptionProblem(router: Router, subscription: unknown): string | undefined {
  const max = router.config.limits.maxSubscriptionLength;
  if (typeof subscription === "string" && subscription !== "" && subscription.isWellFormed() && !utf8Exceeds(subscription, max)) {
    return undefined;
  }
  return `subscription must be a subscription name (a string of 1 to ${max} bytes).`;
}

/** The sessions a command body names: `auth` (an object of at least one field) or `session` (an id), not both. */
function targetOf(body: Readonly<Record<string, unknown>>): SessionTarget | string {
  const hasAuth = Object.hasOwn(body, "auth");
  if (hasAuth === Object.hasOwn(body, "session")) return "Give either auth or session.";
  if (!hasAuth) {
    const session = body.session;
    if (typeof session !== "string" || session === "" || session.length > MAX_SESSION_ID) {
      return "session must be a session id (a non-empty string, as on the session's log lines).";
    }
    return { session };
  }
  const auth = body.auth;
  // An empty object would name every session, anonymous ones included: refused, not a way to disconnect everyone.
  if (auth === null || typeof auth !== "object" || Array.isArray(auth) || Object.keys(auth).length === 0) {
    return "auth must be an object of at least one auth field.";
  }
  return { auth: auth as Record<string, unknown> };
}

/** A command's target for a log line: the session id, or the auth field names (never their values). */
function describe(target: SessionTarget): Record<string, unknown> {
  return "session" in target ? { target_session: target.session } : { auth_fields: Object.keys(target.auth) };
}
