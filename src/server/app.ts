import { getLogger } from "@logtape/logtape";
import { Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import type { UpgradeWebSocket } from "hono/ws";
import type { Router } from "../core/router.ts";
import { parsePublishedMessage, TOO_DEEP } from "../protocol/broker_message.ts";
import { parseJson } from "../protocol/json.ts";
import type { PrometheusMetrics } from "../metrics/metrics.ts";
import type { SocketSupport } from "../runtime/runtime.ts";
import { BufferSweeper, connectionContext, newConnection } from "./connection.ts";

const log = getLogger(["shoal", "server"]);

export interface AppOptions {
  readonly router: Router;
  /** The runtime's WebSocket upgrade helper (`src/runtime/*`). */
  readonly upgradeWebSocket: UpgradeWebSocket;
  /** The runtime's ping, send-buffer and terminate support. */
  readonly socket: SocketSupport;
  /** Serve `GET /metrics` on this app (Prometheus configured without its own port). */
  readonly metrics?: PrometheusMetrics;
}

/**
 * The HTTP surface: the WebSocket endpoint on any path (as SocketShark), `POST /publish`, `/healthz`, `/readyz`.
 * Runtime-free: the runtime passes in its upgrade helper.
 */
export function createApp(options: AppOptions): Hono {
  const { router } = options;
  const app = new Hono();
  const context = connectionContext(router, options.socket, new BufferSweeper());

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", (c) => {
    const body = { status: router.ready ? "ready" : "not ready", broker: router.broker.ready, stopping: router.stopping };
    return c.json(body, router.ready ? 200 : 503);
  });

  if (options.metrics) addMetricsRoute(app, options.metrics);

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
