// The Deno adapter (src/runtime/deno.ts) over a faked `Deno`, global scope and HTTP server: every translation between
// Deno's WebSocket and Shoal's callbacks, without a real server, so it runs under Bun as well as Deno. What needs the
// real runtime (the handoff to Deno's native WebSocket, its keep-alive) is in deno_server.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Hono } from "hono";
import type { WSContext, WSEvents } from "hono/ws";
import { type DenoHost, denoRuntime } from "../../src/runtime/deno.ts";
import {
  type DenoFetch,
  denoKeepAlive,
  type DenoRequestEnv,
  type DenoServerOptions,
  type UpgradeHandoff,
} from "../../src/runtime/deno_server.ts";
import type { TransportRefusal } from "../../src/runtime/runtime.ts";

/**
 * A Deno server WebSocket: the adapter installs its `on*` handlers, the test fires them (`emit`). `send` behaves as
 * Deno 2.9's does: it throws before the socket is open and drops the frame once it is closing or closed.
 */
class FakeSocket {
  readyState = 0;
  binaryType = "blob";
  protocol = "";
  url = "";
  bufferedAmount = 0;
  readonly sent: unknown[] = [];
  readonly closes: { code?: number; reason?: string }[] = [];
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;

  send(data: unknown): void {
    if (this.readyState === 0) throw new DOMException("'readyState' not OPEN", "InvalidStateError");
    if (this.readyState === 1) this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closes.push({ code, reason });
    if (this.readyState < 2) this.readyState = 2;
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }

  message(data: string | ArrayBuffer): void {
    this.onmessage?.(new MessageEvent("message", { data }));
  }

  closed(code: number, reason: string): void {
    this.readyState = 3;
    this.onclose?.(new CloseEvent("close", { code, reason, wasClean: code !== 1006 }));
  }

  error(): void {
    this.onerror?.(new Event("error"));
  }
}

/** The parts of `Deno` the adapter uses; `upgradeWebSocket` records its calls and can be told to refuse. */
class FakeDeno {
  readonly version = { deno: "2.9.5-fake", v8: "", typescript: "" };
  readonly upgrades: { request: Request; options: Record<string, unknown>; socket: FakeSocket; response: Response }[] =
    [];
  refusal: Error | undefined;
  readonly signals = new Map<string, Set<() => void>>();
  readonly exits: number[] = [];
  readonly files = new Map<string, string>();
  readonly clients: { caCerts?: string[] }[] = [];

  upgradeWebSocket = (request: Request, options: Record<string, unknown>) => {
    if (this.refusal) throw this.refusal;
    const socket = new FakeSocket();
    if (typeof options.protocol === "string") socket.protocol = options.protocol;
    // Deno's answer is a 101; a Response cannot be built with that status here, so a header marks it.
    const response = new Response(null, { headers: { "x-deno-upgrade": String(this.upgrades.length) } });
    this.upgrades.push({ request, options, socket, response });
    return { socket, response };
  };

  addSignalListener = (signal: string, listener: () => void) => {
    if (!this.signals.has(signal)) this.signals.set(signal, new Set());
    this.signals.get(signal)!.add(listener);
  };

  removeSignalListener = (signal: string, listener: () => void) => void this.signals.get(signal)?.delete(listener);

  signal(name: string): void {
    for (const listener of this.signals.get(name) ?? []) listener();
  }

  exit = (code: number) => void this.exits.push(code);
  readTextFile = (path: string) => Promise.resolve(this.files.get(path) ?? "");
  createHttpClient = (options: { caCerts?: string[] }) => {
    this.clients.push(options);
    return { marker: "client", options };
  };
}

/** Shoal's HTTP server as the adapter sees it: records how it was started and stopped. */
class FakeServer {
  readonly fetch: DenoFetch;
  readonly options: DenoServerOptions;
  readonly port = 43211;
  stops = 0;

  constructor(fetch: DenoFetch, options: DenoServerOptions) {
    this.fetch = fetch;
    this.options = options;
  }

  stop(): Promise<void> {
    this.stops++;
    return Promise.resolve();
  }
}

function fakeHost() {
  const deno = new FakeDeno();
  const global = new EventTarget();
  const servers: FakeServer[] = [];
  const host: DenoHost = {
    Deno: deno as unknown as DenoHost["Deno"],
    global: global as unknown as DenoHost["global"],
    listen: (fetch, options) => {
      const server = new FakeServer(fetch, options);
      servers.push(server);
      return server;
    },
  };
  return { deno, global, servers, runtime: denoRuntime(host) };
}

