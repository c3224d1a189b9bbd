/// <reference lib="deno.ns" />
/**
 * Shoal's HTTP/1.1 server for Deno, in place of `Deno.serve`, which (Deno 2.9) never closes an idle connection, an
 * unfinished request head or a slow request body, and ends the process when `accept` fails with EMFILE. Here the
 * accept loop is Shoal's (`Deno.listen`), so a failed accept is retried with a back-off; every connection has a
 * deadline from accept (or from the end of its last response) to a complete exchange or upgrade; and a WebSocket
 * upgrade hands the connection to Deno's native WebSocket (`Deno.upgradeWebSocket({ socket, head })`), so frames
 * never pass through JavaScript streams: the hot path is Deno's own.
 */
import { getLogger } from "@logtape/logtape";
import {
  ChunkedDecoder,
  headEnd,
  leadingEmptyLines,
  MAX_HEAD_BYTES,
  parseRequestHead,
  type RequestHead,
  responseHead,
} from "./http1.ts";
import { CLOSE_WAIT_MS, type PingTimeoutPeer, type TransportRefusal } from "./runtime.ts";
import { raceTimeout } from "../core/clock.ts";

const log = getLogger(["shoal", "runtime"]);

/** Back-off between failed accepts (EMFILE and the like), milliseconds. */
const ACCEPT_RETRY_MIN_MS = 50;
const ACCEPT_RETRY_MAX_MS = 1000;
/** Bytes of the first read of a request (an upgrade head is about 500), then of the reads after it. */
const FIRST_READ_BYTES = 2048;
const READ_BYTES = 16 * 1024;
const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

export interface DenoServerOptions {
  readonly hostname: string;
  readonly port: number;
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Milliseconds from accept, or from the end of the last response, to a complete exchange or upgrade. */
  readonly handshakeTimeoutMs: number;
  /** Told of each connection refused or cut (see `TransportRefusal`). */
  readonly onRefused?: (reason: TransportRefusal) => void;
}

/** The connection of a WebSocket upgrade request, for `Deno.upgradeWebSocket({ socket, head })`. */
export interface UpgradeHandoff {
  /** Pass as `socket`: the 101 is written through it, then Deno's WebSocket takes the connection over. */
  readonly socket: unknown;
  /** Bytes that arrived after the request head. */
  readonly head: Uint8Array;
  /** Track the resulting WebSocket until its close event (for `stop()`), with Shoal's keep-alive if given. */
  adopt(socket: WebSocket, keepAlive: DenoKeepAlive | undefined): void;
}

/** What a request handler gets as Hono's `env`. */
export interface DenoRequestEnv {
  readonly remoteAddr: Deno.NetAddr;
  /** Present on a WebSocket upgrade request. */
  readonly upgrade?: UpgradeHandoff;
}

export type DenoFetch = (request: Request, env: DenoRequestEnv) => Response | Promise<Response>;

/**
 * Shoal's keep-alive on Deno, whose server WebSocket has no ping(): Deno's `idleTimeout` pings after half of it
 * without a frame from the client (and would close with 1001 after the whole of it); Shoal closes with 1000 once the
 * client has been silent for `silenceMs`, before Deno would.
 */
export interface DenoKeepAlive {
  /** For `Deno.upgradeWebSocket`, seconds. */
  readonly idleTimeout: number;
  /** Silence after which Shoal closes the connection; absent where frames cannot be observed (Deno closes, 1001). */
  readonly silenceMs?: number;
  /** How often silence is checked, milliseconds. */
  readonly checkMs?: number;
}

/**
 * Deno calls this method of its WebSocket for every frame it reads (text, binary, pong) to restart its idle timer
 * (Deno 2.9, `ext/websocket`). Wrapping it per socket is how Shoal sees pongs, which Deno does not surface.
 */
const IDLE_HOOK = Object.getOwnPropertySymbols(WebSocket.prototype).find((symbol) =>
  symbol.description === "[[serverHandleIdleTimeout]]"
);

