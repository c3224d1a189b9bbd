// Connections and the process end to end: frame size limit, disconnect and shutdown callbacks, SIGTERM, the
// upgrade handshake and the health endpoints.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { connect, type Socket } from "node:net";
import { test } from "node:test";
import { readAnswer } from "../support/e2e.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

function unsubscribeCallbacks(service: TestService): Record<string, unknown> {
  return {
    requireAuthentication: false,
    extraFields: ["v"],
    beforeUnsubscribe: service.url("/before_unsubscribe"),
    onUnsubscribe: service.url("/on_unsubscribe"),
  };
}

test("a frame over ws.maxMessageBytes closes the connection with 1009; one at the limit is served", async () => {
  await using shoal = await ShoalProcess.start({ ws: { maxMessageBytes: 1000 } });
  await using client = await WsClient.connect(shoal.url);

  const frame = (bytes: number) => {
    const base = JSON.stringify({ event: "ping", data: "" });
    return JSON.stringify({ event: "ping", data: "x".repeat(bytes - base.length) });
  };
  assert.equal(frame(1000).length, 1000);
  client.send(frame(1000));
  assert.deepEqual(await client.next(), { event: "pong", data: "x".repeat(128) });

  client.send(frame(1001));
  assert.equal(await client.waitClosed(), 1009);
  assert.deepEqual(client.seen.length, 1, `no reply to the oversized frame; frames: ${client.seen.join(" | ")}`);
});

test("a client that disconnects while subscribed triggers before_unsubscribe then on_unsubscribe, newest first", async () => {
  await using service = await TestService.start();
  service.on("/before_unsubscribe", { status: "error", error: "ignored on disconnect" }).on("/on_unsubscribe", {
    status: "ok",
  });
  await using shoal = await ShoalProcess.start({ services: { open: unsubscribeCallbacks(service) } });
  const client = await WsClient.connect(shoal.url);
  try {
    client.send({ event: "subscribe", subscription: "open.a", v: 1 });
    assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", v: 1, subscription: "open.a" });
    client.send({ event: "subscribe", subscription: "open.b" });
    assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "open.b" });
    assert.deepEqual(service.paths(), []);
  } finally {
    await client.close();
  }

  await service.waitFor("/on_unsubscribe", 2);
  assert.deepEqual(
    service.requests.map((r) => [r.path, r.body]),
    [
      ["/before_unsubscribe", { subscription: "open.b" }],
      ["/on_unsubscribe", { subscription: "open.b" }],
      ["/before_unsubscribe", { subscription: "open.a", v: 1 }],
      ["/on_unsubscribe", { subscription: "open.a", v: 1 }],
    ],
  );
  // The server is still serving.
  await using again = await WsClient.connect(shoal.url);
  again.send({ event: "ping", data: "after" });
  assert.deepEqual(await again.next(), { event: "pong", data: "after" });
});

test("SIGTERM with a subscribed client: close 1000, unsubscribe callbacks, exit code 0", async () => {
  await using service = await TestService.start();
  service.on("/before_unsubscribe", { status: "ok" }).on("/on_unsubscribe", { status: "ok" });
  await using shoal = await ShoalProcess.start({
    services: { open: unsubscribeCallbacks(service) },
    shutdown: { drainTimeout: 2 },
  });
  await using client = await WsClient.connect(shoal.url);
  await using idle = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "open.a", v: "x" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", v: "x", subscription: "open.a" });
  idle.send({ event: "ping" });
  assert.deepEqual(await idle.next(), { event: "pong", data: null });

  assert.equal(await shoal.stop("SIGTERM", 5000), 0);
  assert.deepEqual(
    { subscribed: await client.waitClosed(), idle: await idle.waitClosed() },
    { subscribed: 1000, idle: 1000 },
    "both clients get close 1000",
  );
  assert.deepEqual(client.seen.length, 1, `no message before the close; frames: ${client.seen.join(" | ")}`);
  assert.deepEqual(
    service.requests.map((r) => [r.path, r.body]),
    [
      ["/before_unsubscribe", { subscription: "open.a", v: "x" }],
      ["/on_unsubscribe", { subscription: "open.a", v: "x" }],
    ],
  );
  assert.equal(shoal.logsWith("done").length, 1, "the shutdown finished");
});

test("SIGTERM after a client came and went exits 0 at once", async () => {
  await using shoal = await ShoalProcess.start({});
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "ping" });
  assert.deepEqual(await client.next(), { event: "pong", data: null });
  await client.close();
  await shoal.waitForLog((line) => line.message === "connection closed");
  assert.equal(await shoal.stop("SIGTERM", 5000), 0);
  assert.deepEqual(shoal.logs.slice(-3).map((l) => l.message), ["stop requested", "shutting down", "done"]);
});

