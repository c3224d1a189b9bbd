/// <reference types="@types/bun" />
import type { Hono } from "hono";
import { upgradeWebSocket, websocket } from "hono/bun";
import type { ServerWebSocket } from "bun";
import type { Listener, Runtime, ServeOptions, SocketSupport } from "./runtime.ts";

/** Hono keeps the connection's event handlers in `ws.data.events`; Shoal's carry an `onPong` beside them. */
type Socket = ServerWebSocket<{ events: { onPong?: () => void } }>;

const socket: SocketSupport = {
  ping: (raw) => (raw as Socket).ping(),
  upgradeOptions: () => undefined,
  send(raw, text, maxBufferedBytes) {
    const ws = raw as Socket;
    if (ws.readyState !== 1) return true; // closing or closed: nothing to send, and no consumer to blame
    // 0: dropped, because the buffer was already past `backpressureLimit`.
    return ws.send(text) !== 0 && ws.getBufferedAmount() <= maxBufferedBytes;
  },
  terminate: (raw) => (raw as Socket).terminate(),
  bufferedAmount: (raw) => (raw as Socket).getBufferedAmount(),
  topics: {
    subscribe: (raw, topic) => (raw as Socket).subscribe(topic),
    unsubscribe: (raw, topic) => (raw as Socket).unsubscribe(topic),
  },
};

function serve(app: Hono, options: ServeOptions): Listener {
  const server = Bun.serve({
    hostname: options.host,
    port: options.port,
    ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
    fetch: app.fetch,
    websocket: {
      ...websocket,
      // Bun closes with 1009 itself past this size.
      maxPayloadLength: options.maxMessageBytes,
      // Past this Bun drops frames (send returns 0); Shoal closes the connection before or when that happens.
      backpressureLimit: options.maxBufferedBytes,
      closeOnBackpressureLimit: false,
      pong: (ws: Parameters<typeof websocket.open>[0]) => (ws as unknown as Socket).data.events.onPong?.(),
      // Shoal sends its own pings; Bun's idle timeout would close quiet but healthy clients.
      idleTimeout: 0,
      sendPings: false,
    },
  });
  return {
    port: server.port ?? options.port,
    // Bun writes the frame to every subscriber in native code: the fast path of the hub's fan-out.
    publish: (topic, text) => void server.publish(topic, text),
    stop: async () => {
      // Called after the router closed every session; anything left is closed rather than waited for.
      await server.stop(true);
    },
  };
}

export const runtime: Runtime = {
  name: "bun",
  version: Bun.version,
  upgradeWebSocket,
  socket,
  serve,
  readTextFile: (path) => Bun.file(path).text(),
  env: (name) => Bun.env[name],
  onSignal(handler) {
    const onInt = () => handler("SIGINT");
    const onTerm = () => handler("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    return () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
    };
  },
  exit: (code) => process.exit(code),
  fetchWithCa(caPem) {
    return ((input: RequestInfo | URL, init?: RequestInit) =>
      fetch(input, { ...init, tls: { ca: caPem } } as RequestInit)) as typeof fetch;
  },
};
