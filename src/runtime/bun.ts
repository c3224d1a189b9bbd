/// <reference types="@types/bun" />
import { getLogger } from "@logtape/logtape";
import type { Hono } from "hono";
import { defineWebSocketHelper, WSContext, type WSContextInit, type WSEvents, type WSReadyState } from "hono/ws";
import type { Server, ServerWebSocket } from "bun";
import { FdGuard } from "./fd_guard.ts";
import {
  CLOSE_WAIT_MS,
  type Listener,
  type Runtime,
  type ServeOptions,
  type SocketSupport,
  type TransportRefusal,
} from "./runtime.ts";
import { type Clock, raceTimeout, systemClock } from "../core/clock.ts";

const log = getLogger(["shoal", "runtime"]);

/** What the adapter uses of Bun and of `process`: the real globals for `runtime`, fakes in the adapter's unit tests. */
export interface BunHost {
  readonly Bun: Pick<typeof Bun, "serve" | "version" | "file">;
  readonly process: Pick<typeof process, "on" | "off" | "exit">;
  /** The listener's request deadline, close wait and file descriptor checks (default: the system clock). */
  readonly clock?: Clock;
  /** Whether `count` more file descriptors can be opened now (default: `FdGuard`'s own probe). */
  readonly probeFds?: (count: number) => boolean;
}

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
  // As `getBunServer` of `hono/bun`, which cannot be imported where Bun is absent (its SSG module reads `Bun.write`).
  const env = c.env as { server?: Server<SocketData> } | Server<SocketData> | undefined;
  const server = env && "server" in env ? env.server : env as Server<SocketData> | undefined;
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

/**
 * Shoal's listener on Bun. Bun closes a connection whose request head is incomplete after 10-12 s whatever is set
 * (uWebSockets' fixed HTTP idle timeout, on a 4 s timer), and never closes an idle keep-alive connection; so every
 * plain HTTP response carries `Connection: close`, and a request must be answered within `handshakeTimeout` of its
 * head (a slow body gets 408). Bun's accept loop spins at 100 % CPU while the process is out of file descriptors:
 * an `FdGuard` then stops listening until descriptors are free, and listens again with a new `Bun.serve` on the same
 * port; connections of the earlier server go on, so a fan-out publish goes to every server that has some.
 */
class BunListener implements Listener {
  readonly port: number;
  readonly publish: (topic: string, text: string) => void;
  readonly #app: Hono;
  readonly #options: ServeOptions;
  readonly #websocket: typeof websocket;
  /** Every server with connections; `#listening` (the last, unless paused) accepts new ones. */
  #servers: Server<SocketData>[] = [];
  #listening: Server<SocketData> | undefined;
  readonly #sockets = new Set<Socket>();
  #onLastSocket: (() => void) | undefined;
  readonly #guard: FdGuard;
  readonly #host: BunHost;
  readonly #clock: Clock;
  #stopped = false;

