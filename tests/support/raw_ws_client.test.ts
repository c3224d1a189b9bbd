// Self-test of RawWsClient: against a scripted node:net server for the frame parser, and against the real Shoal
// (SHOAL_TARGET: bun, deno or binary) for the handshake, pings, and close codes.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { test } from "node:test";
import { deliveredMessage, publish } from "./e2e.ts";
import { Opcode, RawWsClient } from "./raw_ws_client.ts";
import { ShoalProcess } from "./shoal_process.ts";
import { encodeFrame, FrameDecoder, type WsFrame } from "./ws_codec.ts";

const TOKEN = "e2e-secret-token";

/** An unmasked server frame. */
function serverFrame(opcode: number, payload: Uint8Array | string, fin = true): Buffer {
  return encodeFrame(opcode, payload, { fin, mask: false });
}

/** Client frames, unmasked, parsed from (a copy of) what a scripted server received. */
function clientFrames(data: Buffer): WsFrame[] {
  return [...new FrameDecoder().push(Buffer.from(data))];
}

/**
 * A one-connection WebSocket server on node:net: answers the upgrade, then runs `script` with the socket and
 * keeps what the client sent after the upgrade in `received`.
 */
async function scriptedServer(
  script: (socket: Socket) => void,
): Promise<{ server: Server; url: string; received: () => Buffer }> {
  let received = Buffer.alloc(0);
  const server = createServer((socket) => {
    let head = Buffer.alloc(0);
    let upgraded = false;
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      if (upgraded) return void (received = Buffer.concat([received, chunk]));
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head.subarray(0, end).toString("latin1"))?.[1] ?? "";
      const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      upgraded = true;
      received = Buffer.concat([received, head.subarray(end + 4)]);
      script(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return { server, url: `ws://127.0.0.1:${port}/`, received: () => received };
}

async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Poll `condition` every 10 ms for at most `timeoutMs`. */
async function eventually(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("raw client: parses fragmented, binary, long, ping, pong and close frames; answers pings; echoes the close", async () => {
  const big = "y".repeat(70_000);
  const { server, url, received } = await scriptedServer((socket) => {
    socket.write(Buffer.concat([
      serverFrame(Opcode.ping, "p1"),
      serverFrame(Opcode.text, '{"a":', false),
      serverFrame(Opcode.ping, "p2"), // a control frame may come between fragments
      serverFrame(Opcode.continuation, '"he', false),
      serverFrame(Opcode.continuation, 'llo"}'),
      serverFrame(Opcode.binary, new Uint8Array([1, 2, 3])),
      serverFrame(Opcode.text, JSON.stringify({ big })),
      serverFrame(Opcode.text, JSON.stringify({ mid: "m".repeat(300) })),
      serverFrame(Opcode.pong, "po"),
    ]));
    // The close frame comes in two TCP writes, split inside its header.
    const close = serverFrame(Opcode.close, Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from("bye ✓")]));
    socket.write(close.subarray(0, 1));
    setTimeout(() => socket.write(close.subarray(1)), 50);
  });
  try {
    await using client = await RawWsClient.connect(url);
    assert.deepEqual(await client.next(), { a: "hello" });
    assert.deepEqual(await client.next(), { big });
    assert.deepEqual(await client.next(), { mid: "m".repeat(300) });
    const closed = await client.waitClosed();
    assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4000, reason: "bye ✓" });
    assert.ok(Math.abs(closed.at - Date.now()) < 5000);
    assert.deepEqual(client.pings.map((p) => Buffer.from(p.payload).toString()), ["p1", "p2"]);
    assert.ok(client.pings[0].at <= client.pings[1].at);
    assert.deepEqual(client.pongs.map((p) => Buffer.from(p.payload).toString()), ["po"]);
    assert.deepEqual(client.binaries.map((b) => [...b]), [[1, 2, 3]]);
    assert.deepEqual(client.protocolErrors, []);
    await assert.rejects(client.next(100), /already closed \(code 4000/);

    await eventually(() => clientFrames(received()).length >= 3, 2000, "the client's pongs and close echo");
    const sent = clientFrames(received());
    assert.ok(sent.every((f) => f.masked), "client frames are masked");
    assert.deepEqual(sent.map((f) => [f.opcode, f.payload.toString("latin1")]), [
      [Opcode.pong, "p1"],
      [Opcode.pong, "p2"],
      [Opcode.close, "\x0f\xa0"],
    ]);
  } finally {
    await closeServer(server);
  }
});

