// The client protocol end to end: the real server (SHOAL_TARGET: bun, deno or binary), a real HTTP service and
// real WebSocket clients. Each test owns its service, server and clients; `await using` disposes them in reverse
// order (clients, then the server, then the service) even when an assertion fails.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deliveredMessage, publish } from "../support/e2e.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

const TOKEN = "e2e-secret-token";
const INVALID_EVENT = { status: "error", error: "Messages must be JSON and contain an event field." };

/** Fast retries so failure paths stay well inside a test's time budget. */
const FAST_HTTP = { tries: 1, wait: 0.05, timeout: 5 };

function ticketAuth(service: TestService): Record<string, unknown> {
  return { ticket: { validationUrl: service.url("/auth"), authFields: ["session_id"] } };
}

test("full flow: auth, subscribe with authorizer and before_subscribe, publish, message, unsubscribe", async () => {
  await using service = await TestService.start();
  service
    .on("/auth", { status: "ok", session_id: "sess-1", user_id: "not-an-auth-field" })
    .on("/authorizer", { status: "ok", cap: "read", unlisted: "dropped" })
    .on("/before_subscribe", { status: "ok", data: { welcome: "to b1" } })
    .on("/on_subscribe", { status: "ok" })
    .on("/on_message", { status: "ok", data: { echo: "hi" } })
    .on("/before_unsubscribe", { status: "ok", data: { bye: 1 } })
    .on("/on_unsubscribe", { status: "ok" });
  await using shoal = await ShoalProcess.start({
    http: FAST_HTTP,
    authentication: ticketAuth(service),
    services: {
      books: {
        authorizer: service.url("/authorizer"),
        authorizerFields: ["cap"],
        extraFields: ["book_version"],
        beforeSubscribe: service.url("/before_subscribe"),
        onSubscribe: service.url("/on_subscribe"),
        onMessage: service.url("/on_message"),
        beforeUnsubscribe: service.url("/before_unsubscribe"),
        onUnsubscribe: service.url("/on_unsubscribe"),
      },
    },
    publish: { token: TOKEN },
  });
  await using client = await WsClient.connect(shoal.url);

  client.send({ event: "auth", ticket: "ticket-1" });
  assert.deepEqual(await client.next(), { event: "auth", status: "ok" });
  assert.deepEqual(service.bodies("/auth"), [{ ticket: "ticket-1" }]);

  client.send({ event: "subscribe", subscription: "books.b1", book_version: 3, not_extra: "ignored" });
  assert.deepEqual(await client.next(), {
    event: "subscribe",
    status: "ok",
    book_version: 3,
    data: { welcome: "to b1" },
    subscription: "books.b1",
  });
  // docs/protocol.md §9.1: subscription, extra fields, authorizer fields (none yet for the authorizer), auth fields.
  assert.deepEqual(service.bodies("/authorizer"), [{ subscription: "books.b1", book_version: 3, session_id: "sess-1" }]);
  const common = { subscription: "books.b1", book_version: 3, cap: "read", session_id: "sess-1" };
  assert.deepEqual(service.bodies("/before_subscribe"), [common]);
  assert.deepEqual((await service.waitFor("/on_subscribe", 1)).map((r) => r.body), [common]);

  const published = await publish(shoal, {
    subscription: "books.b1",
    data: { n: 1 },
    published_at: "2026-01-02T03:04:05.123000+00:00",
  }, { token: TOKEN });
  assert.deepEqual(published, { status: 200, contentType: "application/json", body: { status: "ok", published: 1 } });
  assert.deepEqual(deliveredMessage(await client.next()), {
    event: "message",
    subscription: "books.b1",
    data: { n: 1 },
    published_at: "2026-01-02T03:04:05.123000+00:00",
    book_version: 3,
  });

  client.send({ event: "message", subscription: "books.b1", data: { q: "hi" }, book_version: 99 });
  assert.deepEqual(await client.next(), {
    event: "message",
    status: "ok",
    book_version: 3,
    data: { echo: "hi" },
    subscription: "books.b1",
  });
  assert.deepEqual(service.bodies("/on_message"), [{ ...common, data: { q: "hi" } }]);

  client.send({ event: "unsubscribe", subscription: "books.b1" });
  assert.deepEqual(await client.next(), {
    event: "unsubscribe",
    status: "ok",
    book_version: 3,
    data: { bye: 1 },
    subscription: "books.b1",
  });
  assert.deepEqual(service.bodies("/before_unsubscribe"), [common]);
  assert.deepEqual((await service.waitFor("/on_unsubscribe", 1)).map((r) => r.body), [common]);

  // Unsubscribed: a later message is not delivered.
  assert.equal((await publish(shoal, { subscription: "books.b1", data: { n: 2 } }, { token: TOKEN })).status, 200);
  await client.expectNothing(300);

  assert.deepEqual(service.paths(), [
    "/auth",
    "/authorizer",
    "/before_subscribe",
    "/on_subscribe",
    "/on_message",
    "/before_unsubscribe",
    "/on_unsubscribe",
  ]);
  for (const request of service.requests) {
    assert.equal(request.method, "POST");
    assert.match(String(request.headers["content-type"]), /^application\/json/);
  }
});