test("SIGTERM sent right after the ready line is a graceful shutdown too", async () => {
  // Repeated because the window is small: a signal that comes before the handlers are installed kills the
  // process at once (no "done", exit by signal), and that must never happen once "shoal ready" is logged.
  for (let i = 0; i < 20; i++) {
    await using shoal = await ShoalProcess.start({});
    const code = await shoal.stop("SIGTERM", 5000);
    const { signal } = await shoal.exited;
    assert.deepEqual(
      { code, signal, done: shoal.logsWith("done").length },
      { code: 0, signal: null, done: 1 },
      `start ${i + 1}: SIGTERM right after "shoal ready"\n${shoal.describe()}`,
    );
  }
});

/** Everything a raw socket received, with a bounded wait for enough of it. */
class RawReader {
  data: Buffer = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      this.#wake?.();
    });
    socket.on("close", () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  /** Resolve with the data once `enough(data)` holds; reject on close or after `timeoutMs`. */
  until(enough: (data: Buffer) => boolean, timeoutMs = 3000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`timeout; got ${JSON.stringify(this.data.toString("latin1"))}`)), timeoutMs);
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.#wake = undefined;
        if (error) reject(error);
        else resolve(this.data);
      };
      this.#wake = () => {
        if (enough(this.data)) done();
        else if (this.#closed) done(new Error(`socket closed; got ${JSON.stringify(this.data.toString("latin1"))}`));
      };
      this.#wake();
    });
  }
}

/** A masked client text frame (payload under 126 bytes). */
function clientTextFrame(text: string): Buffer {
  const payload = Buffer.from(text, "utf8");
  assert.ok(payload.length < 126);
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

test("an upgrade request with `Upgrade: WebSocket` (mixed case) gets 101 and a working connection", async () => {
  await using shoal = await ShoalProcess.start({});
  const key = "dGhlIHNhbXBsZSBub25jZQ==";
  const socket = connect(shoal.port, "127.0.0.1");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const reader = new RawReader(socket);
    socket.write(
      [
        "GET /any/path?x=1 HTTP/1.1",
        `Host: 127.0.0.1:${shoal.port}`,
        "Upgrade: WebSocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${key}`,
        "Sec-WebSocket-Version: 13",
        "",
        "",
      ].join("\r\n"),
    );
    const response = await reader.until((data) => data.includes("\r\n\r\n"));
    const end = response.indexOf("\r\n\r\n") + 4;
    const head = response.subarray(0, end - 4).toString("latin1").split("\r\n");
    assert.match(head[0], /^HTTP\/1\.1 101 /, `status line: ${head.join(" / ")}`);
    const headers = new Map(head.slice(1).map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const;
    }));
    const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    assert.equal(headers.get("sec-websocket-accept"), accept);
    assert.equal(headers.get("upgrade")?.toLowerCase(), "websocket");

    // The connection works: a ping event gets its pong in one unmasked text frame (payload under 126 bytes).
    socket.write(clientTextFrame(JSON.stringify({ event: "ping", data: "raw" })));
    const all = await reader.until((data) => data.length >= end + 2 && data.length >= end + 2 + (data[end + 1] & 0x7f));
    const frame = all.subarray(end);
    assert.equal(frame[0], 0x81, "a final text frame");
    assert.equal(frame[1] & 0x80, 0, "server frames are not masked");
    const length = frame[1] & 0x7f;
    assert.deepEqual(JSON.parse(frame.subarray(2, 2 + length).toString("utf8")), { event: "pong", data: "raw" });
  } finally {
    socket.destroy();
  }
});

test("GET /healthz and /readyz answer 200 JSON; a plain GET elsewhere gets 426", async () => {
  await using shoal = await ShoalProcess.start({});
  const get = async (path: string) => readAnswer(await fetch(`${shoal.httpUrl}${path}`, { signal: AbortSignal.timeout(5000) }));

  assert.deepEqual(await get("/healthz"), { status: 200, contentType: "application/json", body: { status: "ok" } });
  assert.deepEqual(await get("/readyz"), {
    status: 200,
    contentType: "application/json",
    body: { status: "ready", broker: true, stopping: false },
  });
  assert.deepEqual(await get("/"), {
    status: 426,
    contentType: "application/json",
    body: { status: "error", error: "Upgrade Required: this is a WebSocket endpoint." },
  });
});