/** Deno's keep-alive for ping settings in seconds (see `DenoKeepAlive`); undefined when pings are off. */
export function denoKeepAlive(
  ping: { readonly interval: number; readonly timeout: number },
): DenoKeepAlive | undefined {
  if (ping.interval <= 0) return undefined;
  const silence = ping.interval + ping.timeout;
  // Without the frame hook, Deno's own timer is all there is: it pings after silence / 2 and closes with 1001.
  if (!IDLE_HOOK) return { idleTimeout: silence };
  // Deno pings after `interval` of silence (as SocketShark); its own close must come after Shoal's, by `margin`.
  const margin = Math.min(2, silence / 4);
  const idleTimeout = Math.max(2 * ping.interval, silence + margin);
  return { idleTimeout, silenceMs: silence * 1000, checkMs: Math.min(1000, (margin * 1000) / 2) };
}

/** A WebSocket handed to Deno, from the upgrade to its close event. */
class TrackedSocket {
  readonly socket: WebSocket;
  readonly silenceMs: number | undefined;
  lastFrame = performance.now();
  peer: PingTimeoutPeer | undefined;
  timedOut = false;

  constructor(socket: WebSocket, silenceMs: number | undefined) {
    this.socket = socket;
    this.silenceMs = silenceMs;
  }
}

const tracked = new WeakMap<WebSocket, TrackedSocket>();

/** Installed as a socket's own idle-timer method: note the frame, then restart Deno's timer as before. */
function onFrame(this: WebSocket): unknown {
  const record = tracked.get(this);
  if (record) record.lastFrame = performance.now();
  return (WebSocket.prototype as unknown as Record<symbol, () => unknown>)[IDLE_HOOK!].call(this);
}

/**
 * Tell `peer` when the client of `socket` (a WebSocket this server upgraded) has been silent past its keep-alive, in
 * place of Shoal closing it itself. Returns false when Shoal does not watch this socket.
 */
export function watchKeepAlive(socket: WebSocket, peer: PingTimeoutPeer): boolean {
  const record = tracked.get(socket);
  if (!record?.silenceMs) return false;
  record.peer = peer;
  return true;
}

/** A listening server; `stop()` stops accepting, ends HTTP connections and waits (bounded) for the WebSockets. */
export class DenoHttpServer {
  readonly #listener: Deno.Listener;
  readonly #fetch: DenoFetch;
  readonly #options: DenoServerOptions;
  readonly #connections = new Set<HttpConnection>();
  readonly #sockets = new Set<TrackedSocket>();
  /** Resolves `stop()`'s wait once the last WebSocket has closed. */
  #onLastSocket: (() => void) | undefined;
  #keepAliveTimer: ReturnType<typeof setInterval> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #wakeAccept: (() => void) | undefined;
  #stopped = false;