test("auth: the service's error is forwarded without its data; no error key gives Authentication failed.", async () => {
  await using service = await TestService.start();
  service.on(
    "/auth",
    { status: "error", error: "Ticket expired.", data: { hint: "not forwarded" } },
    { status: "error" },
    { status: "error", error: null },
  );
  await using shoal = await ShoalProcess.start({
    http: FAST_HTTP,
    authentication: ticketAuth(service),
    services: { books: {} },
  });
  await using client = await WsClient.connect(shoal.url);

  client.send({ event: "auth", ticket: "t1" });
  assert.deepEqual(await client.next(), { event: "auth", status: "error", error: "Ticket expired." });
  client.send({ event: "auth", ticket: "t2" });
  assert.deepEqual(await client.next(), { event: "auth", status: "error", error: "Authentication failed." });
  client.send({ event: "auth", ticket: "t3" });
  assert.deepEqual(await client.next(), { event: "auth", status: "error", error: null });
  client.send({ event: "auth" });
  assert.deepEqual(await client.next(), { event: "auth", status: "error", error: "Must specify ticket." });
  assert.deepEqual(service.bodies("/auth"), [{ ticket: "t1" }, { ticket: "t2" }, { ticket: "t3" }]);

  // Still anonymous, so a service that requires authentication refuses.
  client.send({ event: "subscribe", subscription: "books.b1" });
  assert.deepEqual(await client.next(), {
    event: "subscribe",
    status: "error",
    error: "Authentication required.",
    subscription: "books.b1",
  });
});

test("auth: a service answering 500 gives Service unavailable. after exactly http.tries attempts", async () => {
  await using service = await TestService.start();
  service.on("/auth", { http: 500, body: "boom", contentType: "text/plain" });
  await using shoal = await ShoalProcess.start({
    http: { tries: 3, wait: 0.05, timeout: 5 },
    authentication: ticketAuth(service),
  });
  await using client = await WsClient.connect(shoal.url);

  client.send({ event: "auth", ticket: "t1" });
  assert.deepEqual(await client.next(), { event: "auth", status: "error", error: "Service unavailable." });
  const attempts = service.requestsTo("/auth");
  assert.equal(attempts.length, 3);
  assert.deepEqual(attempts.map((r) => r.body), [{ ticket: "t1" }, { ticket: "t1" }, { ticket: "t1" }]);
  for (let i = 1; i < attempts.length; i++) {
    const gap = attempts[i].at - attempts[i - 1].at;
    assert.ok(gap >= 40, `attempt ${i + 1} came ${gap} ms after the previous one; http.wait is 50 ms`);
  }
  // The connection stays usable.
  client.send({ event: "ping", data: "still here" });
  assert.deepEqual(await client.next(), { event: "pong", data: "still here" });
});

test("subscribe: a service answering invalid JSON as application/json gives Service unavailable. (decision 5)", async () => {
  await using service = await TestService.start();
  service.on("/authorizer", { http: 200, body: "{not json", contentType: "application/json" });
  await using shoal = await ShoalProcess.start({
    http: FAST_HTTP,
    services: { open: { requireAuthentication: false, authorizer: service.url("/authorizer") } },
  });
  await using client = await WsClient.connect(shoal.url);

  client.send({ event: "subscribe", subscription: "open.a" });
  assert.deepEqual(await client.next(), {
    event: "subscribe",
    status: "error",
    error: "Service unavailable.",
    subscription: "open.a",
  });
  client.send({ event: "ping" });
  assert.deepEqual(await client.next(), { event: "pong", data: null });
  assert.equal(client.closeCode, undefined);
});

