// Service callbacks under load and abuse, end to end (extensions E5): one hanging service must not starve the
// others (limits.maxCallbacksPerService, and Bun's pool of 256 fetches per process), an answer too large is a
// failed call (http.maxResponseBytes), and a redirect is never followed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { eventually, metricsText } from "../support/e2e.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { type Frame, WsClient } from "../support/ws_client.ts";

const HANGING = 300;

/** Open `count` connections, a few dozen at a time so the accept queue never overflows. */
async function connectMany(url: string, count: number): Promise<WsClient[]> {
  const clients: WsClient[] = [];
  while (clients.length < count) {
    const batch = Math.min(50, count - clients.length);
    clients.push(...await Promise.all(Array.from({ length: batch }, () => WsClient.connect(url, 10_000))));
  }
  return clients;
}

/** How `eventually` waits in this file: up to 5 s, polling every 10 ms. */
const WAIT = { every: 10 };

/** The next frame, and how long it took to come. */
async function timed(client: WsClient, frame: Frame): Promise<{ reply: Frame; ms: number }> {
  const started = Date.now();
  client.send(frame);
  const reply = await client.next();
  return { reply, ms: Date.now() - started };
}

test("service limits: 300 clients hanging on one service's authorizer; auth and another service still answer at once", async () => {
  // Three services on three origins, so the bound holds whether the core names the service or not.
  await using slow = await TestService.start();
  await using fast = await TestService.start();
  await using tickets = await TestService.start();
  slow.on("/authorizer", { delayMs: 120_000, reply: { status: "ok" } });
  fast.on("/authorizer", { status: "ok" });
  tickets.on("/auth", { status: "ok", user: "u1" });
  await using shoal = await ShoalProcess.start({
    authentication: { ticket: { validationUrl: tickets.url("/auth"), authFields: ["user"] } },
    services: {
      A: { requireAuthentication: false, authorizer: slow.url("/authorizer") },
      B: { requireAuthentication: false, authorizer: fast.url("/authorizer") },
    },
    http: { timeout: 60, tries: 1 },
    limits: { maxCallbacksPerService: 64 },
    metrics: { prometheus: {} },
    log: { level: "info", format: "json" },
  });
  const clients = await connectMany(shoal.url, HANGING + 1);
  const probe = clients.pop()!;
  try {
    const replies: Frame[] = [];
    for (const [i, client] of clients.entries()) {
      client.send({ event: "subscribe", subscription: `A.${i}` });
      // The calls that reach the service hang; their clients are closed unanswered at the end.
      client.next(60_000).then((frame) => replies.push(frame), () => {});
    }
    // 64 calls reach the hanging service; the other 236 are refused at once.
    await slow.waitFor("/authorizer", 64, 10_000);
    await eventually(() => replies.length >= HANGING - 64, `${HANGING - 64} refusals`, WAIT);
    for (const frame of replies) {
      assert.deepEqual({ ...frame, subscription: undefined }, {
        event: "subscribe",
        subscription: undefined,
        status: "error",
        error: "Service unavailable.",
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(replies.length, HANGING - 64, "the 64 calls in flight are still waiting");
    assert.equal(slow.requestsTo("/authorizer").length, 64);

    const auth = await timed(probe, { event: "auth", ticket: "t-1" });
    assert.deepEqual(auth.reply, { event: "auth", status: "ok" });
    assert.ok(auth.ms < 2000, `auth took ${auth.ms} ms`);
    const subscribe = await timed(probe, { event: "subscribe", subscription: "B.x" });
    assert.deepEqual(subscribe.reply, { event: "subscribe", subscription: "B.x", status: "ok" });
    assert.ok(subscribe.ms < 2000, `subscribe to B took ${subscribe.ms} ms`);

    const metrics = await metricsText(shoal);
    assert.match(metrics, /^shoal_refusals_total\{reason="callbacks"\} 236$/m);
    assert.equal(shoal.logsWith("too many callbacks in flight to one service; refusing more").length, 1);
  } finally {
    await Promise.all([...clients, probe].map((client) => client.close()));
  }
});

test("service limits: an endless authorizer answer is Service unavailable. within seconds, not at the timeout", async () => {
  await using service = await TestService.start();
  service.on("/authorizer", { bytes: "endless" });
  await using shoal = await ShoalProcess.start({
    services: { A: { requireAuthentication: false, authorizer: service.url("/authorizer") } },
    http: { timeout: 60, tries: 2, wait: 0, maxResponseBytes: 64 * 1024 },
    metrics: { prometheus: {} },
  });
  await using client = await WsClient.connect(shoal.url);
  const { reply, ms } = await timed(client, { event: "subscribe", subscription: "A.x" });
  assert.deepEqual(reply, { event: "subscribe", subscription: "A.x", status: "error", error: "Service unavailable." });
  assert.ok(ms < 5000, `took ${ms} ms with a 60 s timeout`);
  await service.waitFor("/authorizer", 2);
  await eventually(() => service.cutShort.length === 2, "both tries to be cut short", WAIT);
  const logged = shoal.logsWith("invalid service response");
  assert.equal(logged.length, 2);
  assert.match(String(logged[0].problem), /longer than http\.maxResponseBytes \(65536 bytes\)/);
  const metrics = await (await fetch(`${shoal.httpUrl}/metrics`)).text();
  assert.match(metrics, /^shoal_refusals_total\{reason="response_size"\} 2$/m);
});

test("service limits: a 307 from the ticket endpoint is a failed call; the other host never sees the ticket", async () => {
  await using thief = await TestService.start();
  await using tickets = await TestService.start();
  thief.on("/steal", { status: "ok", user: "mallory" });
  tickets.on("/auth", { http: 307, headers: { location: thief.url("/steal") } });
  await using shoal = await ShoalProcess.start({
    authentication: { ticket: { validationUrl: tickets.url("/auth"), authFields: ["user"] } },
    http: { tries: 2, wait: 0 },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "auth", ticket: "secret" });
  assert.deepEqual(await client.next(), { event: "auth", status: "error", error: "Service unavailable." });
  assert.equal(tickets.requestsTo("/auth").length, 2);
  assert.deepEqual(thief.requests, []);
  const logged = shoal.logsWith("service answered a redirect (not followed)");
  assert.equal(logged.length, 2);
  assert.equal(logged[0].status, 307);
  assert.equal(logged[0].url, tickets.url("/auth"));
});
