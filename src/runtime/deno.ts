/// <reference lib="deno.ns" />
import { getLogger } from "@logtape/logtape";
import type { Hono } from "hono";
import { defineWebSocketHelper, type UpgradeWebSocket, WSContext } from "hono/ws";
import {
  type DenoFetch,
  DenoHttpServer,
  type DenoKeepAlive,
  denoKeepAlive,
  type DenoRequestEnv,
  type DenoServerOptions,
  watchKeepAlive,
} from "./deno_server.ts";
import type { Listener, Runtime, ServeOptions, SocketSupport } from "./runtime.ts";

const log = getLogger(["shoal", "runtime"]);

/** What the adapter uses of Deno and of the global scope: the real ones for `runtime`, fakes in the unit tests. */
export interface DenoHost {
  readonly Deno: Pick<
    typeof Deno,
    | "upgradeWebSocket"
    | "version"
    | "readTextFile"
    | "addSignalListener"
    | "removeSignalListener"
    | "exit"
    | "createHttpClient"
  >;
  /** Where uncaught exceptions and unhandled rejections are dispatched (`globalThis`). */
  readonly global: Pick<typeof globalThis, "addEventListener">;
  /** Start Shoal's HTTP server (`DenoHttpServer`). */
  listen(fetch: DenoFetch, options: DenoServerOptions): Pick<DenoHttpServer, "port" | "stop">;
}

/** What `socket.upgradeOptions` gives the upgrade helper: Deno's options and Shoal's keep-alive. */
type UpgradeOptions = DenoKeepAlive | undefined;

/**
 * Hono's `hono/deno` helper, except that the `Upgrade` header is matched without regard to case (the stock one
 * answers 404 to `Upgrade: WebSocket`), the connection comes from Shoal's own server (`env.upgrade`), and a request
 * Deno refuses to upgrade gets a 400 JSON answer rather than a 500 (Deno throws on a missing key or
 * `Connection: Upgrade`).
 */
const upgradeHelper = (deno: DenoHost["Deno"]): UpgradeWebSocket =>
  defineWebSocketHelper((c, events, options) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return;
    const keepAlive = options as UpgradeOptions;
    const handoff = (c.env as DenoRequestEnv | undefined)?.upgrade;
    const protocol = c.req.header("sec-websocket-protocol")?.split(",")[0]?.trim();
    let upgraded: Deno.WebSocketUpgrade;
    try {
      upgraded = deno.upgradeWebSocket(c.req.raw, {
        ...(protocol ? { protocol } : {}),
        idleTimeout: keepAlive?.idleTimeout ?? 0,
        ...(handoff ? { socket: handoff.socket as never, head: handoff.head } : {}),
      });
    } catch (error) {
      log.debug("websocket upgrade refused", { error: String(error) });
      return c.json({ status: "error", error: "Invalid WebSocket upgrade request." }, 400);
    }
    const { response, socket } = upgraded;
    // Before the handlers below, so the server sees the close event first.
    handoff?.adopt(socket, keepAlive);
    socket.binaryType = "arraybuffer";
    const context = new WSContext({
      close: (code, reason) => socket.close(code, reason),
      get protocol() {
        return socket.protocol;
      },
      raw: socket,
      get readyState() {
        return socket.readyState as 0 | 1 | 2 | 3;
      },
      url: socket.url ? new URL(socket.url) : null,
      send: (source) => socket.send(source),
    });
    socket.onopen = (event) => events.onOpen?.(event, context);
    socket.onmessage = (event) => events.onMessage?.(event, context);
    socket.onclose = (event) => events.onClose?.(event, context);
    socket.onerror = (event) => events.onError?.(event, context);
    return response;
  });

/**
 * Deno's server WebSocket has no ping() and no pong event. Its `idleTimeout` is its only keep-alive: after
 * `idleTimeout / 2` seconds without a frame from the client it pings, and if nothing arrives in another
 * `idleTimeout / 2` it closes with 1001 "No response from ping frame.". Shoal sets it so Deno pings after
 * `interval` seconds of silence and closes the connection itself (1000, through the connection's `pingTimedOut`)
 * after `interval + timeout` of silence, before Deno would (see `denoKeepAlive`).
 */
const socket: SocketSupport = {
  upgradeOptions: (ping) => denoKeepAlive(ping),
  watchKeepAlive: (raw, peer) => void watchKeepAlive(raw as WebSocket, peer),
  send(raw, text) {
    // Throws before the socket is open (the connection catches it) and drops the frame once it is closing (Deno 2.9):
    // checking `readyState` first would cost every send. `bufferedAmount` is an op call, as dear as a fifth of the
    // send: the connection reads it every few sends instead.
    (raw as WebSocket).send(text);
    return true;
  },
  close: (raw, code, reason) => (raw as WebSocket).close(code, reason),
  bufferedAmount: (raw) => (raw as WebSocket).bufferedAmount,
};

function serve(listen: DenoHost["listen"], app: Hono, options: ServeOptions): Listener {
  const server = listen((request, env) => app.fetch(request, env), {
    hostname: options.host,
    port: options.port,
    tls: options.tls,
    handshakeTimeoutMs: options.handshakeTimeout * 1000,
    onRefused: options.onRefused,
  });
  return {
    port: server.port,
    // The router has closed every session: this stops accepting, ends HTTP connections and waits (at most
    // CLOSE_WAIT_MS) for the WebSockets' close handshakes, so the close frames are out before the process exits.
    stop: () => server.stop(),
  };
}

/**
 * The runtime over `host`. Nothing of `host` is read before it is used (`version` is a getter), so this module also
 * loads where Deno is absent: the adapter's unit tests run under Bun too.
 */
export function denoRuntime(host: DenoHost): Runtime {
  return {
    name: "deno",
    get version() {
      return host.Deno.version.deno;
    },
    upgradeWebSocket: upgradeHelper(host.Deno),
    socket,
    serve: (app, options) => serve(host.listen, app, options),
    readTextFile: (path) => host.Deno.readTextFile(path),
    onSignal(handler) {
      const onInt = () => handler("SIGINT");
      const onTerm = () => handler("SIGTERM");
      host.Deno.addSignalListener("SIGINT", onInt);
      host.Deno.addSignalListener("SIGTERM", onTerm);
      return () => {
        host.Deno.removeSignalListener("SIGINT", onInt);
        host.Deno.removeSignalListener("SIGTERM", onTerm);
      };
    },
    exit: (code) => host.Deno.exit(code),
    onUncaught(handler) {
      host.global.addEventListener("error", (event) => {
        event.preventDefault();
        handler((event as ErrorEvent).error, "exception");
      });
      host.global.addEventListener("unhandledrejection", (event) => {
        event.preventDefault();
        handler((event as PromiseRejectionEvent).reason, "rejection");
      });
    },
    fetchWithCa(caPem) {
      const client = host.Deno.createHttpClient({ caCerts: [caPem] });
      return ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, { ...init, client })) as typeof fetch;
    },
  };
}

export const runtime: Runtime = denoRuntime({
  Deno: globalThis.Deno,
  global: globalThis,
  listen: (fetch, options) => new DenoHttpServer(fetch, options),
});
