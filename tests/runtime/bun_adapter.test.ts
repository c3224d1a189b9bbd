// The Bun adapter (src/runtime/bun.ts) over a faked `Bun` and `process`: every translation between Bun's server and
// Shoal's callbacks, without a real server, so it runs under Deno as well as Bun.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { test } from "node:test";
import { Hono } from "hono";
import type { WSContext, WSEvents } from "hono/ws";
import { type BunHost, bunRuntime } from "../../src/runtime/bun.ts";
import { CLOSE_WAIT_MS, type ServeOptions, type TransportRefusal } from "../../src/runtime/runtime.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** What `Bun.serve` is given, as far as these tests read it. */
interface FakeServeOptions {
  readonly hostname: string;
  readonly port: number;
  readonly tls?: { cert: string; key: string };
  readonly idleTimeout: number;
  fetch(request: Request, server: FakeServer): Promise<Response>;
  readonly websocket: {
    readonly maxPayloadLength: number;
    readonly backpressureLimit: number;
    readonly closeOnBackpressureLimit: boolean;
    readonly idleTimeout: number;
    readonly sendPings: boolean;
    open(ws: FakeSocket): void;
    message(ws: FakeSocket, message: string | Buffer): void;
    close(ws: FakeSocket, code: number, reason: string): void;
    pong(ws: FakeSocket): void;
    drain?: (ws: FakeSocket) => void;
  };
}

/** A `ServerWebSocket`: records what the adapter does to it; `sendResult` scripts Bun's answer to `send`. */
class FakeSocket {
  readonly data: unknown;
  readyState = 1;
  buffered = 0;
  /** What `send` returns: bytes written, -1 (queued behind unsent bytes) or 0 (dropped). Default: the length. */
  sendResult: number | undefined;
  readonly sent: (string | ArrayBufferLike | Uint8Array)[] = [];
  readonly closes: { code?: number; reason?: string }[] = [];
  readonly topics = new Set<string>();
  pings = 0;
  terminated = false;

  constructor(data: unknown = {}) {
    this.data = data;
  }

  send(data: string | Uint8Array): number {
    if (this.readyState !== 1) throw new Error("the adapter sent on a socket that is not open");
    this.sent.push(data);
    return this.sendResult ?? data.length;
  }

  close(code?: number, reason?: string): void {
    this.closes.push({ code, reason });
    if (this.readyState === 1) this.readyState = 2;
  }

  terminate(): void {
    this.terminated = true;
  }

  getBufferedAmount(): number {
    return this.buffered;
  }

  ping(): number {
    this.pings++;
    return 0;
  }

  subscribe(topic: string): void {
    this.topics.add(topic);
  }

  unsubscribe(topic: string): void {
    this.topics.delete(topic);
  }
}

/** A `Server` from `Bun.serve`: upgrades (unless told to refuse), publishes and stops, all recorded. */
class FakeServer {
  readonly options: FakeServeOptions;
  readonly port: number;
  readonly upgrades: { request: Request; data: unknown }[] = [];
  readonly published: { topic: string; text: string }[] = [];
  /** Each `stop(closeActiveConnections)` call, with the fake clock's time and the sockets still open then. */
  readonly stops: { force: boolean; at: number; open: number }[] = [];
  refuseUpgrades = false;
  pendingWebSockets = 0;
  pendingRequests = 0;
  readonly #clock: FakeClock;

  constructor(options: FakeServeOptions, clock: FakeClock) {
    this.options = options;
    this.port = options.port === 0 ? 43210 : options.port;
    this.#clock = clock;
  }

  upgrade(request: Request, options: { data: unknown }): boolean {
    if (this.refuseUpgrades) return false;
    this.upgrades.push({ request, data: options.data });
    return true;
  }

  publish(topic: string, text: string): number {
    this.published.push({ topic, text });
    return text.length;
  }

