// Hostile input end to end: frames, published messages and service answers that once stopped the process.
// Each test ends by checking that the process is still up and still serves.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deliveredMessage, publish } from "../support/e2e.ts";
import { RedisServer } from "../support/redis_server.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

const TOKEN = "hardening-token";
const INVALID = { status: "error", error: "Messages must be JSON and contain an event field." };

/** A JSON array nested `depth` deep around `inner`, as text (JSON.stringify of such a value would overflow). */
function nested(depth: number, inner = "1"): string {
  return "[".repeat(depth) + inner + "]".repeat(depth);
}

/** The process is up and answers a ping on a new connection. */
async function assertServing(shoal: ShoalProcess): Promise<void> {
  assert.ok(shoal.running, `shoal exited:\n${shoal.describe()}`);
  await using probe = await WsClient.connect(shoal.url);
  probe.send({ event: "ping", data: "alive" });
  assert.deepEqual(await probe.next(), { event: "pong", data: "alive" });
}

test("hardening: a frame nested 50,000 deep in an extra field gets the invalid-event reply; the process stays up", async () => {
  await using shoal = await ShoalProcess.start({ services: { books: { extraFields: ["book_version"] } } });
  await using client = await WsClient.connect(shoal.url);
  for (const event of ["message", "subscribe", "unsubscribe", "auth"]) {
    const frame = `{"event":"${event}","subscription":"books.1","book_version":${nested(50_000)}}`;
    client.socket.send(frame);
    assert.deepEqual(await client.next(), INVALID, `${event} with a deep extra field`);
  }
  // The same connection still works, and 100 levels (under the limit) are echoed as sent.
  const hundred = JSON.parse(nested(100));
  client.send({ event: "subscribe", subscription: "books.1", book_version: hundred });
  assert.deepEqual(await client.next(), {
    event: "subscribe",
    status: "error",
    error: "Authentication required.",
    book_version: hundred,
    subscription: "books.1",
  });
  await assertServing(shoal);
});

test("hardening: published data nested 100,000 deep is dropped with a log line; the next message is delivered", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await ShoalProcess.start({
    services: { open: { requireAuthentication: false, extraFields: ["v"] } },
    broker: { kind: "redis", url: redis.url },
    publish: { token: TOKEN },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "open.a", v: JSON.parse(nested(64)) });
  assert.equal((await client.next()).status, "ok");

  await redis.command("PUBLISH", "open.a", `{"subscription":"open.a","data":${nested(100_000)}}`);
  const line = await shoal.waitForLog((l) => l.message === "invalid service event", 5000);
  assert.equal(line.reason, "JSON nested deeper than 128 levels");
  assert.ok(String(line.payload).length < 2000, "the log line quotes a clipped payload");

  const deep = await publish(shoal, `{"subscription":"open.a","data":${nested(100_000)}}`, { token: TOKEN });
  assert.deepEqual(deep.body, { status: "error", error: "Body must not be JSON nested deeper than 128 levels." });
  assert.equal(deep.status, 400);
  await client.expectNothing(200);

  const ok = JSON.parse(nested(100));
  await redis.command("PUBLISH", "open.a", JSON.stringify({ subscription: "open.a", data: ok }));
  assert.deepEqual(deliveredMessage(await client.next()), {
    event: "message",
    subscription: "open.a",
    data: ok,
    v: JSON.parse(nested(64)),
  });
  await assertServing(shoal);
});

test("hardening: a service answer nested 100,000 deep is a failed call (Service unavailable.)", async () => {
  await using service = await TestService.start();
  service.on("/auth", { http: 200, contentType: "application/json", body: `{"status":"ok","user":${nested(100_000)}}` });
  await using shoal = await ShoalProcess.start({
    authentication: { ticket: { validationUrl: service.url("/auth"), authFields: ["user"] } },
    http: { tries: 1, timeout: 2 },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "auth", ticket: "t" });
  assert.deepEqual(await client.next(), { event: "auth", status: "error", error: "Service unavailable." });
  await assertServing(shoal);
});

test("hardening: a client that leaves while its callback hangs is released at once, with its unsubscribe callbacks", async () => {
  await using service = await TestService.start();
  service.on("/on_message", { delayMs: 30_000, reply: { status: "ok" } });
  service.on("/on_unsubscribe", { status: "ok" });
  await using shoal = await ShoalProcess.start({
    services: {
      slow: {
        requireAuthentication: false,
        onMessage: service.url("/on_message"),
        onUnsubscribe: service.url("/on_unsubscribe"),
      },
    },
    http: { timeout: 60, tries: 3 },
    metrics: { prometheus: {} },
  });
  const client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "slow.a" });
  assert.equal((await client.next()).status, "ok");
  client.send({ event: "message", subscription: "slow.a", data: 1 });
  await service.waitFor("/on_message", 1);
  const left = Date.now();
  await client.close();
  await service.waitFor("/on_unsubscribe", 1, 5000);
  await shoal.waitForLog((l) => l.message === "connection closed", 5000);
  assert.ok(Date.now() - left < 5000, "released long before the 30 s answer or the 60 s timeout");
  const metrics = await (await fetch(`${shoal.httpUrl}/metrics`)).text();
  assert.match(metrics, /^shoal_connection_count 0$/m);
  assert.equal(service.requestsTo("/on_message").length, 1, "the cancelled call is not retried");
  await assertServing(shoal);
});

test("hardening: shutdown says how many unsubscribe callbacks it could not deliver", async () => {
  await using service = await TestService.start();
  service.on("/before_unsubscribe", { delayMs: 30_000, reply: { status: "ok" } });
  await using shoal = await ShoalProcess.start({
    services: { slow: { requireAuthentication: false, beforeUnsubscribe: service.url("/before_unsubscribe") } },
    shutdown: { drainTimeout: 1 },
    http: { timeout: 60 },
  });
  const clients = [];
  for (let i = 0; i < 3; i++) {
    const client = await WsClient.connect(shoal.url);
    client.send({ event: "subscribe", subscription: `slow.${i}` });
    assert.equal((await client.next()).status, "ok");
    clients.push(client);
  }
  assert.equal(await shoal.stop("SIGTERM", 10_000), 0);
  const done = shoal.logsWith("done, with callbacks not delivered");
  assert.equal(done.length, 1, shoal.describe());
  assert.equal(done[0].callbacks_not_delivered, 3);
  assert.equal(done[0].sessions, 3);
  assert.equal(shoal.logsWith("done").length, 0, "never a plain done when something was lost");
});

test("hardening: tickets and the ticket endpoint's answers never reach the log, even at debug", async () => {
  await using service = await TestService.start();
  service.on("/auth", { status: "ok", user: "identity-7f3a9c" });
  await using shoal = await ShoalProcess.start({
    authentication: { ticket: { validationUrl: service.url("/auth"), authFields: ["user"] } },
    log: { level: "debug", format: "json" },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "auth", ticket: "ticket-secret-1b2c3d" });
  assert.deepEqual(await client.next(), { event: "auth", status: "ok" });
  await shoal.waitForLog((l) => l.message === "http request" && l.callback === "ticket");
  const logged = JSON.stringify(shoal.logs);
  assert.ok(logged.includes("[redacted]"), "the lines are there, redacted");
  assert.ok(!logged.includes("ticket-secret-1b2c3d"), "the ticket is never logged");
  assert.ok(!logged.includes("identity-7f3a9c"), "the identity the ticket stands for is never logged");
});
