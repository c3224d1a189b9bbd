/// <reference types="@types/bun" />
import type { Hono } from "hono";
import { getBunServer } from "hono/bun";
import { defineWebSocketHelper, WSContext, type WSContextInit, type WSEvents, type WSReadyState } from "hono/ws";
import type { Server, ServerWebSocket } from "bun";
import type { Listener, Runtime, ServeOptions, SocketSupport } from "./runtime.ts";

/** A connection's handlers (Shoal's carry an `onPong`) and the one `WSContext` that serves all of its events. */
interface SocketData {
  readonly events: WSEvents<Socket> & { onPong?: () => void };
  context?: WSContext<Socket>;
}
type Socket = ServerWebSocket<SocketData>;

/**
 * Hono's `hono/bun` helper, except that a connection gets one `WSContext` for its whole life: the stock one builds
 * a new one (and parses the request URL again) for every frame. Nothing in Shoal reads the context's `url` or
 * `protocol`, so neither is kept.
 */
const upgradeWebSocket = defineWebSocketHelper((c, events) => {
  const server = getBunServer<Server<SocketData>>(c);
  if (!server) throw new TypeError("the Bun server must be the second argument of fetch");
  const data: SocketData = { events: events as SocketData["events"] };
  return server.upgrade(c.req.raw, { data }) ? new Response(null) : undefined;
});

/** `WSContextInit` as methods on a class, so a connection's context holds no closures. */
class SocketInit implements WSContextInit<Socket> {
  readonly raw: Socket;
  constructor(raw: Socket) {
    this.raw = raw;
  }
  send(data: string | ArrayBuffer | Uint8Array<ArrayBuffer>): void {
    this.raw.send(data);
  }
  close(code?: number, reason?: string): void {
    this.raw.close(code, reason);
  }
  get readyState(): WSReadyState {
    return this.raw.readyState as WSReadyState;
  }
}

function contextOf(ws: Socket): WSContext<Socket> {
  return ws.data.context ??= new WSContext(new SocketInit(ws));
}

/** Runs one handler; Shoal's handlers catch their own errors, anything else goes to `onError` as in Hono. */
function run(ws: Socket, handler: () => void): void {
  try {
    handler();
  } catch (error) {
    const event = new ErrorEvent("error", { error, message: String(error) });
    ws.data.events.onError?.(event, contextOf(ws));
  }
}

const websocket = {
  open(ws: Socket) {
    run(ws, () => ws.data.events.onOpen?.(new Event("open"), contextOf(ws)));
  },
  message(ws: Socket, message: string | Buffer) {
    // A binary frame arrives as a Buffer: pass its bytes, not the (possibly pooled, larger) ArrayBuffer behind it.
    const data = message as unknown as string | ArrayBuffer;
    run(ws, () => ws.data.events.onMessage?.(new MessageEvent("message", { data }), contextOf(ws)));
  },
  close(ws: Socket, code: number, reason: string) {
    run(ws, () => ws.data.events.onClose?.(new CloseEvent("close", { code, reason }), contextOf(ws)));
    ws.data.context = undefined;
  },
  pong(ws: Socket) {
    run(ws, () => ws.data.events.onPong?.());
  },
};

const socket: SocketSupport = {
  ping: (raw) => (raw as Socket).ping(),
  upgradeOptions: () => undefined,
  send(raw, text, maxBufferedBytes) {
    const ws = raw as Socket;
    if (ws.readyState !== 1) return true; // closing or closed: nothing to send, and no consumer to blame
    // > 0: written; -1: queued behind unsent bytes (backpressure); 0: dropped, the buffer was past the limit.
    const sent = ws.send(text);
    return sent > 0 || (sent === -1 && ws.getBufferedAmount() <= maxBufferedBytes);
  },
  close: (raw, code, reason) => (raw as Socket).close(code, reason),
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
  onUncaught(handler) {
    process.on("uncaughtException", (error) => handler(error, "exception"));
    process.on("unhandledRejection", (reason) => handler(reason, "rejection"));
  },
  fetchWithCa(caPem) {
    return ((input: RequestInfo | URL, init?: RequestInit) =>
      fetch(input, { ...init, tls: { ca: caPem } } as RequestInit)) as typeof fetch;
  },
};
