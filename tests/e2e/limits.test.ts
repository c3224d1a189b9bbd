// The limits of a public endpoint (extensions E5) end to end: malformed upgrades, origins, connection caps,
// shutdown, per-connection limits, and the refusal metric.
import assert from "node:assert/strict";
import { test } from "node:test";
import { metricsText, publish } from "../support/e2e.ts";
import { rawGet, rawRequest, upgradeHeaders } from "../support/raw_http.ts";
import { RawWsClient } from "../support/raw_ws_client.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

const OPEN = { open: { requireAuthentication: false } };
const METRICS = { prometheus: {} };
const TOKEN = "limits-token";

async function refusals(shoal: ShoalProcess): Promise<Record<string, number>> {
  const text = await metricsText(shoal);
  const counts: Record<string, number> = {};
  for (const match of text.matchAll(/refusals_total\{reason="([a-z_]+)"\} (\d+)/g)) counts[match[1]] = Number(match[2]);
  return counts;
}

test("limits: malformed upgrades get 400 or 426 with JSON, never a 101, a 500 or a stack trace", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, metrics: METRICS });
  const cases: [string, Record<string, string>, number, string][] = [
    ["no Connection: Upgrade", upgradeHeaders({ Connection: "keep-alive" }), 400, "Connection: Upgrade is missing."],
    ["no key", (({ "Sec-WebSocket-Key": _, ...rest }) => rest)(upgradeHeaders()), 400, "Sec-WebSocket-Key is missing or invalid."],
    ["a short key", upgradeHeaders({ "Sec-WebSocket-Key": "c2hvcnQ=" }), 400, "Sec-WebSocket-Key is missing or invalid."],
    ["version 8", upgradeHeaders({ "Sec-WebSocket-Version": "8" }), 426, "Unsupported WebSocket version: use 13."],
    ["no version", (({ "Sec-WebSocket-Version": _, ...rest }) => rest)(upgradeHeaders()), 426, "Unsupported WebSocket version: use 13."],
  ];
  for (const [what, headers, status, error] of cases) {
    const answer = await rawGet(shoal.port, headers);
    assert.equal(answer.status, status, what);
    assert.deepEqual(JSON.parse(answer.body), { status: "error", error }, what);
    if (status === 426) assert.equal(answer.headers.get("sec-websocket-version"), "13", what);
  }
  assert.equal((await rawGet(shoal.port, upgradeHeaders({ Connection: "keep-alive, Upgrade" }))).status, 101);
  assert.ok(!shoal.logs.some((l) => l.raw), `every stdout line is JSON:\n${shoal.describe()}`);
  const counts = await refusals(shoal);
  assert.equal(counts.bad_upgrade, 3);
  assert.equal(counts.websocket_version, 2);
});

test("limits: ws.allowedOrigins refuses other origins with 403; no Origin header is allowed", async () => {
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    metrics: METRICS,
    ws: { allowedOrigins: ["https://app.example.com", "https://*.example.org"] },
  });
  for (const origin of ["https://app.example.com", "HTTPS://APP.EXAMPLE.COM", "https://a.example.org", "https://a.b.example.org"]) {
    assert.equal((await rawGet(shoal.port, upgradeHeaders({ Origin: origin }))).status, 101, origin);
  }
  assert.equal((await rawGet(shoal.port, upgradeHeaders())).status, 101, "no Origin: not a browser");
  const refused = ["https://evil.com", "http://app.example.com", "https://app.example.com:8443", "https://example.org", "https://a.example.org.evil.com", "null"];
  for (const origin of refused) {
    const answer = await rawGet(shoal.port, upgradeHeaders({ Origin: origin }));
    assert.equal(answer.status, 403, origin);
    assert.deepEqual(JSON.parse(answer.body), { status: "error", error: "Origin not allowed." }, origin);
  }
  assert.equal((await refusals(shoal)).origin, refused.length);
});

test("limits: limits.maxConnections answers 503 past the cap; room frees when a client leaves", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, metrics: METRICS, limits: { maxConnections: 2 } });
  const a = await WsClient.connect(shoal.url);
  await using b = await WsClient.connect(shoal.url);
  a.send({ event: "ping" });
  b.send({ event: "ping" });
  await a.next();
  await b.next();
  const answer = await rawGet(shoal.port, upgradeHeaders());
  assert.equal(answer.status, 503);
  assert.deepEqual(JSON.parse(answer.body), { status: "error", error: "Too many connections." });
  await a.close();
  await shoal.waitForLog((l) => l.message === "connection closed");
  await using c = await WsClient.connect(shoal.url);
  c.send({ event: "ping", data: "in" });
  assert.deepEqual(await c.next(), { event: "pong", data: "in" });
  assert.equal((await refusals(shoal)).connections, 1);
});

test("limits: from the first signal, upgrades get 503 and readyz says not ready while sessions drain", async () => {
  await using service = await TestService.start();
  service.on("/before_unsubscribe", { delayMs: 2000, reply: { status: "ok" } });
  await using shoal = await ShoalProcess.start({
    services: { slow: { requireAuthentication: false, beforeUnsubscribe: service.url("/before_unsubscribe") } },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "slow.a" });
  assert.equal((await client.next()).status, "ok");
  const stopped = shoal.stop("SIGTERM");
  await shoal.waitForLog((l) => l.message === "shutting down");
  const answer = await rawGet(shoal.port, upgradeHeaders());
  assert.equal(answer.status, 503);
  assert.deepEqual(JSON.parse(answer.body), { status: "error", error: "Shutting down." });
  assert.equal((await fetch(`${shoal.httpUrl}/readyz`)).status, 503);
  assert.equal(await stopped, 0);
});