  constructor(app: Hono, options: ServeOptions, host: BunHost) {
    this.#app = app;
    this.#options = options;
    this.#host = host;
    this.#clock = host.clock ?? systemClock;
    this.#websocket = {
      ...websocket,
      open: (ws) => {
        this.#sockets.add(ws);
        websocket.open(ws);
      },
      close: (ws, code, reason) => {
        websocket.close(ws, code, reason);
        this.#release(ws);
      },
    };
    this.#listening = this.#listen(options.port);
    this.#servers.push(this.#listening);
    this.port = this.#listening.port ?? options.port;
    // Bun writes the frame to every subscriber in native code: the fast path of the hub's fan-out.
    this.publish = (topic, text) => {
      const servers = this.#servers;
      for (let i = 0; i < servers.length; i++) servers[i].publish(topic, text);
    };
    this.#guard = new FdGuard({
      pause: () => {
        this.#refused("fd_limit");
        this.#pause();
      },
      resume: () => this.#resume(),
      probe: host.probeFds,
      clock: this.#clock,
    });
    this.#guard.start();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#guard.close();
    this.#pause();
    if (this.#sockets.size > 0) {
      // The router has sent every close frame; the close events come when the clients answer them.
      const lastClosed = new Promise<void>((resolve) => (this.#onLastSocket = resolve));
      await raceTimeout(lastClosed, CLOSE_WAIT_MS, () => undefined, this.#clock);
      this.#onLastSocket = undefined;
    }
    // Anything left is closed rather than waited for.
    await Promise.all(this.#servers.map((server) => server.stop(true)));
  }

  #listen(port: number): Server<SocketData> {
    const options = this.#options;
    return this.#host.Bun.serve({
      hostname: options.host,
      port,
      ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
      fetch: (request, server) => this.#fetch(request, server),
      // Bun's own timer (4 s steps) for a request body that stops arriving; `#fetch` bounds the whole request.
      idleTimeout: Math.min(255, Math.max(1, Math.ceil(options.handshakeTimeout))),
      websocket: {
        ...this.#websocket,
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
  }

  /**
   * The app's answer with `Connection: close` (Bun would keep an idle connection open forever), or a 408 when it
   * is not ready within `handshakeTimeout` of the request head (a body arriving too slowly). The answer to an
   * upgraded request is ignored by Bun.
   */
  async #fetch(request: Request, server: Server<SocketData>): Promise<Response> {
    let timer: unknown;
    const deadline = new Promise<Response>((resolve) => {
      timer = this.#clock.setTimeout(() => {
        this.#refused("handshake_timeout");
        resolve(Response.json({ status: "error", error: "Request timeout." }, { status: 408 }));
      }, this.#options.handshakeTimeout * 1000);
    });
    try {
      return closing(await Promise.race([this.#app.fetch(request, server), deadline]));
    } catch (error) {
      // Hono answers its handlers' errors itself; this is a bug, and must not become Bun's error page.
      log.error("request handler failed", { error });
      return closing(Response.json({ status: "error", error: "Internal server error." }, { status: 500 }));
    } finally {
      this.#clock.clearTimeout(timer);
    }
  }

  #refused(reason: TransportRefusal): void {
    try {
      this.#options.onRefused?.(reason);
    } catch (error) {
      log.error("refusal hook failed", { error });
    }
  }

  #release(ws: Socket): void {
    this.#sockets.delete(ws);
    if (this.#sockets.size === 0) this.#onLastSocket?.();
    if (this.#servers.length > 1) this.#prune();
  }

  /** Stop accepting: open connections go on. */
  #pause(): void {
    const server = this.#listening;
    this.#listening = undefined;
    server?.stop(false).catch((error) => log.debug("stop listening failed", { error: String(error) }));
  }

  /** Listen again on the same port, with a new server. */
  #resume(): boolean {
    if (this.#stopped) return true;
    try {
      this.#listening = this.#listen(this.port);
    } catch (error) {
      log.warn("could not listen again; retrying", { port: this.port, error: String(error) });
      return false;
    }
    this.#servers.push(this.#listening);
    this.#prune();
    return true;
  }

  /** Forget earlier servers whose connections are all gone. */
  #prune(): void {
    this.#servers = this.#servers.filter((server) => {
      if (server === this.#listening || server.pendingWebSockets > 0 || server.pendingRequests > 0) return true;
      server.stop(true).catch(() => {});
      return false;
    });
  }
}

/** `response`, or a copy of it where its headers are immutable, with `Connection: close`. */
function closing(response: Response): Response {
  try {
    response.headers.set("connection", "close");
    return response;
  } catch {
    const copy = new Response(response.body, response);
    copy.headers.set("connection", "close");
    return copy;
  }
}

/**
 * The runtime over `host`. Nothing of `host` is read before it is used (`version` is a getter), so this module also
 * loads where Bun is absent: the adapter's unit tests run under Deno too.
 */
export function bunRuntime(host: BunHost): Runtime {
  return {
    name: "bun",
    get version() {
      return host.Bun.version;
    },
    upgradeWebSocket,
    socket,
    serve: (app, options) => new BunListener(app, options, host),
    readTextFile: (path) => host.Bun.file(path).text(),
    onSignal(handler) {
      const onInt = () => handler("SIGINT");
      const onTerm = () => handler("SIGTERM");
      host.process.on("SIGINT", onInt);
      host.process.on("SIGTERM", onTerm);
      return () => {
        host.process.off("SIGINT", onInt);
        host.process.off("SIGTERM", onTerm);
      };
    },
    exit: (code) => host.process.exit(code),
    onUncaught(handler) {
      host.process.on("uncaughtException", (error) => handler(error, "exception"));
      host.process.on("unhandledRejection", (reason) => handler(reason, "rejection"));
    },
    fetchWithCa(caPem) {
      return ((input: RequestInfo | URL, init?: RequestInit) =>
        fetch(input, { ...init, tls: { ca: caPem } } as RequestInit)) as typeof fetch;
    },
  };
}

export const runtime: Runtime = bunRuntime({ Bun: globalThis.Bun, process: globalThis.process });