  constructor(fetch: DenoFetch, options: DenoServerOptions) {
    this.#fetch = fetch;
    this.#options = options;
    const address = { hostname: options.hostname, port: options.port };
    // HTTP/1.1 only: a WebSocket upgrade needs it, and Shoal's other routes do not need HTTP/2.
    this.#listener = options.tls
      ? Deno.listenTls({ ...address, cert: options.tls.cert, key: options.tls.key, alpnProtocols: ["http/1.1"] })
      : Deno.listen(address);
    if (!ridOf(this.#listener)) {
      this.#listener.close();
      throw new Error(`Deno ${Deno.version.deno} is not supported: its connections have no resource id to upgrade`);
    }
    void this.#acceptLoop();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  get secure(): boolean {
    return this.#options.tls !== undefined;
  }

  get handshakeTimeoutMs(): number {
    return this.#options.handshakeTimeoutMs;
  }

  get stopping(): boolean {
    return this.#stopped;
  }

  handle(request: Request, env: DenoRequestEnv): Response | Promise<Response> {
    return this.#fetch(request, env);
  }

  refused(reason: TransportRefusal): void {
    try {
      this.#options.onRefused?.(reason);
    } catch (error) {
      log.error("refusal hook failed", { error });
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    clearTimeout(this.#retryTimer);
    this.#wakeAccept?.();
    for (const connection of [...this.#connections]) connection.close("server stopping");
    if (this.#sockets.size > 0) {
      // The router has sent every close frame; the close events come when the clients answer them.
      const lastClosed = new Promise<void>((resolve) => (this.#onLastSocket = resolve));
      await raceTimeout(lastClosed, CLOSE_WAIT_MS, () => undefined);
      this.#onLastSocket = undefined;
      if (this.#sockets.size > 0) log.info("stopped with unclosed WebSockets", { count: this.#sockets.size });
    }
    clearInterval(this.#keepAliveTimer);
    this.#keepAliveTimer = undefined;
  }

  /** Called by a connection when it starts and ends. */
  connectionOpened(connection: HttpConnection): void {
    this.#connections.add(connection);
  }

  connectionClosed(connection: HttpConnection): void {
    this.#connections.delete(connection);
  }

  /** Track a WebSocket from the upgrade until its close event. */
  adopt(socket: WebSocket, keepAlive: DenoKeepAlive | undefined): void {
    const record = new TrackedSocket(socket, keepAlive?.silenceMs);
    this.#sockets.add(record);
    tracked.set(socket, record);
    const release = () => {
      this.#sockets.delete(record);
      tracked.delete(socket);
      if (this.#sockets.size === 0) this.#onLastSocket?.();
    };
    socket.addEventListener("close", release, { once: true });
    // An upgrade whose 101 could not be written ends with an error event and no close event.
    socket.addEventListener("error", () => socket.readyState === WebSocket.CONNECTING && release(), { once: true });
    if (record.silenceMs && IDLE_HOOK) {
      Object.defineProperty(socket, IDLE_HOOK, { value: onFrame });
      this.#keepAliveTimer ??= setInterval(() => this.#checkSilence(), keepAlive!.checkMs ?? 1000);
    }
  }

  /** Close (1000) clients silent past their keep-alive, before Deno's own timer would (1001). */
  #checkSilence(): void {
    const now = performance.now();
    let watched = 0;
    for (const record of this.#sockets) {
      if (!record.silenceMs) continue;
      watched++;
      if (record.timedOut || now - record.lastFrame < record.silenceMs) continue;
      record.timedOut = true;
      try {
        if (record.peer) record.peer.pingTimedOut();
        else record.socket.close(1000, "");
      } catch (error) {
        log.debug("ping timeout close failed", { error: String(error) });
      }
    }
    if (watched === 0) {
      clearInterval(this.#keepAliveTimer);
      this.#keepAliveTimer = undefined;
    }
  }

  async #acceptLoop(): Promise<void> {
    let retryMs = 0;
    while (!this.#stopped) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopped || error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
          return;
        }
        // Out of file descriptors (EMFILE, ENFILE) or the like: the client waits in the backlog meanwhile.
        if (retryMs === 0) {
          log.warn("accept failed; retrying", { error: String(error) });
          this.refused("fd_limit");
        }
        retryMs = Math.min(ACCEPT_RETRY_MAX_MS, Math.max(ACCEPT_RETRY_MIN_MS, retryMs * 2));
        await new Promise<void>((resolve) => {
          this.#wakeAccept = resolve;
          this.#retryTimer = setTimeout(resolve, retryMs);
        });
        this.#wakeAccept = undefined;
        continue;
      }
      if (retryMs > 0) {
        log.info("accepting connections again");
        retryMs = 0;
      }
      if (this.#stopped) {
        conn.close();
        return;
      }
      // Small frames go out at once (Nagle off), as with Deno.serve.
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      void new HttpConnection(this, conn).run();
    }
  }
}

/** The resource id of a Deno connection or listener (Deno keeps it behind a symbol since 2.0). */
function ridOf(resource: object): number | undefined {
  const symbol = Object.getOwnPropertySymbols(resource).find((s) => s.description === "Deno.internal.rid");
  const rid = symbol ? (resource as Record<symbol, unknown>)[symbol] : undefined;
  return typeof rid === "number" ? rid : undefined;
}

/**
 * One accepted connection while it speaks HTTP: reads request heads and bodies one exchange at a time (never ahead,
 * so no read is pending when Deno's WebSocket takes the connection over), under one deadline per exchange.
 */
class HttpConnection {
  readonly #server: DenoHttpServer;
  readonly #conn: Deno.Conn;
  /** Bytes read and not yet used. */
  #buffer: Uint8Array = EMPTY;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  /** open → (upgrading → upgraded) | closed. */
  #state: "open" | "upgrading" | "upgraded" | "closed" = "open";
  /** Whether the current request's body was read to its end. */
  #bodyDone = true;
  /** Whether the connection is between requests, with at least one exchange behind it (an idle keep-alive). */
  #idle = false;

  constructor(server: DenoHttpServer, conn: Deno.Conn) {
    this.#server = server;
    this.#conn = conn;
    server.connectionOpened(this);
  }

  async run(): Promise<void> {
    this.#arm();
    try {
      while (this.#state === "open") {
        const bytes = await this.#readHead();
        if (!bytes) break;
        const parsed = parseRequestHead(bytes);
        if (!parsed.ok) {
          this.#server.refused("bad_request");
          await this.#respond(parsed.status, { status: "error", error: parsed.error }, true);
          break;
        }
        if (!(await this.#exchange(parsed.head))) break;
        this.#arm(); // an idle keep-alive connection gets the same deadline
        this.#idle = this.#buffer.length === 0;
      }
    } catch (error) {
      if (this.#state === "open") log.debug("http connection failed", { error: String(error) });
    } finally {
      if (this.#state === "open") this.close("done");
    }
  }

  /** End the connection (unless Deno's WebSocket has it). */
  close(why: string): void {
    if (this.#state === "closed" || this.#state === "upgraded") return;
    this.#state = "closed";
    clearTimeout(this.#deadline);
    this.#server.connectionClosed(this);
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
    if (why !== "done") log.debug("http connection closed", { why });
  }

  /** Called by the handoff when Deno takes the connection: it is no longer this object's. */
  upgraded(): number {
    this.#state = "upgraded";
    clearTimeout(this.#deadline);
    this.#server.connectionClosed(this);
    return ridOf(this.#conn)!;
  }

  /** Write the 101 for the handoff; the callback runs once it is sent, or with the error. */
  writeHandshake(text: string, callback: (error?: Error | null) => void): void {
    this.#write(encoder.encode(text)).then(() => callback(), (error) => {
      this.close("upgrade failed");
      callback(error instanceof Error ? error : new Error(String(error)));
    });
  }

  #arm(): void {
    clearTimeout(this.#deadline);
    this.#deadline = setTimeout(() => this.#expire(), this.#server.handshakeTimeoutMs);
  }

  #expire(): void {
    // An idle keep-alive connection ending is housekeeping; anything else did not finish in time.
    if (!this.#idle) this.#server.refused("handshake_timeout");
    this.close("handshake timeout");
  }

  /** The next request head, or undefined when the client went away or sent too much (answered with 431). */
  async #readHead(): Promise<Uint8Array | undefined> {
    let searched = 0;
    for (;;) {
      const skip = leadingEmptyLines(this.#buffer);
      if (skip > 0) {
        this.#buffer = this.#buffer.subarray(skip);
        searched = 0;
      }
      const end = headEnd(this.#buffer, searched - 3);
      if (end >= 0) {
        const head = this.#buffer.subarray(0, end);
        this.#buffer = this.#buffer.subarray(end);
        return head;
      }
      if (this.#buffer.length >= MAX_HEAD_BYTES) {
        this.#server.refused("bad_request");
        await this.#respond(431, { status: "error", error: "Request header fields too large." }, true);
        return undefined;
      }
      searched = this.#buffer.length;
      if (!(await this.#fill())) return undefined;
    }
  }

  /** Read more bytes into the buffer; false at the end of the stream. */
  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(this.#buffer.length === 0 ? FIRST_READ_BYTES : READ_BYTES);
    const n = await this.#conn.read(chunk);
    if (n === null) return false;
    this.#idle = false;
    if (this.#buffer.length === 0) {
      this.#buffer = chunk.subarray(0, n);
    } else {
      const joined = new Uint8Array(this.#buffer.length + n);
      joined.set(this.#buffer);
      joined.set(chunk.subarray(0, n), this.#buffer.length);
      this.#buffer = joined;
    }
    return true;
  }

  /** One request and its response; true when the connection stays open for the next one. */
  async #exchange(head: RequestHead): Promise<boolean> {
    const url = this.#url(head);
    if (!url) {
      await this.#respond(400, { status: "error", error: "Invalid request target or Host." }, true);
      return false;
    }
    const hasBody = head.body.kind !== "none";
    if (hasBody && (head.method === "GET" || head.method === "HEAD")) {
      await this.#respond(400, { status: "error", error: "A GET or HEAD request has no body." }, true);
      return false;
    }
    let request: Request;
    try {
      const headers = new Headers();
      for (const [name, value] of head.fields) headers.append(name, value);
      this.#bodyDone = !hasBody;
      const body = hasBody ? this.#body(head) : null;
      request = new Request(url, { method: head.method, headers, body, duplex: "half" } as RequestInit);
    } catch {
      await this.#respond(400, { status: "error", error: "Invalid request." }, true);
      return false;
    }

    const remoteAddr = this.#conn.remoteAddr as Deno.NetAddr;
    let handoff: Handoff | undefined;
    if (head.websocket) {
      // A copy: a view would keep the whole read buffer alive as long as Deno keeps the head.
      handoff = new Handoff(this, this.#buffer.length > 0 ? this.#buffer.slice() : EMPTY, this.#server);
      this.#buffer = EMPTY;
    }
    let response: Response;
    try {
      response = await this.#server.handle(request, handoff ? { remoteAddr, upgrade: handoff } : { remoteAddr });
    } catch (error) {
      log.error("request handler failed", { error });
      response = Response.json({ status: "error", error: "Internal server error." }, { status: 500 });
    }
    if (this.#state !== "open") return false;
    if (response.status === 101) {
      if (handoff?.started) {
        // Deno is writing the 101 through the handoff; the deadline still runs until it takes the connection.
        this.#state = "upgrading";
        return false;
      }
      log.error("a 101 response without a WebSocket upgrade", { url: url.pathname });
      response = Response.json({ status: "error", error: "Internal server error." }, { status: 500 });
    }
    // An upgrade request that was not upgraded, a body left unread, or the server stopping: end the connection.
    const close = head.close || head.websocket || !this.#bodyDone || this.#server.stopping;
    await this.#writeResponse(response, head.method === "HEAD", close);
    return !close;
  }

  #url(head: RequestHead): URL | undefined {
    const scheme = this.#server.secure ? "https" : "http";
    try {
      if (head.target.startsWith("/")) {
        const host = head.host ?? "localhost";
        if (!/^[A-Za-z0-9.\-_~:[\]]+$/.test(host)) return undefined;
        return new URL(`${scheme}://${host}${head.target}`);
      }
      // absolute-form (RFC 9112 §3.2.2), as a proxy would send it
      const url = new URL(head.target);
      return url.protocol === "http:" || url.protocol === "https:" ? url : undefined;
    } catch {
      return undefined;
    }
  }

  /** The request body as a stream that reads from the connection only when the application pulls. */
  #body(head: RequestHead): ReadableStream<Uint8Array> {
    let remaining = head.body.kind === "length" ? head.body.length : 0;
    const chunked = head.body.kind === "chunked" ? new ChunkedDecoder() : undefined;
    let continued = !head.expectContinue;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (!continued) {
          continued = true;
          await this.#write(CONTINUE);
        }
        for (;;) {
          if (this.#buffer.length === 0 && !(await this.#fill())) {
            throw new Error("the client closed the connection before the end of the body");
          }
          if (!chunked) {
            const take = Math.min(remaining, this.#buffer.length);
            controller.enqueue(this.#buffer.subarray(0, take));
            this.#buffer = this.#buffer.subarray(take);
            remaining -= take;
            if (remaining === 0) this.#endBody(controller);
            return;
          }
          const { data, used } = chunked.decode(this.#buffer);
          this.#buffer = this.#buffer.subarray(used);
          let enqueued = false;
          for (const bytes of data) {
            if (bytes.length === 0) continue;
            controller.enqueue(bytes);
            enqueued = true;
          }
          if (chunked.done) this.#endBody(controller);
          if (enqueued || chunked.done) return;
        }
      },
    }, { highWaterMark: 0 });
  }

  #endBody(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.#bodyDone = true;
    controller.close();
  }

  async #writeResponse(response: Response, headRequest: boolean, close: boolean): Promise<void> {
    const bodyless = response.status < 200 || response.status === 204 || response.status === 304;
    const body = bodyless || !response.body ? EMPTY : new Uint8Array(await response.arrayBuffer());
    const head = responseHead(response.status, response.headers, { length: bodyless ? undefined : body.length, close });
    const bytes = encoder.encode(head);
    if (headRequest || body.length === 0) return this.#write(bytes);
    const all = new Uint8Array(bytes.length + body.length);
    all.set(bytes);
    all.set(body, bytes.length);
    await this.#write(all);
  }

  #respond(status: number, body: unknown, close: boolean): Promise<void> {
    return this.#writeResponse(Response.json(body, { status }), false, close);
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
  }
}

/**
 * The part of a `node:net` Socket that `Deno.upgradeWebSocket({ socket, head })` uses (Deno 2.9): `destroyed`,
 * `write(text, callback)` for the 101, then `_handle.readStop()` and `_handle.takeStream()`, which yields the
 * resource id of the stream the native WebSocket takes over. Here that stream is the `Deno.Conn` itself.
 */
class Handoff implements UpgradeHandoff {
  readonly head: Uint8Array;
  readonly socket: HandoffSocket;
  readonly #server: DenoHttpServer;
  #started = false;

  constructor(connection: HttpConnection, head: Uint8Array, server: DenoHttpServer) {
    this.head = head;
    this.#server = server;
    this.socket = new HandoffSocket(connection, () => (this.#started = true));
  }

  /** Whether Deno started the upgrade (asked to write the 101). */
  get started(): boolean {
    return this.#started;
  }

  adopt(socket: WebSocket, keepAlive: DenoKeepAlive | undefined): void {
    this.#server.adopt(socket, keepAlive);
  }
}

/** Duck-typed `node:net` Socket over one HttpConnection (see `Handoff`). */
class HandoffSocket {
  destroyed = false;
  _handle: { readStop(): void; takeStream(): number } | null;
  readonly #connection: HttpConnection;
  readonly #onStart: () => void;

  constructor(connection: HttpConnection, onStart: () => void) {
    this.#connection = connection;
    this.#onStart = onStart;
    // No read is pending at this point (HttpConnection reads only on demand), so there is nothing to stop.
    this._handle = { readStop: () => {}, takeStream: () => connection.upgraded() };
  }

  write(text: string, callback: (error?: Error | null) => void): boolean {
    this.#onStart();
    this.#connection.writeHandshake(text, callback);
    return true;
  }
}