test("subscribe: invalid service, invalid formats, already subscribed, subscription does not exist", async () => {
  await using shoal = await ShoalProcess.start({
    services: { open: { requireAuthentication: false, extraFields: ["v"] } },
  });
  await using client = await WsClient.connect(shoal.url);

  const cases: [unknown, Record<string, unknown>][] = [
    [
      { event: "subscribe", subscription: "nope.x" },
      { event: "subscribe", status: "error", error: "Invalid service.", subscription: "nope.x" },
    ],
    [
      { event: "subscribe" },
      { event: "subscribe", status: "error", error: "Invalid subscription format." },
    ],
    [
      { event: "subscribe", subscription: "open" },
      { event: "subscribe", status: "error", error: "Invalid subscription format.", subscription: "open" },
    ],
    [
      { event: "subscribe", subscription: "open." },
      { event: "subscribe", status: "error", error: "Invalid subscription format.", subscription: "open." },
    ],
    [
      { event: "subscribe", subscription: "open.a", v: 1 },
      { event: "subscribe", status: "ok", v: 1, subscription: "open.a" },
    ],
    [
      // The extra fields echoed are the existing subscription's.
      { event: "subscribe", subscription: "open.a", v: 2 },
      { event: "subscribe", status: "error", error: "Already subscribed.", v: 1, subscription: "open.a" },
    ],
    [
      { event: "unsubscribe", subscription: "open.b", v: 7 },
      { event: "unsubscribe", status: "error", error: "Subscription does not exist.", v: 7, subscription: "open.b" },
    ],
    [
      { event: "message", subscription: "open.b", data: 1 },
      { event: "message", status: "error", error: "Subscription does not exist.", subscription: "open.b" },
    ],
    [
      { event: "unsubscribe", subscription: "open.a" },
      { event: "unsubscribe", status: "ok", v: 1, subscription: "open.a" },
    ],
  ];
  for (const [request, reply] of cases) {
    client.send(request);
    assert.deepEqual(await client.next(), reply, `reply to ${JSON.stringify(request)}`);
  }
  // No on_message configured: a message to an existing subscription gets no reply.
  client.send({ event: "subscribe", subscription: "open.c" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "open.c" });
  client.send({ event: "message", subscription: "open.c", data: "x" });
  await client.expectNothing(300);
});

test("invalid frames: not JSON, no event, unknown event; the connection stays open", async () => {
  await using shoal = await ShoalProcess.start({});
  await using client = await WsClient.connect(shoal.url);

  for (const frame of ["{", "not json", '{"event": "ping"} trailing', "null", "[]", '"hello"', "123", "{}"]) {
    client.send(frame);
    assert.deepEqual(await client.next(), INVALID_EVENT, `reply to ${frame}`);
  }
  for (const fields of [{ event: null }, { event: 5 }, { event: "x".repeat(41) }]) {
    client.send(fields);
    assert.deepEqual(await client.next(), INVALID_EVENT, `reply to ${JSON.stringify(fields)}`);
  }
  for (const event of ["bogus", "", "PING", "x".repeat(40)]) {
    client.send({ event });
    assert.deepEqual(await client.next(), { event, status: "error", error: "Event not found." });
  }
  client.send({ event: "ping", data: "alive" });
  assert.deepEqual(await client.next(), { event: "pong", data: "alive" });
  assert.equal(client.closeCode, undefined);
});

test("binary frames: UTF-8 JSON is an event; invalid UTF-8 gets the invalid-JSON reply and keeps the connection", async () => {
  await using shoal = await ShoalProcess.start({});
  await using client = await WsClient.connect(shoal.url);

  client.send(new TextEncoder().encode(JSON.stringify({ event: "ping", data: "bin" })));
  assert.deepEqual(await client.next(), { event: "pong", data: "bin" });
  client.send(new Uint8Array([0x80, 0x61, 0x62, 0x63]));
  assert.deepEqual(await client.next(), INVALID_EVENT);
  client.send({ event: "ping", data: "after" });
  assert.deepEqual(await client.next(), { event: "pong", data: "after" });
});

