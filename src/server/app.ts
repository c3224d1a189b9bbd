import { getLogger } from "@logtape/logtape";
import { Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import type { UpgradeWebSocket, WSContext } from "hono/ws";
import type { Router } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import { parsePublishedMessage } from "../protocol/broker_message.ts";
import { CloseCodes } from "../protocol/close_codes.ts";

const log = getLogger(["shoal", "server"]);

export interface AppOptions {
  readonly router: Router;
  /** The runtime's WebSocket upgrade helper (`src/runtime/*`). */
  readonly upgradeWebSocket: UpgradeWebSocket;
}

/**
 * The HTTP surface: the WebSocket endpoint on any path (as SocketShark), `POST /publish`, `/healthz`, `/readyz`.
 * Runtime-free: the runtime passes in its upgrade helper.
 */
export function createApp(options: AppOptions): Hono {
  const { router } = options;
  const app = new Hono();

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", (c) => {
    const body = { status: router.ready ? "ready" : "not ready", broker: router.broker.ready, stopping: router.stopping };
    return c.json(body, router.ready ? 200 : 503);
  });

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
        let body: unknown;
        try {
          body = JSON.parse(await c.req.text());
        } catch {
          return c.json({ status: "error", error: "Body must be JSON: a message object or an array of them." }, 400);
        }
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
    options.upgradeWebSocket(() => connectionEvents(router)),
    (c) => c.json({ status: "error", error: "Upgrade Required: this is a WebSocket endpoint." }, 426),
  );
  return app;
}

/**
 * The events of one WebSocket connection. Every handler catches: on Deno an exception in a WebSocket handler
 * would end the process. State lives in this closure, created once per connection on both runtimes.
 */
function connectionEvents(router: Router) {
  let session: Session | undefined;
  const maxBytes = router.config.ws.maxMessageBytes;
  return {
    onOpen(_event: Event, ws: WSContext) {
      try {
        const raw = ws;
        session = router.connect({
          send(text) {
            try {
              if (raw.readyState === 1) raw.send(text);
            } catch (error) {
              log.debug("attempted to send to closed socket", { error: String(error) });
            }
          },
          close(code, reason) {
            try {
              raw.close(code, reason);
            } catch (error) {
              log.debug("connection already closing", { error: String(error) });
            }
          },
        });
        if (!session) raw.close(CloseCodes.normal, "");
      } catch (error) {
        log.error("unhandled error in open handler", { error: String(error) });
      }
    },
    onMessage(event: MessageEvent, _ws: WSContext) {
      try {
        if (!session) return;
        const data = event.data as string | ArrayBuffer | Uint8Array | Blob;
        if (data instanceof Blob) return; // binaryType is arraybuffer on both runtimes; a Blob never arrives
        if (exceeds(data, maxBytes)) {
          void session.close(CloseCodes.messageTooBig, "message too big");
          return;
        }
        session.receive(data);
      } catch (error) {
        log.error("unhandled error in consumer handler", { error: String(error) });
      }
    },
    onClose() {
      session?.disconnected().catch((error) => log.error("teardown failed", { error: String(error) }));
    },
    onError(event: Event) {
      log.debug("websocket error", { error: String((event as ErrorEvent).message ?? event.type) });
    },
  };
}

const encoder = new TextEncoder();

/** Whether a frame is over the byte limit, encoding it only when its length leaves the answer open. */
function exceeds(data: string | ArrayBuffer | Uint8Array, max: number): boolean {
  if (typeof data !== "string") return data.byteLength > max;
  if (data.length > max) return true;
  if (data.length * 3 <= max) return false;
  return encoder.encode(data).byteLength > max;
}
