import { getLogger } from "@logtape/logtape";
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { UpgradeWebSocket } from "hono/ws";
import type { Control } from "../core/control.ts";
import type { RefusalReason } from "../core/observer.ts";
import type { Router } from "../core/router.ts";
import { debugEnabled } from "../log.ts";
import { LimitErrors } from "../protocol/errors.ts";
import type { PrometheusMetrics } from "../metrics/metrics.ts";
import type { SocketSupport } from "../runtime/runtime.ts";
import { BufferSweeper, connectionContext, newConnection } from "./connection.ts";
import { OriginPolicy } from "./origin_policy.ts";
import { addAdminRoutes } from "./admin_api.ts";
import { addConsoleRoute } from "./console.ts";
import { addPublishRoute } from "./publish_api.ts";
import { upgradeProblem } from "./upgrade_request.ts";

const log = getLogger(["shoal", "server"]);

export interface AppOptions {
  readonly router: Router;
  /** The runtime's WebSocket upgrade helper (`src/runtime/*`). */
  readonly upgradeWebSocket: UpgradeWebSocket;
  /** The runtime's ping, send-buffer and terminate support. */
  readonly socket: SocketSupport;
  /** Serve `GET /metrics` on this app (Prometheus configured without its own port). */
  readonly metrics?: PrometheusMetrics;
  /** The admin API's link to every node (built when `admin.token` is set). */
  readonly control?: Control;
}

/**
 * The HTTP surface: the WebSocket endpoint on any path (as SocketShark), `POST /publish`, `/admin/*`, `/healthz`,
 * `/readyz`.
 * Runtime-free: the runtime passes in its upgrade helper.
 */
export function createApp(options: AppOptions): Hono {
  const { router } = options;
  const app = new Hono();
  const context = connectionContext(router, options.socket, new BufferSweeper());
  // A bug in a handler is logged as one JSON line, and the client gets JSON: never a stack trace on stderr.
  app.onError((error, c) => {
    // Hono's own answers (the bearer check's 401s) travel as HTTPExceptions.
    if (error instanceof HTTPException) return error.getResponse();
    // A request body the runtime could not read (a malformed chunked body) carries status 400; one cut off because
    // the client or the runtime closed the connection is an AbortError. Neither is a bug.
    if ((error as { status?: unknown }).status === 400 || error.name === "AbortError") {
      log.info("request body could not be read", { path: c.req.path, error: String(error) });
      return c.json({ status: "error", error: "Body could not be read." }, 400);
    }
    log.error("unhandled error in HTTP handler", { path: c.req.path, error });
    return c.json({ status: "error", error: "Internal server error." }, 500);
  });

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", (c) => {
    const body = { status: router.ready ? "ready" : "not ready", broker: router.broker.ready, stopping: router.stopping };
    return c.json(body, router.ready ? 200 : 503);
  });

  if (options.metrics) addMetricsRoute(app, options.metrics);
  else {
    // A scraper pointed here gets a plain "not here" rather than the WebSocket endpoint's 426.
    app.get("/metrics", async (c, next) => {
      if (c.req.header("upgrade")?.toLowerCase() === "websocket") return await next();
      const where = router.config.metrics.prometheus ? "on metrics.prometheus.port" : "off (metrics.prometheus)";
      return c.json({ status: "error", error: `Not found: metrics are ${where}.` }, 404);
    });
  }

  addPublishRoute(app, router);
  addAdminRoutes(app, router, options.control);
  addConsoleRoute(app, router.config.console.enabled);

  app.get("*", upgradeGate(router));
  app.get(
    "*",
    options.upgradeWebSocket(
      () => newConnection(context),
      options.socket.upgradeOptions(router.config.ws.ping),
    ),
    (c) => c.json({ status: "error", error: "Upgrade Required: this is a WebSocket endpoint." }, 426),
  );
  return app;
}

/**
 * What an upgrade request must pass before the runtime upgrades it: a well-formed RFC 6455 request (400/426),
 * an allowed origin (403), a server that is not shutting down and has room (503). Requests that do not ask for
 * a WebSocket pass on to the "Upgrade Required" answer.
 */
function upgradeGate(router: Router): MiddlewareHandler {
  const { ws, limits } = router.config;
  const origins = ws.allowedOrigins ? new OriginPolicy(ws.allowedOrigins) : undefined;
  const refuse = (c: Context, reason: RefusalReason, status: 400 | 403 | 426 | 503, error: string) => {
    router.observer.refused?.(reason);
    if (debugEnabled()) log.debug("upgrade refused", { reason, status });
    return c.json({ status: "error", error }, status);
  };
  return async (c, next) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return await next();
    if (c.req.method !== "GET") return refuse(c, "bad_upgrade", 400, "A WebSocket upgrade must be a GET request.");
    const problem = upgradeProblem((name) => c.req.header(name));
    if (problem?.status === 426) {
      c.header("Sec-WebSocket-Version", "13");
      return refuse(c, "websocket_version", 426, problem.error);
    }
    if (problem) return refuse(c, "bad_upgrade", problem.status, problem.error);
    if (origins && !origins.allows(c.req.header("origin"))) {
      return refuse(c, "origin", 403, LimitErrors.originNotAllowed);
    }
    // From the first signal on, a load balancer must send new clients elsewhere (readyz says not ready too).
    if (router.stopping) return refuse(c, "shutting_down", 503, "Shutting down.");
    if (limits.maxConnections > 0 && router.sessionCount >= limits.maxConnections) {
      return refuse(c, "connections", 503, LimitErrors.tooManyConnections);
    }
    await next();
  };
}

/** `GET /metrics` in the Prometheus text format. */
export function addMetricsRoute(app: Hono, metrics: PrometheusMetrics): Hono {
  return app.get("/metrics", async (c) => c.body(await metrics.render(), 200, { "content-type": metrics.contentType }));
}

/** The separate metrics listener (`metrics.prometheus.port`), as SocketShark's: `/metrics` and a page linking it. */
export function createMetricsApp(metrics: PrometheusMetrics): Hono {
  const app = addMetricsRoute(new Hono(), metrics);
  app.get("/", (c) => c.html('<html><body><a href="/metrics">Metrics</a></body></html>'));
  return app;
}