  stop(force = false): Promise<void> {
    this.stops.push({ force, at: this.#clock.now(), open: this.pendingWebSockets });
    return Promise.resolve();
  }

  /** Bun's side of an upgrade: open the socket the last `upgrade` call asked for. */
  open(): FakeSocket {
    const upgrade = this.upgrades.at(-1);
    if (!upgrade) throw new Error("no upgrade to open");
    const ws = new FakeSocket(upgrade.data);
    this.pendingWebSockets++;
    this.options.websocket.open(ws);
    return ws;
  }

  /** Bun's side of a close: the socket is gone, then the close handler runs. */
  close(ws: FakeSocket, code: number, reason: string): void {
    ws.readyState = 3;
    this.pendingWebSockets--;
    this.options.websocket.close(ws, code, reason);
  }
}

class FakeBun {
  readonly version = "1.4.5-fake";
  readonly servers: FakeServer[] = [];
  readonly files = new Map<string, string>();
  readonly #clock: FakeClock;

  constructor(clock: FakeClock) {
    this.#clock = clock;
  }

  serve = (options: FakeServeOptions): FakeServer => {
    const server = new FakeServer(options, this.#clock);
    this.servers.push(server);
    return server;
  };

  file = (path: string) => ({ text: () => Promise.resolve(this.files.get(path) ?? "") });
}

class FakeProcess {
  readonly listeners = new Map<string, Set<(...args: unknown[]) => void>>();
  readonly exits: number[] = [];

  on(event: string, listener: (...args: unknown[]) => void): this {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(listener);
    return this;
  }

  off(event: string, listener: (...args: unknown[]) => void): this {
    this.listeners.get(event)?.delete(listener);
    return this;
  }

  emit(event: string, ...args: unknown[]): void {
    for (const listener of this.listeners.get(event) ?? []) listener(...args);
  }

  count(event: string): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  exit(code: number): void {
    this.exits.push(code);
  }
}

/** What the WebSocket handlers saw, in order; `contexts` holds the `WSContext` of every event. */
interface Seen {
  readonly events: string[];
  readonly messages: unknown[];
  readonly closes: { code: number; reason: string }[];
  readonly errors: unknown[];
  readonly contexts: WSContext[];
}

function fakeHost(options: { fdsFree?: () => boolean } = {}) {
  const clock = new FakeClock();
  const bun = new FakeBun(clock);
  const process = new FakeProcess();
  const host: BunHost = {
    Bun: bun as unknown as BunHost["Bun"],
    process: process as unknown as BunHost["process"],
    clock,
    probeFds: options.fdsFree ?? (() => true),
  };
  return { clock, bun, process, runtime: bunRuntime(host) };
}

const SERVE: ServeOptions = {
  host: "127.0.0.1",
  port: 0,
  maxMessageBytes: 1024,
  maxBufferedBytes: 4096,
  handshakeTimeout: 5,
};

/**
 * A listener on the fake Bun for an app whose WebSocket endpoint records every event (`throwIn` names a handler
 * that throws), with a 426 answer after the upgrade helper, as Shoal's app has.
 */
function listen(
  options: { serve?: Partial<ServeOptions>; throwIn?: string; fdsFree?: () => boolean; app?: (app: Hono) => void } = {},
) {
  const { clock, bun, process, runtime } = fakeHost({ fdsFree: options.fdsFree });
  const seen: Seen = { events: [], messages: [], closes: [], errors: [], contexts: [] };
  const refusals: TransportRefusal[] = [];
  const record = (name: string, ws: WSContext) => {
    seen.events.push(name);
    seen.contexts.push(ws);
    if (options.throwIn === name) throw new Error(`${name} failed`);
  };
  // Shoal's connections have an `onPong` next to Hono's handlers.
  const events: WSEvents & { onPong(): void } = {
    onOpen: (_event, ws) => record("open", ws),
    onMessage: (event, ws) => {
      seen.messages.push(event.data);
      record("message", ws);
    },
    onClose: (event, ws) => {
      const { code, reason } = event as CloseEvent;
      seen.closes.push({ code, reason });
      record("close", ws);
    },
    onError: (event, ws) => {
      seen.errors.push((event as ErrorEvent).error);
      record("error", ws);
    },
    onPong: () => void seen.events.push("pong"),
  };
  const app = new Hono();
  options.app?.(app);
  app.get(
    "*",
    runtime.upgradeWebSocket(() => events),
    (c) => c.json({ status: "error", error: "Upgrade Required" }, 426),
  );
  const listener = runtime.serve(app, { ...SERVE, ...options.serve, onRefused: (reason) => refusals.push(reason) });
  const server = bun.servers[0];
  /** Send an upgrade request through Bun's fetch handler and open the socket Bun made of it. */
  const connect = async (into: FakeServer = bun.servers.at(-1)!): Promise<FakeSocket> => {
    const response = await into.options.fetch(upgradeRequest(), into);
    assert.equal(response.status, 200, "Bun ignores the answer to an upgraded request; Hono's is an empty 200");
    return into.open();
  };
  return { clock, bun, process, runtime, listener, server, seen, refusals, connect };
}

function upgradeRequest(): Request {
  return new Request("http://127.0.0.1/", {
    headers: { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" },
  });
}

test("bun serve: Bun.serve gets the address, TLS and Shoal's WebSocket limits; the listener has Bun's port", async () => {
  const tls = { cert: "CERT", key: "KEY" };
  const { listener, server } = listen({ serve: { host: "0.0.0.0", tls } });
  const options = server.options;
  assert.equal(options.hostname, "0.0.0.0");
  assert.equal(options.port, 0);
  assert.deepEqual(options.tls, tls);
  assert.equal(listener.port, 43210, "the port Bun chose for port 0");
  assert.equal(options.idleTimeout, 5, "Bun's HTTP idle timeout is the handshake timeout");
  const ws = options.websocket;
  assert.equal(ws.maxPayloadLength, 1024, "Bun closes with 1009 past maxMessageBytes");
  assert.equal(ws.backpressureLimit, 4096, "Bun drops frames past maxBufferedBytes");
  assert.equal(ws.closeOnBackpressureLimit, false, "Shoal closes slow consumers itself (1013)");
  assert.equal(ws.idleTimeout, 0, "Shoal's keep-alive, not Bun's, closes quiet clients");
  assert.equal(ws.sendPings, false);
  await listener.stop();
});

test("bun serve: Bun's HTTP idle timeout is the handshake timeout rounded up, between 1 and 255 s", async () => {
  for (const [handshakeTimeout, idleTimeout] of [[0.2, 1], [2.5, 3], [600, 255]]) {
    const { listener, server } = listen({ serve: { handshakeTimeout } });
    assert.equal(server.options.idleTimeout, idleTimeout, `handshakeTimeout ${handshakeTimeout}`);
    await listener.stop();
  }
});

test("bun upgrade: open, text and binary messages, pong and close reach the handlers, with one WSContext", async () => {
  const { listener, server, seen, connect } = listen();
  const ws = await connect();
  assert.equal(server.upgrades.length, 1);

  server.options.websocket.message(ws, "hello");
  const bytes = Buffer.from([0, 1, 2, 255]);
  server.options.websocket.message(ws, bytes);
  server.options.websocket.pong(ws);
  server.close(ws, 1000, "bye");

  assert.deepEqual(seen.events, ["open", "message", "message", "pong", "close"]);
  assert.equal(seen.messages[0], "hello");
  assert.deepEqual(new Uint8Array(seen.messages[1] as Uint8Array), new Uint8Array([0, 1, 2, 255]));
  assert.deepEqual(seen.closes, [{ code: 1000, reason: "bye" }]);
  const [first, ...rest] = seen.contexts;
  for (const context of rest) assert.equal(context, first, "one WSContext for the connection's whole life");
  assert.equal(first.raw, ws, "WSContext.raw is Bun's socket");
  await listener.stop();
});

test("bun upgrade: Bun's close codes and reasons reach onClose unchanged", async () => {
  const { listener, server, seen, connect } = listen();
  const cases = [
    { code: 1000, reason: "" },
    { code: 1001, reason: "Going away" },
    { code: 1006, reason: "" }, // the connection dropped without a close frame
    { code: 1009, reason: "Message is too big" }, // Bun itself, past maxPayloadLength
    { code: 4000, reason: "Application" },
  ];
  for (const { code, reason } of cases) server.close(await connect(), code, reason);
  assert.deepEqual(seen.closes, cases);
  await listener.stop();
});

test("bun upgrade: a new connection gets a new WSContext, and the context's send, close and readyState reach Bun", async () => {
  const { listener, server, seen, connect } = listen();
  const a = await connect();
  const b = await connect();
  const [contextA, contextB] = seen.contexts;
  assert.notEqual(contextA, contextB);
  assert.equal(contextB.raw, b);

  contextA.send("to a");
  assert.deepEqual(a.sent, ["to a"]);
  assert.equal(contextA.readyState, 1);
  contextA.close(4001, "done");
  assert.deepEqual(a.closes, [{ code: 4001, reason: "done" }]);
  assert.equal(contextA.readyState, 2, "readyState is read from Bun's socket, not a snapshot");
  server.close(a, 4001, "done");
  server.close(b, 1000, "");
  await listener.stop();
});

test("bun upgrade: a handler that throws goes to onError; Bun's callback does not throw", async () => {
  for (const handler of ["open", "message", "close"]) {
    const { listener, server, seen, connect } = listen({ throwIn: handler });
    const ws = await connect();
    server.options.websocket.message(ws, "x");
    server.close(ws, 1000, "");
    assert.equal(seen.errors.length, 1, `one error, from ${handler}`);
    assert.equal((seen.errors[0] as Error).message, `${handler} failed`);
    await listener.stop();
  }
});

test("bun upgrade: a request Bun refuses to upgrade passes on to the next handler (426), and no socket opens", async () => {
  const { listener, server, seen } = listen();
  server.refuseUpgrades = true;
  const response = await server.options.fetch(upgradeRequest(), server);
  assert.equal(response.status, 426);
  assert.deepEqual(await response.json(), { status: "error", error: "Upgrade Required" });
  assert.equal(response.headers.get("connection"), "close");
  assert.deepEqual(server.upgrades, []);
  assert.deepEqual(seen.events, []);
  await listener.stop();
});

test("bun fetch: every HTTP answer carries Connection: close (Bun would keep an idle connection forever)", async () => {
  const { listener, server } = listen({ app: (app) => app.get("/healthz", (c) => c.json({ status: "ok" })) });
  const response = await server.options.fetch(new Request("http://127.0.0.1/healthz"), server);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("connection"), "close");
  await listener.stop();
});

test("bun fetch: an answer whose headers are immutable (Response.redirect) is copied with Connection: close", async () => {
  const { listener, server } = listen({
    app: (app) => app.get("/old", () => Response.redirect("http://127.0.0.1/new")),
  });
  const response = await server.options.fetch(new Request("http://127.0.0.1/old"), server);
  assert.equal(response.status, 302);
  assert.equal(response.headers.get("location"), "http://127.0.0.1/new");
  assert.equal(response.headers.get("connection"), "close");
  await listener.stop();
});

test("bun fetch: an answer not ready within the handshake timeout becomes 408 and counts as handshake_timeout", async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const { clock, listener, server, refusals } = listen({
    serve: { handshakeTimeout: 2 },
    app: (app) =>
      app.post("/slow", async (c) => {
        await held;
        return c.json({ status: "late" });
      }),
  });
  const answer = server.options.fetch(new Request("http://127.0.0.1/slow", { method: "POST" }), server);
  await clock.advance(2000);
  const response = await answer;
  assert.equal(response.status, 408);
  assert.deepEqual(await response.json(), { status: "error", error: "Request timeout." });
  assert.equal(response.headers.get("connection"), "close");
  assert.deepEqual(refusals, ["handshake_timeout"]);
  release();
  await listener.stop();
});

test("bun fetch: an answer in time clears its deadline (the fake clock fires every due timer)", async () => {
  const { clock, listener, server, refusals } = listen({
    serve: { handshakeTimeout: 2 },
    app: (app) => app.get("/fast", (c) => c.json({ status: "ok" })),
  });
  const response = await server.options.fetch(new Request("http://127.0.0.1/fast"), server);
  assert.equal(response.status, 200);
  await clock.advance(10_000);
  assert.deepEqual(refusals, []);
  await listener.stop();
});

test("bun fetch: an app whose fetch throws gets a 500 JSON answer, not Bun's error page", async () => {
  const { runtime, bun } = fakeHost();
  const broken = { fetch: () => Promise.reject(new Error("bug")) } as unknown as Hono;
  const listener = runtime.serve(broken, SERVE);
  const server = bun.servers[0];
  const response = await server.options.fetch(new Request("http://127.0.0.1/"), server);
  assert.equal(response.status, 500);
  assert.deepEqual(await response.json(), { status: "error", error: "Internal server error." });
  assert.equal(response.headers.get("connection"), "close");
  await listener.stop();
});

test("bun socket.send: Bun's answer becomes Shoal's 'keeping up' (written, queued under the limit) or not", async () => {
  const { runtime } = fakeHost();
  const { socket } = runtime;
  const ws = new FakeSocket();
  assert.equal(socket.send(ws, "written", 4096), true);
  ws.sendResult = -1; // queued behind unsent bytes
  ws.buffered = 4096;
  assert.equal(socket.send(ws, "queued at the limit", 4096), true);
  ws.buffered = 4097;
  assert.equal(socket.send(ws, "queued past the limit", 4096), false);
  ws.sendResult = 0; // dropped: Bun's buffer was past backpressureLimit
  ws.buffered = 0;
  assert.equal(socket.send(ws, "dropped", 4096), false);
  assert.equal(ws.sent.length, 4);
  assert.equal(socket.bufferedAmount(ws), 0);
  ws.buffered = 12345;
  assert.equal(socket.bufferedAmount(ws), 12345);
});

test("bun socket.send: on a closing or closed socket nothing is sent, nothing throws, and no one is blamed", () => {
  const { runtime } = fakeHost();
  for (const readyState of [2, 3]) {
    const ws = new FakeSocket();
    ws.readyState = readyState;
    assert.equal(runtime.socket.send(ws, "late", 4096), true);
    assert.deepEqual(ws.sent, []);
  }
});

test("bun socket: ping, close, terminate and native topics go to Bun's socket; no upgrade options", () => {
  const { runtime } = fakeHost();
  const { socket } = runtime;
  const ws = new FakeSocket();
  socket.ping!(ws);
  assert.equal(ws.pings, 1);
  socket.close(ws, 1013, "Slow consumer");
  assert.deepEqual(ws.closes, [{ code: 1013, reason: "Slow consumer" }]);
  socket.terminate!(ws);
  assert.equal(ws.terminated, true);
  socket.topics!.subscribe(ws, "news");
  socket.topics!.subscribe(ws, "sport");
  socket.topics!.unsubscribe(ws, "news");
  assert.deepEqual([...ws.topics], ["sport"]);
  assert.equal(socket.upgradeOptions({ interval: 15, timeout: 15 }), undefined);
  assert.equal(socket.watchKeepAlive, undefined, "Bun pings itself (socket.ping) and reports pongs");
});

test("bun listener: publish is Bun's server.publish", async () => {
  const { listener, server } = listen();
  listener.publish!("news", "frame");
  assert.deepEqual(server.published, [{ topic: "news", text: "frame" }]);
  await listener.stop();
});

test("bun stop: stops listening at once, then closes the server as soon as the last socket has closed", async () => {
  const { clock, listener, server, connect } = listen();
  const ws = await connect();
  const start = clock.now();
  const stopped = listener.stop();
  assert.deepEqual(server.stops, [{ force: false, at: start, open: 1 }], "listening stopped; the socket goes on");
  server.close(ws, 1000, ""); // the client answered the router's close frame
  await stopped;
  assert.deepEqual(server.stops, [{ force: false, at: start, open: 1 }, { force: true, at: start, open: 0 }]);
});

test("bun stop: a client that never answers its close frame is cut after CLOSE_WAIT_MS", async () => {
  const { clock, listener, server, connect } = listen();
  await connect();
  const start = clock.now();
  const stopped = listener.stop();
  await clock.advance(CLOSE_WAIT_MS);
  await stopped;
  assert.deepEqual(server.stops.map((s) => s.force), [false, true]);
  assert.equal(server.stops[1].at, start + CLOSE_WAIT_MS, "forced only once the wait was over");
  assert.equal(server.stops[1].open, 1);
});

test("bun stop: a second stop() does nothing", async () => {
  const { listener, server } = listen();
  await listener.stop();
  await listener.stop();
  assert.deepEqual(server.stops.map((s) => s.force), [false, true]);
});

test("bun fd limit: out of descriptors, the listener stops listening (fd_limit); then listens again on its port", async () => {
  let free = true;
  const { clock, bun, listener, server, refusals, connect } = listen({ fdsFree: () => free });
  const old = await connect();
  free = false;
  await clock.advance(1000);
  assert.deepEqual(refusals, ["fd_limit"]);
  assert.deepEqual(server.stops.map((s) => s.force), [false], "listening stopped; the open socket goes on");
  assert.equal(bun.servers.length, 1);

  free = true;
  await clock.advance(1000);
  assert.equal(bun.servers.length, 2, "a new Bun.serve");
  const resumed = bun.servers[1];
  assert.equal(resumed.options.port, listener.port, "on the same port");

  // Both servers have sockets: a native publish goes to both.
  const fresh = await connect(resumed);
  listener.publish!("news", "frame");
  assert.equal(server.published.length, 1);
  assert.equal(resumed.published.length, 1);

  // The earlier server's last socket closes: it is stopped and forgotten.
  server.close(old, 1000, "");
  assert.deepEqual(server.stops.map((s) => s.force), [false, true]);
  listener.publish!("news", "again");
  assert.equal(server.published.length, 1);
  assert.equal(resumed.published.length, 2);
  resumed.close(fresh, 1000, "");
  await listener.stop();
});

test("bun signals: SIGINT and SIGTERM reach the handler; the returned function removes both listeners", () => {
  const { runtime, process } = fakeHost();
  const signals: string[] = [];
  const remove = runtime.onSignal((signal) => signals.push(signal));
  process.emit("SIGINT");
  process.emit("SIGTERM");
  assert.deepEqual(signals, ["SIGINT", "SIGTERM"]);
  remove();
  assert.equal(process.count("SIGINT"), 0);
  assert.equal(process.count("SIGTERM"), 0);
});

test("bun uncaught: process's uncaughtException and unhandledRejection reach the handler with their kind", () => {
  const { runtime, process } = fakeHost();
  const seen: [unknown, string][] = [];
  runtime.onUncaught((error, kind) => seen.push([error, kind]));
  const error = new Error("boom");
  process.emit("uncaughtException", error);
  process.emit("unhandledRejection", "reason");
  assert.deepEqual(seen, [[error, "exception"], ["reason", "rejection"]]);
});

test("bun runtime: name, version, exit and readTextFile come from Bun and process", async () => {
  const { runtime, bun, process } = fakeHost();
  assert.equal(runtime.name, "bun");
  assert.equal(runtime.version, "1.4.5-fake");
  bun.files.set("/etc/shoal.json", "{}");
  assert.equal(await runtime.readTextFile("/etc/shoal.json"), "{}");
  const exit: (code: number) => void = runtime.exit;
  exit(3);
  assert.deepEqual(process.exits, [3]);
});

test("bun fetchWithCa: fetch gets Bun's tls.ca next to the caller's options", async () => {
  const { runtime } = fakeHost();
  const original = globalThis.fetch;
  const calls: { input: unknown; init: Record<string, unknown> }[] = [];
  globalThis.fetch = ((input: unknown, init: Record<string, unknown>) => {
    calls.push({ input, init });
    return Promise.resolve(new Response("ok"));
  }) as typeof fetch;
  try {
    const response = await runtime.fetchWithCa("PEM")("https://service.test/hook", { method: "POST", body: "x" });
    assert.equal(await response.text(), "ok");
  } finally {
    globalThis.fetch = original;
  }
  assert.equal(calls.length, 1);
  assert.equal(calls[0].input, "https://service.test/hook");
  assert.deepEqual(calls[0].init, { method: "POST", body: "x", tls: { ca: "PEM" } });
});