test("limits: per-connection limits over a real socket: subscriptions, name length and form, rate", async () => {
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    metrics: METRICS,
    limits: { maxSubscriptionsPerConnection: 2, maxSubscriptionLength: 16, eventsPerSecond: 1, eventsBurst: 5 },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "open.1" });
  client.send({ event: "subscribe", subscription: "open.2" });
  client.send({ event: "subscribe", subscription: "open.3" });
  client.socket.send('{"event":"subscribe","subscription":"open.room\\udc00"}');
  client.send({ event: "subscribe", subscription: "open.123456789012" });
  client.send({ event: "subscribe", subscription: "open.4" });
  client.send({ event: "ping", data: "exempt" });
  const replies = [];
  for (let i = 0; i < 7; i++) replies.push(await client.next());
  assert.deepEqual(replies.find((r) => r.event === "pong"), { event: "pong", data: "exempt" });
  assert.deepEqual(replies.filter((r) => r.event !== "pong"), [
    { event: "subscribe", status: "ok", subscription: "open.1" },
    { event: "subscribe", status: "ok", subscription: "open.2" },
    { event: "subscribe", status: "error", error: "Too many subscriptions.", subscription: "open.3" },
    { event: "subscribe", status: "error", error: "Invalid subscription format.", subscription: "open.room\udc00" },
    { event: "subscribe", status: "error", error: "Invalid subscription format.", subscription: "open.123456789012" },
    { event: "subscribe", status: "error", error: "Rate limit exceeded.", subscription: "open.4" },
  ]);
  const counts = await refusals(shoal);
  assert.deepEqual([counts.subscriptions, counts.subscription_name, counts.rate], [1, 2, 1]);
});

test("limits: past limits.maxBufferedBytesTotal the clients furthest behind are closed with 1013", async () => {
  await using shoal = await ShoalProcess.start({
    ws: { maxBufferedBytes: 256 * 1024 * 1024 }, // far above: only the node-wide budget can act
    limits: { maxBufferedBytesTotal: 1024 * 1024 },
    services: OPEN,
    metrics: METRICS,
    publish: { token: TOKEN },
  });
  await using reader = await WsClient.connect(shoal.url);
  reader.send({ event: "subscribe", subscription: "open.big" });
  assert.equal((await reader.next()).status, "ok");
  const slow = [await RawWsClient.connect(shoal.url), await RawWsClient.connect(shoal.url)];
  for (const client of slow) {
    client.send({ event: "subscribe", subscription: "open.big" });
    assert.equal((await client.next()).status, "ok");
    client.pauseReading();
  }
  // Loopback kernel buffers take a few MB per connection before the server's own buffers grow.
  const padding = "x".repeat(20_000);
  const overBudget = () => shoal.logs.some((line) => line.message === "outgoing buffers over budget; closed the furthest behind");
  let count = 0;
  while (count < 3000 && !overBudget()) {
    for (let i = 0; i < 25; i++, count++) {
      const answer = await publish(shoal, { subscription: "open.big", data: { i: count, padding } }, { token: TOKEN });
      assert.equal(answer.status, 200);
    }
  }
  assert.ok(overBudget(), `the budget acted within ${count} messages`);
  for (let i = 0; i < count; i++) assert.equal((await reader.next(10_000)).data && true, true, `message ${i}`);
  assert.equal(reader.closeCode, undefined, "the reading client stays open");
  // Whichever were furthest behind were closed (enough to get under the budget: one or both), with 1013.
  for (const client of slow) client.resumeReading();
  const first = await Promise.race(slow.map((client) => client.waitClosed(10_000)));
  assert.equal(first.code, 1013);
  const counted = (await refusals(shoal)).buffered_total;
  assert.ok(counted >= 1 && counted <= 2, `refusals ${counted}`);
  for (const client of slow) {
    if (client.closeInfo) assert.equal(client.closeInfo.code, 1013);
    else await client.close();
  }
});

test("limits: a HEAD (or any non-GET) upgrade request is a malformed upgrade: 400, never a 101 or a 500", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, metrics: METRICS });
  const answer = await rawRequest(shoal.port, "HEAD /", upgradeHeaders());
  assert.equal(answer.status, 400);
  assert.ok(!shoal.logs.some((l) => l.level === "ERROR" || l.raw), shoal.describe());
});

test("limits: a /publish body that cannot be read (bad chunk size) gets 400 JSON, with no stack trace", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, publish: { token: TOKEN } });
  const answer = await rawRequest(shoal.port, "POST /publish", {
    Authorization: `Bearer ${TOKEN}`,
    "Content-Type": "application/json",
    "Transfer-Encoding": "chunked",
  }, "zz\r\n{}\r\n0\r\n\r\n");
  assert.equal(answer.status, 400);
  if (shoal.target === "deno") {
    // Deno's server is Shoal's own and answers in JSON; Bun's own parser refuses such a body before Shoal sees it.
    assert.deepEqual(JSON.parse(answer.body).status, "error");
  }
  assert.equal(shoal.stderr.trim(), "", "nothing on stderr");
  assert.ok(!shoal.logs.some((l) => l.level === "ERROR" || l.raw), shoal.describe());
});