test("raw client: answerPings false sends no pong; a socket that ends without a close frame is 1006", async () => {
  const { server, url, received } = await scriptedServer((socket) => {
    socket.write(serverFrame(Opcode.ping, "unanswered"));
    setTimeout(() => socket.end(), 100);
  });
  try {
    await using client = await RawWsClient.connect(url, { answerPings: false });
    const [ping] = await client.waitPings(1);
    assert.equal(Buffer.from(ping.payload).toString(), "unanswered");
    const closed = await client.waitClosed();
    assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 1006, reason: "" });
    assert.ok(closed.at >= ping.at);
    assert.deepEqual(clientFrames(received()), [], "nothing was sent back");
  } finally {
    await closeServer(server);
  }
});

test("raw client: a refused upgrade rejects with the status line", async () => {
  const server = createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", () => socket.end("HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const port = (server.address() as { port: number }).port;
    await assert.rejects(
      RawWsClient.connect(`ws://127.0.0.1:${port}/`),
      /status line "HTTP\/1\.1 426 Upgrade Required"/,
    );
  } finally {
    await closeServer(server);
  }
});

test("raw client against Shoal: ping event round trip, and a long published message (64-bit length)", async () => {
  await using shoal = await ShoalProcess.start({
    services: { open: { requireAuthentication: false } },
    publish: { token: TOKEN },
  });
  await using client = await RawWsClient.connect(`${shoal.url}any/path?x=1`);
  client.send({ event: "ping", data: "raw" });
  assert.deepEqual(await client.next(), { event: "pong", data: "raw" });
  client.send({ event: "ping", data: "z".repeat(500) }); // a 16-bit length client frame
  assert.deepEqual(await client.next(), { event: "pong", data: "z".repeat(128) });

  client.send({ event: "subscribe", subscription: "open.a" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "open.a" });
  const data = "d".repeat(100_000);
  assert.equal((await publish(shoal, { subscription: "open.a", data }, { token: TOKEN })).status, 200);
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.a", data });
  assert.deepEqual(client.protocolErrors, []);

  const closed = await client.close(1000);
  assert.equal(closed?.code, 1000, "the server answers the closing handshake with 1000");
});

test("raw client against Shoal: a frame over ws.maxMessageBytes closes with 1009", async () => {
  await using shoal = await ShoalProcess.start({ ws: { maxMessageBytes: 1000 } });
  await using client = await RawWsClient.connect(shoal.url);
  const frame = (bytes: number) => {
    const base = JSON.stringify({ event: "ping", data: "" });
    return JSON.stringify({ event: "ping", data: "x".repeat(bytes - base.length) });
  };
  client.send(frame(1000));
  assert.deepEqual(await client.next(), { event: "pong", data: "x".repeat(128) });
  client.send(frame(1001));
  const closed = await client.waitClosed();
  assert.equal(closed.code, 1009, `close ${closed.code} ${JSON.stringify(closed.reason)}`);
  assert.equal(client.seen.length, 1, `no reply to the oversized frame; frames: ${client.seen.join(" | ")}`);
});

test("raw client against Shoal: server pings are recorded with their time and answered, so the connection stays", async () => {
  // Bun pings every interval; Deno pings after idleTimeout / 2 of silence (see src/runtime/deno.ts).
  await using shoal = await ShoalProcess.start({ ws: { ping: { interval: 0.3, timeout: 0.3 } } });
  await using client = await RawWsClient.connect(shoal.url);
  const opened = Date.now();
  const pings = await client.waitPings(3, 5000);
  assert.ok(pings[0].at - opened >= 100, `the first ping came ${pings[0].at - opened} ms after the upgrade`);
  for (let i = 1; i < pings.length; i++) assert.ok(pings[i].at >= pings[i - 1].at);
  assert.equal(client.closeInfo, undefined, "answering pings keeps the connection");
  client.send({ event: "ping", data: "alive" });
  assert.deepEqual(await client.next(), { event: "pong", data: "alive" });
});