/** What the WebSocket handlers saw, in order; `contexts` holds the `WSContext` of every event. */
interface Seen {
  readonly events: string[];
  readonly messages: unknown[];
  readonly closes: { code: number; reason: string }[];
  readonly contexts: WSContext[];
}

/**
 * An app whose WebSocket endpoint records every event, with Shoal's keep-alive options for `ping`, and a 426 answer
 * after the upgrade helper, as Shoal's app has.
 */
function upgradeApp(ping = { interval: 0, timeout: 0 }) {
  const fake = fakeHost();
  const seen: Seen = { events: [], messages: [], closes: [], contexts: [] };
  const record = (name: string, ws: WSContext) => {
    seen.events.push(name);
    seen.contexts.push(ws);
  };
  const events: WSEvents = {
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
    onError: (_event, ws) => record("error", ws),
  };
  const app = new Hono();
  app.get(
    "*",
    fake.runtime.upgradeWebSocket(() => events, fake.runtime.socket.upgradeOptions(ping)),
    (c) => c.json({ status: "error", error: "Upgrade Required" }, 426),
  );
  /** Send an upgrade request (with `headers` added) through the app; the socket Deno made of it, if any. */
  const upgrade = async (headers: Record<string, string> = {}, env?: DenoRequestEnv) => {
    const request = new Request("http://127.0.0.1/", {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        ...headers,
      },
    });
    const response = await app.fetch(request, env);
    return { response, socket: fake.deno.upgrades.at(-1)?.socket };
  };
  return { ...fake, app, seen, upgrade };
}

