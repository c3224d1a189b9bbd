/// <reference lib="deno.ns" />
import type { Hono } from "hono";
import { defineWebSocketHelper, WSContext } from "hono/ws";
import type { Listener, Runtime, ServeOptions, SocketSupport } from "./runtime.ts";

/**
 * Hono's `hono/deno` helper, except that the `Upgrade` header is matched without regard to case (the stock one
 * answers 404 to `Upgrade: WebSocket`).
 */
const upgradeWebSocket = defineWebSocketHelper((c, events, options) => {
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return;
  const protocol = c.req.header("sec-websocket-protocol")?.split(",")[0]?.trim();
  const { response, socket } = Deno.upgradeWebSocket(c.req.raw, {
    ...(protocol ? { protocol } : {}),
    idleTimeout: 0, // unless the keep-alive settings ask for one (see `socket.upgradeOptions`)
    ...(options as Deno.UpgradeWebSocketOptions | undefined),
  });
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
 * Deno's server WebSocket has no ping() and no pong event. Its `idleTimeout` is the only keep-alive: after
 * `idleTimeout / 2` seconds without a frame from the client it pings, and if nothing arrives in another
 * `idleTimeout / 2` it closes with 1001 "No response from ping frame.". Shoal sets it so the client is dropped
 * after `interval + timeout` of silence, SocketShark's worst case.
 */
const socket: SocketSupport = {
  upgradeOptions: (ping) => (ping.interval > 0 ? { idleTimeout: ping.interval + ping.timeout } : undefined),
  send(raw, text) {
    // Throws when the socket is no longer open (the connection catches it): checking `readyState` first would
    // cost every send. `bufferedAmount` is an op call, as dear as a fifth of the send: the connection reads it
    // every few sends instead.
    (raw as WebSocket).send(text);
    return true;
  },
  close: (raw, code, reason) => (raw as WebSocket).close(code, reason),
  bufferedAmount: (raw) => (raw as WebSocket).bufferedAmount,
};

function serve(app: Hono, options: ServeOptions): Listener {
  const server = Deno.serve({
    hostname: options.host,
    port: options.port,
    ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
    onListen: () => {},
  }, app.fetch);
  return {
    port: server.addr.port,
    stop: async () => {
      // shutdown() would wait for the WebSockets; the router closes those itself.
      void server.shutdown();
      await Promise.resolve();
    },
  };
}

export const runtime: Runtime = {
  name: "deno",
  version: Deno.version.deno,
  upgradeWebSocket,
  socket,
  serve,
  readTextFile: (path) => Deno.readTextFile(path),
  env: (name) => Deno.env.get(name),
  onSignal(handler) {
    const onInt = () => handler("SIGINT");
    const onTerm = () => handler("SIGTERM");
    Deno.addSignalListener("SIGINT", onInt);
    Deno.addSignalListener("SIGTERM", onTerm);
    return () => {
      Deno.removeSignalListener("SIGINT", onInt);
      Deno.removeSignalListener("SIGTERM", onTerm);
    };
  },
  exit: (code) => Deno.exit(code),
  onUncaught(handler) {
    globalThis.addEventListener("error", (event) => {
      event.preventDefault();
      handler((event as ErrorEvent).error, "exception");
    });
    globalThis.addEventListener("unhandledrejection", (event) => {
      event.preventDefault();
      handler((event as PromiseRejectionEvent).reason, "rejection");
    });
  },
  fetchWithCa(caPem) {
    const client = Deno.createHttpClient({ caCerts: [caPem] });
    return ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, { ...init, client })) as typeof fetch;
  },
};