test("non-string subscription: Invalid subscription format. and the connection stays open; no session leaks (decision 1)", async () => {
  await using service = await TestService.start();
  service.on("/on_unsubscribe", { status: "ok" });
  await using shoal = await ShoalProcess.start({
    services: { open: { requireAuthentication: false, onUnsubscribe: service.url("/on_unsubscribe") } },
  });
  const client = await WsClient.connect(shoal.url);
  try {
    for (const event of ["subscribe", "message", "unsubscribe"]) {
      for (const subscription of [5, true, ["open.a"], { name: "open.a" }]) {
        client.send({ event, subscription });
        assert.deepEqual(
          await client.next(),
          { event, status: "error", error: "Invalid subscription format." },
          `reply to ${event} with subscription ${JSON.stringify(subscription)}`,
        );
      }
    }
    client.send({ event: "subscribe", subscription: "open.a" });
    assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "open.a" });
  } finally {
    await client.close();
  }
  // The session was torn down when the client left (SocketShark leaked it and never called on_unsubscribe).
  assert.deepEqual((await service.waitFor("/on_unsubscribe", 1)).map((r) => r.body), [{ subscription: "open.a" }]);
});

test("a failed before_subscribe discards what was published meanwhile; a later subscribe gets only new messages (decision 2)", async () => {
  await using service = await TestService.start();
  service.on(
    "/before_subscribe",
    { delayMs: 500, reply: { status: "error", error: "Not yet.", data: { retry: true } } },
    { delayMs: 500, reply: { status: "ok", data: "welcome" } },
  );
  await using shoal = await ShoalProcess.start({
    services: { open: { requireAuthentication: false, beforeSubscribe: service.url("/before_subscribe") } },
    publish: { token: TOKEN },
  });
  await using client = await WsClient.connect(shoal.url);
  const send = async (data: unknown) => {
    const answer = await publish(shoal, { subscription: "open.a", data }, { token: TOKEN });
    assert.deepEqual(answer.body, { status: "ok", published: 1 });
  };

  client.send({ event: "subscribe", subscription: "open.a" });
  await service.waitFor("/before_subscribe", 1);
  await send("published while the failing before_subscribe ran");
  assert.deepEqual(await client.next(), {
    event: "subscribe",
    status: "error",
    error: "Not yet.",
    data: { retry: true },
    subscription: "open.a",
  });
  await client.expectNothing(200);

  client.send({ event: "subscribe", subscription: "open.a" });
  await service.waitFor("/before_subscribe", 2);
  await send("buffered");
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", data: "welcome", subscription: "open.a" });
  // Messages buffered during setup come after the OK, without received_at and queue_size.
  assert.deepEqual(deliveredMessage(await client.next(), { live: false }), {
    event: "message",
    subscription: "open.a",
    data: "buffered",
  });
  await send("live");
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.a", data: "live" });
  await client.expectNothing(200);
});

test("ping: pong with the string data cut to 128 code points, anything else null", async () => {
  await using shoal = await ShoalProcess.start({});
  await using client = await WsClient.connect(shoal.url);

  const cases: [Record<string, unknown>, unknown][] = [
    [{ event: "ping", data: "hello" }, "hello"],
    [{ event: "ping", data: "a".repeat(128) }, "a".repeat(128)],
    [{ event: "ping", data: "b".repeat(129) }, "b".repeat(128)],
    [{ event: "ping", data: "c".repeat(1000) }, "c".repeat(128)],
    // Code points, not UTF-16 units: 130 emoji are 260 units.
    [{ event: "ping", data: "😀".repeat(130) }, "😀".repeat(128)],
    [{ event: "ping", data: "" }, ""],
    [{ event: "ping" }, null],
    [{ event: "ping", data: null }, null],
    [{ event: "ping", data: 42 }, null],
    [{ event: "ping", data: ["x"] }, null],
    [{ event: "ping", data: { a: 1 } }, null],
  ];
  for (const [request, data] of cases) {
    client.send(request);
    assert.deepEqual(await client.next(), { event: "pong", data }, `pong to ${JSON.stringify(request).slice(0, 60)}`);
  }
});

test("ping is answered at once while a slow callback holds the connection's queue (decision 12)", async () => {
  await using service = await TestService.start();
  service.on("/before_subscribe", { delayMs: 1000, reply: { status: "ok" } });
  await using shoal = await ShoalProcess.start({
    services: { open: { requireAuthentication: false, beforeSubscribe: service.url("/before_subscribe") } },
  });
  await using client = await WsClient.connect(shoal.url);

  client.send({ event: "subscribe", subscription: "open.slow" });
  await service.waitFor("/before_subscribe", 1);
  client.send({ event: "ping", data: "quick" });
  client.send({ event: "unsubscribe", subscription: "open.slow" });
  assert.deepEqual(await client.next(500), { event: "pong", data: "quick" });
  // The events after the slow one wait for it, in order.
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "open.slow" });
  assert.deepEqual(await client.next(), { event: "unsubscribe", status: "ok", subscription: "open.slow" });
});
