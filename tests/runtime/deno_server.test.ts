// Shoal's Deno server and upgrade helper with a small Hono app: what only Deno has (the handoff to Deno's native
// WebSocket, its keep-alive, its refusals). Skipped under Bun.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Hono } from "hono";
import { RawWsClient } from "../support/raw_ws_client.ts";

const onDeno = "Deno" in globalThis;
const skip = !onDeno && "Deno only";

async function denoModules() {
  const runtime = (await import("../../src/runtime/deno.ts")).runtime;
  const { DenoHttpServer } = await import("../../src/runtime/deno_server.ts");
  return { runtime, DenoHttpServer };
}

/** An app whose WebSocket endpoint echoes text and reports opens and closes. */
async function echoServer(options: { ping?: { interval: number; timeout: number }; onOpen?: (raw: unknown) => void }) {
  const { runtime, DenoHttpServer } = await denoModules();
  const events: string[] = [];
  const app = new Hono();
  app.get(
    "*",
    runtime.upgradeWebSocket(() => ({
      onOpen: (_event, ws) => {
        events.push("open");
        options.onOpen?.(ws.raw);
      },
      onMessage: (event, ws) => ws.send(`echo ${event.data}`),
      onClose: (event) => void events.push(`close ${(event as CloseEvent).code}`),
    }), runtime.socket.upgradeOptions(options.ping ?? { interval: 0, timeout: 0 })),
    (c) => c.json({ status: "error", error: "Upgrade Required" }, 426),
  );
  const server = new DenoHttpServer((request, env) => app.fetch(request, env), {
    hostname: "127.0.0.1",
    port: 0,
    handshakeTimeoutMs: 5000,
  });
  return { server, events, runtime, url: `ws://127.0.0.1:${server.port}/` };
}

test("deno upgrade: a request Deno.upgradeWebSocket throws on gets 400 JSON, not a 500", { skip }, async () => {
  const { runtime } = await denoModules();
  const app = new Hono();
  app.get("*", runtime.upgradeWebSocket(() => ({})));
  const original = Deno.upgradeWebSocket;
  Deno.upgradeWebSocket = () => {
    throw new TypeError("Invalid Header: 'sec-websocket-key' header must be set");
  };
  try {
    const response = await app.request("/", { headers: { upgrade: "websocket", connection: "Upgrade" } });
    assert.equal(response.status, 400);
    assert.deepEqual(await response.json(), { status: "error", error: "Invalid WebSocket upgrade request." });
  } finally {
    Deno.upgradeWebSocket = original;
  }
});

test("deno server: a WebSocket is handed to Deno (echo works); stop() resolves as soon as its close handshake ends", {
  skip,
}, async () => {
  const { server, events } = await echoServer({});
  const client = await RawWsClient.connect(`ws://127.0.0.1:${server.port}/`);
  client.send("hello");
  assert.equal(await client.nextText(), "echo hello");
  // The server closes (as the router does at shutdown), the client answers: stop() resolves at once after it.
  const closing = client.closed;
  const started = Date.now();
  const stopped = server.stop();
  // Nothing closes the socket but the close handshake, which this test starts from the client side.
  await client.close(1000);
  await stopped;
  await closing;
  assert.ok(Date.now() - started < 1500, "stop() did not wait for the bound");
  assert.deepEqual(events, ["open", "close 1000"]);
});

test("deno server: stop() gives up on a client that never answers the close after about 2 s", { skip }, async () => {
  let socket: WebSocket | undefined;
  const { server } = await echoServer({ onOpen: (raw) => (socket = raw as WebSocket) });
  const client = await RawWsClient.connect(`ws://127.0.0.1:${server.port}/`);
  client.pauseReading(); // never sees, so never answers, the close frame
  while (!socket) await new Promise((resolve) => setTimeout(resolve, 10));
  socket.close(1000, "");
  const started = Date.now();
  await server.stop();
  const waited = Date.now() - started;
  assert.ok(waited >= 1800 && waited < 3000, `stop() waited ${waited} ms`);
  client.destroy();
});

test(
  "deno keep-alive: a silent client is reported to watchKeepAlive's peer, not closed by Deno with 1001",
  { skip },
  async () => {
    const timedOut: number[] = [];
    let runtimeRef: Awaited<ReturnType<typeof denoModules>>["runtime"] | undefined;
    const { server, runtime } = await echoServer({
      ping: { interval: 0.5, timeout: 0.5 },
      onOpen: (raw) =>
        runtimeRef!.socket.watchKeepAlive!(raw, {
          pingTimedOut: () => {
            timedOut.push(Date.now());
            (raw as WebSocket).close(1000, "");
          },
        }),
    });
    runtimeRef = runtime;
    const started = Date.now();
    const silent = await RawWsClient.connect(`ws://127.0.0.1:${server.port}/`, { answerPings: false });
    const answering = await RawWsClient.connect(`ws://127.0.0.1:${server.port}/`);
    const closed = await silent.waitClosed(4000);
    assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 1000, reason: "" });
    assert.equal(timedOut.length, 1, "the peer was told once");
    assert.ok(timedOut[0] - started >= 900 && timedOut[0] - started < 2500, `told after ${timedOut[0] - started} ms`);
    assert.ok(silent.pings.length >= 1, "Deno pinged it first");
    await answering.waitPings(3, 5000);
    assert.equal(answering.closeInfo, undefined);
    await answering.close(1000);
    await server.stop();
  },
);

test("deno server: refusals are reported: a connection without a request, a bad head; an idle keep-alive is not", {
  skip,
}, async () => {
  const { DenoHttpServer } = await denoModules();
  const refused: string[] = [];
  const server = new DenoHttpServer(() => new Response("ok"), {
    hostname: "127.0.0.1",
    port: 0,
    handshakeTimeoutMs: 300,
    onRefused: (reason) => void refused.push(reason),
  });
  const { connect } = await import("node:net");
  const open = (send?: string) =>
    new Promise<string>((resolve) => {
      const socket = connect(server.port, "127.0.0.1");
      let received = "";
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => (received += chunk));
      socket.on("error", () => {});
      socket.on("close", () => resolve(received));
      if (send) socket.once("connect", () => socket.write(send));
    });
  const [idle, bad, keptAlive] = await Promise.all([
    open(),
    open("GET / HTTP/1.1\r\n\r\n"),
    open("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
  ]);
  assert.equal(idle, "");
  assert.match(bad, /^HTTP\/1\.1 400 /);
  assert.match(keptAlive, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok$/);
  assert.deepEqual(refused.sort(), ["bad_request", "handshake_timeout"]);
  await server.stop();
});