test("deno upgrade: Deno's socket and answer; 'Upgrade: WebSocket' in any case; the first subprotocol", async () => {
  const { deno, upgrade } = upgradeApp();
  const { response, socket } = await upgrade({ upgrade: "WebSocket", "sec-websocket-protocol": "v2.shoal, v1.shoal" });
  assert.equal(deno.upgrades.length, 1);
  assert.equal(response.headers.get("x-deno-upgrade"), "0", "the answer is Deno's");
  assert.equal(deno.upgrades[0].request.headers.get("sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
  assert.deepEqual(deno.upgrades[0].options, { protocol: "v2.shoal", idleTimeout: 0 });
  assert.equal(socket!.binaryType, "arraybuffer", "binary frames arrive as ArrayBuffers, never Blobs");
});

test("deno upgrade: a request that does not ask for a WebSocket passes on to the next handler (426)", async () => {
  const { deno, app } = upgradeApp();
  const response = await app.fetch(new Request("http://127.0.0.1/", { headers: { upgrade: "h2c" } }));
  assert.equal(response.status, 426);
  assert.deepEqual(deno.upgrades, []);
});

test("deno upgrade: a request Deno refuses to upgrade gets 400 JSON, not a 500", async () => {
  const { deno, seen, upgrade } = upgradeApp();
  deno.refusal = new TypeError("Invalid Header: 'sec-websocket-key' header must be set");
  const { response, socket } = await upgrade();
  assert.equal(response.status, 400);
  assert.deepEqual(await response.json(), { status: "error", error: "Invalid WebSocket upgrade request." });
  assert.equal(socket, undefined);
  assert.deepEqual(seen.events, []);
});

test("deno upgrade: Shoal's keep-alive sets Deno's idleTimeout; without pings Deno's is off", async () => {
  const ping = { interval: 10, timeout: 5 };
  const keepAlive = denoKeepAlive(ping)!;
  const withPings = upgradeApp(ping);
  assert.deepEqual(withPings.runtime.socket.upgradeOptions(ping), keepAlive);
  await withPings.upgrade();
  assert.equal(withPings.deno.upgrades[0].options.idleTimeout, keepAlive.idleTimeout);
  // Deno closes (1001 "No response from ping frame.") after idleTimeout of silence: never before Shoal would.
  assert.ok(keepAlive.idleTimeout >= ping.interval + ping.timeout);

  const withoutPings = upgradeApp({ interval: 0, timeout: 5 });
  assert.equal(withoutPings.runtime.socket.upgradeOptions({ interval: 0, timeout: 5 }), undefined);
  await withoutPings.upgrade();
  assert.equal(withoutPings.deno.upgrades[0].options.idleTimeout, 0);
});

test("deno upgrade: Shoal's server hands its connection to Deno and adopts the socket before the handlers", async () => {
  const ping = { interval: 10, timeout: 5 };
  const { deno, upgrade } = upgradeApp(ping);
  const adopted: { socket: unknown; keepAlive: unknown; handlersSet: boolean }[] = [];
  const head = new Uint8Array([1, 2, 3]);
  const handoff: UpgradeHandoff = {
    socket: { marker: "node socket" },
    head,
    adopt: (socket, keepAlive) => {
      adopted.push({ socket, keepAlive, handlersSet: (socket as unknown as FakeSocket).onclose !== null });
    },
  };
  const remoteAddr = { transport: "tcp", hostname: "127.0.0.1", port: 5000 } as const;
  const { socket } = await upgrade({}, { remoteAddr, upgrade: handoff });
  assert.equal(deno.upgrades[0].options.socket, handoff.socket);
  assert.equal(deno.upgrades[0].options.head, head);
  assert.deepEqual(adopted, [{ socket, keepAlive: denoKeepAlive(ping), handlersSet: false }]);
});

test("deno socket: open, text and binary messages, close and error reach the handlers, with one WSContext", async () => {
  const { seen, upgrade } = upgradeApp();
  const { socket } = await upgrade();
  socket!.open();
  socket!.message("hello");
  const bytes = new Uint8Array([0, 1, 2, 255]).buffer;
  socket!.message(bytes);
  socket!.error();
  socket!.closed(1000, "bye");
  assert.deepEqual(seen.events, ["open", "message", "message", "error", "close"]);
  assert.deepEqual(seen.messages, ["hello", bytes]);
  assert.deepEqual(seen.closes, [{ code: 1000, reason: "bye" }]);
  const [first, ...rest] = seen.contexts;
  for (const context of rest) assert.equal(context, first, "one WSContext for the connection's whole life");
  assert.equal(first.raw, socket, "WSContext.raw is Deno's socket");
});

test("deno socket: Deno's close codes and reasons reach onClose unchanged, its keep-alive's 1001 among them", async () => {
  const { seen, upgrade } = upgradeApp();
  const cases = [
    { code: 1000, reason: "" },
    { code: 1001, reason: "No response from ping frame." }, // Deno's own keep-alive gave up
    { code: 1001, reason: "" }, // Deno's idleTimeout without a frame hook
    { code: 1006, reason: "" }, // dropped without a close frame (Deno: also on invalid UTF-8)
    { code: 1009, reason: "Message too big" },
    { code: 4000, reason: "Application" },
  ];
  for (const { code, reason } of cases) {
    const { socket } = await upgrade();
    socket!.open();
    socket!.closed(code, reason);
  }
  assert.deepEqual(seen.closes, cases);
});

test("deno socket: the WSContext's send, close and readyState reach Deno's socket", async () => {
  const { seen, upgrade } = upgradeApp();
  const { socket } = await upgrade();
  socket!.open();
  const context = seen.contexts[0];
  context.send("to client");
  assert.deepEqual(socket!.sent, ["to client"]);
  assert.equal(context.readyState, 1);
  context.close(4001, "done");
  assert.deepEqual(socket!.closes, [{ code: 4001, reason: "done" }]);
  assert.equal(context.readyState, 2, "readyState is read from Deno's socket, not a snapshot");
});

test("deno socket.send: sends and answers true whatever is buffered (the connection measures bufferedAmount)", () => {
  const { runtime } = fakeHost();
  const { socket } = runtime;
  const ws = new FakeSocket();
  ws.readyState = 1;
  ws.bufferedAmount = 10 * 1024 * 1024;
  assert.equal(socket.send(ws, "frame", 4096), true);
  assert.deepEqual(ws.sent, ["frame"]);
  assert.equal(socket.bufferedAmount(ws), 10 * 1024 * 1024);
  ws.bufferedAmount = 7;
  assert.equal(socket.bufferedAmount(ws), 7);
});

test("deno socket.send: on a closing or closed socket Deno drops the frame and nothing throws", () => {
  const { runtime } = fakeHost();
  for (const readyState of [2, 3]) {
    const ws = new FakeSocket();
    ws.readyState = readyState;
    assert.equal(runtime.socket.send(ws, "late", 4096), true);
    assert.deepEqual(ws.sent, []);
  }
  // Before the open event Deno throws; the connection (which only sends after its open) catches it.
  assert.throws(() => runtime.socket.send(new FakeSocket(), "early", 4096), { name: "InvalidStateError" });
});

test("deno socket: close goes to Deno's socket; no ping, terminate or topics (Deno has none)", () => {
  const { runtime } = fakeHost();
  const { socket } = runtime;
  const ws = new FakeSocket();
  ws.readyState = 1;
  socket.close(ws, 1013, "Slow consumer");
  assert.deepEqual(ws.closes, [{ code: 1013, reason: "Slow consumer" }]);
  assert.equal(socket.ping, undefined, "Deno pings through idleTimeout (upgradeOptions)");
  assert.equal(socket.terminate, undefined);
  assert.equal(socket.topics, undefined);
  assert.equal(typeof socket.watchKeepAlive, "function");
});

test("deno serve: Shoal's server gets the address, TLS, handshake deadline in ms and refusal hook", async () => {
  const { runtime, servers } = fakeHost();
  const refusals: TransportRefusal[] = [];
  const app = new Hono();
  app.get("/env", (c) => c.json({ remote: (c.env as DenoRequestEnv).remoteAddr.port }));
  const tls = { cert: "CERT", key: "KEY" };
  const listener = runtime.serve(app, {
    host: "0.0.0.0",
    port: 0,
    tls,
    maxMessageBytes: 1024,
    maxBufferedBytes: 4096,
    handshakeTimeout: 2.5,
    onRefused: (reason) => refusals.push(reason),
  });
  assert.equal(servers.length, 1);
  const server = servers[0];
  assert.equal(server.options.hostname, "0.0.0.0");
  assert.equal(server.options.port, 0);
  assert.deepEqual(server.options.tls, tls);
  assert.equal(server.options.handshakeTimeoutMs, 2500);
  server.options.onRefused!("handshake_timeout");
  assert.deepEqual(refusals, ["handshake_timeout"]);
  assert.equal(listener.port, 43211, "the port the server listens on");
  assert.equal(listener.publish, undefined, "no native fan-out on Deno");

  // Requests reach the app with the server's env.
  const remoteAddr = { transport: "tcp", hostname: "127.0.0.1", port: 5000 } as const;
  const response = await server.fetch(new Request("http://127.0.0.1/env"), { remoteAddr });
  assert.deepEqual(await response.json(), { remote: 5000 });

  await listener.stop();
  assert.equal(server.stops, 1);
});

test("deno signals: SIGINT and SIGTERM reach the handler; the returned function removes both listeners", () => {
  const { runtime, deno } = fakeHost();
  const signals: string[] = [];
  const remove = runtime.onSignal((signal) => signals.push(signal));
  deno.signal("SIGINT");
  deno.signal("SIGTERM");
  assert.deepEqual(signals, ["SIGINT", "SIGTERM"]);
  remove();
  assert.equal(deno.signals.get("SIGINT")!.size, 0);
  assert.equal(deno.signals.get("SIGTERM")!.size, 0);
});

test("deno uncaught: the global error and unhandledrejection events reach the handler and are cancelled", () => {
  const { runtime, global } = fakeHost();
  const seen: [unknown, string][] = [];
  runtime.onUncaught((error, kind) => seen.push([error, kind]));
  const error = new Error("boom");
  const exception = new ErrorEvent("error", { error, cancelable: true });
  global.dispatchEvent(exception);
  const rejection = Object.assign(new Event("unhandledrejection", { cancelable: true }), { reason: "reason" });
  global.dispatchEvent(rejection);
  assert.deepEqual(seen, [[error, "exception"], ["reason", "rejection"]]);
  assert.equal(exception.defaultPrevented, true, "Deno would otherwise end the process");
  assert.equal(rejection.defaultPrevented, true);
});

test("deno runtime: name, version, exit and readTextFile come from Deno", async () => {
  const { runtime, deno } = fakeHost();
  assert.equal(runtime.name, "deno");
  assert.equal(runtime.version, "2.9.5-fake");
  deno.files.set("/etc/shoal.json", "{}");
  assert.equal(await runtime.readTextFile("/etc/shoal.json"), "{}");
  const exit: (code: number) => void = runtime.exit;
  exit(3);
  assert.deepEqual(deno.exits, [3]);
});

test("deno fetchWithCa: one Deno HTTP client trusting the CA, passed to every fetch", async () => {
  const { runtime, deno } = fakeHost();
  const original = globalThis.fetch;
  const calls: { input: unknown; init: Record<string, unknown> }[] = [];
  globalThis.fetch = ((input: unknown, init: Record<string, unknown>) => {
    calls.push({ input, init });
    return Promise.resolve(new Response("ok"));
  }) as typeof fetch;
  try {
    const fetchWithCa = runtime.fetchWithCa("PEM");
    await fetchWithCa("https://service.test/a", { method: "POST" });
    await fetchWithCa("https://service.test/b");
  } finally {
    globalThis.fetch = original;
  }
  assert.deepEqual(deno.clients, [{ caCerts: ["PEM"] }]);
  const client = calls[0].init.client;
  assert.deepEqual(calls, [
    { input: "https://service.test/a", init: { method: "POST", client } },
    { input: "https://service.test/b", init: { client } },
  ]);
  assert.equal((client as { marker: string }).marker, "client");
});
