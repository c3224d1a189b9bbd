// The delivery pipeline end to end: throttle and order options seen by a real client, revocation by periodic
// re-authorization, a client that sends 1,000 events at once, keep-alive pings, and slow consumers. Each test
// owns its service, server and clients (SHOAL_TARGET: bun, deno or binary); `await using` disposes them.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deliveredMessage, publish, subscribed } from "../support/e2e.ts";
import { RawWsClient } from "../support/raw_ws_client.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { type Frame, WsClient } from "../support/ws_client.ts";

const TOKEN = "e2e-secret-token";
const OPEN = { open: { requireAuthentication: false } };
/** Fast retries so failure paths stay well inside a test's time budget. */
const FAST_HTTP = { tries: 1, wait: 0.05, timeout: 5 };

async function published(shoal: ShoalProcess, messages: unknown[]): Promise<void> {
  const answer = await publish(shoal, messages, { token: TOKEN });
  assert.deepEqual(answer.body, { status: "ok", published: messages.length });
}

/** The server's send time of a delivered frame, in ms since the epoch. */
function sentAt(frame: Frame): number {
  const ms = Date.parse(frame.sent_at as string);
  assert.ok(Number.isFinite(ms), `sent_at ${JSON.stringify(frame.sent_at)} does not parse`);
  return ms;
}

function assertBetween(value: number, min: number, max: number, what: string): void {
  assert.ok(value >= min && value <= max, `${what} is ${value} ms, expected ${min}..${max} ms`);
}

test("throttle: a burst delivers the first message at once and the last about one window later, nothing between", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, publish: { token: TOKEN } });
  await using client = await subscribed(shoal);

  const burst = [1, 2, 3, 4, 5].map((n) => ({ subscription: "open.a", data: n, options: { throttle: 0.3 } }));
  await published(shoal, burst);
  const first = await client.next();
  const firstSeen = Date.now();
  const last = await client.next(3000);
  const lastSeen = Date.now();

  // The first goes out live; the held one is sent by the throttle timer with only data, extra fields and sent_at.
  assert.deepEqual(deliveredMessage(first), { event: "message", subscription: "open.a", data: 1 });
  assert.deepEqual(deliveredMessage(last, { live: false }), { event: "message", subscription: "open.a", data: 5 });
  // The window is 300 ms; the server's own send times are exact, the client's arrival times looser.
  assertBetween(sentAt(last) - sentAt(first), 280, 1500, "the server's gap between the two sends");
  assertBetween(lastSeen - firstSeen, 100, 2500, "the client's gap between the two arrivals");
  await client.expectNothing(600);

  // Once the window has passed, the next throttled message goes out at once, live again.
  await published(shoal, [{ subscription: "open.a", data: 6, options: { throttle: 0.3 } }]);
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.a", data: 6 });
  await client.expectNothing(500);
});

test("throttle: each throttle_key has its own window", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, publish: { token: TOKEN } });
  await using client = await subscribed(shoal);

  const a = (n: number) => ({ subscription: "open.a", data: `a${n}`, options: { throttle: 0.3, throttle_key: "a" } });
  const b = (n: number) => ({ subscription: "open.a", data: `b${n}`, options: { throttle: 0.6, throttle_key: "b" } });
  await published(shoal, [a(1), b(1), a(2), b(2), a(3), b(3)]);

  // Both keys' first messages go out at once, before either window ends.
  const a1 = await client.next();
  const b1 = await client.next();
  assert.deepEqual(deliveredMessage(a1), { event: "message", subscription: "open.a", data: "a1" });
  assert.deepEqual(deliveredMessage(b1), { event: "message", subscription: "open.a", data: "b1" });
  const held = new Map<unknown, Frame>();
  for (let i = 0; i < 2; i++) {
    const frame = await client.next(3000);
    held.set(frame.data, frame);
  }
  assert.deepEqual([...held.keys()].sort(), ["a3", "b3"], "only the last message of each key is delivered later");
  assert.deepEqual(deliveredMessage(held.get("a3")!, { live: false }), {
    event: "message",
    subscription: "open.a",
    data: "a3",
  });
  assert.deepEqual(deliveredMessage(held.get("b3")!, { live: false }), {
    event: "message",
    subscription: "open.a",
    data: "b3",
  });
  assertBetween(sentAt(held.get("a3")!) - sentAt(a1), 280, 1500, "key a (0.3 s window)");
  assertBetween(sentAt(held.get("b3")!) - sentAt(b1), 580, 1800, "key b (0.6 s window)");
  await client.expectNothing(800);
});

test("order: published orders 1, 3, 2, 4 deliver 1, 3, 4; each order_key keeps its own order", async () => {
  await using shoal = await ShoalProcess.start({ services: OPEN, publish: { token: TOKEN } });
  await using client = await subscribed(shoal);

  const ordered = (order: number, data: string, key?: string) => ({
    subscription: "open.a",
    data,
    options: key === undefined ? { order } : { order, order_key: key },
  });
  await published(shoal, [
    ordered(1, "1"),
    ordered(3, "3"),
    ordered(2, "2"),
    ordered(4, "4"),
    ordered(2, "other 2", "other"), // another key: its own order, so accepted
    ordered(4, "4 again"), // equal to the last accepted: dropped
    { subscription: "open.a", data: "unordered" }, // no order option: always delivered
    ordered(5, "5"),
  ]);
  const delivered = [];
  for (let i = 0; i < 6; i++) delivered.push(deliveredMessage(await client.next()).data);
  assert.deepEqual(delivered, ["1", "3", "4", "other 2", "unordered", "5"]);
  await client.expectNothing(300);
});

test("revocation: a failed renewal sends the unsubscribe notice (no status), runs the callbacks, stops delivery", async () => {
  await using service = await TestService.start();
  service
    .on(
      "/authorizer",
      { status: "ok", cap: "c1" },
      { status: "error", error: "no longer authorized", data: { hint: "h" } },
    )
    .on("/before_unsubscribe", { status: "ok" })
    .on("/on_unsubscribe", { status: "ok" });
  await using shoal = await ShoalProcess.start({
    http: FAST_HTTP,
    services: {
      ...OPEN,
      books: {
        requireAuthentication: false,
        authorizer: service.url("/authorizer"),
        authorizerFields: ["cap"],
        authorizationRenewalPeriod: 0.3,
        extraFields: ["v"],
        beforeUnsubscribe: service.url("/before_unsubscribe"),
        onUnsubscribe: service.url("/on_unsubscribe"),
      },
    },
    publish: { token: TOKEN },
  });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "books.b1", v: 7 });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", v: 7, subscription: "books.b1" });
  client.send({ event: "subscribe", subscription: "open.x" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "open.x" });

  // Spec §2.8 and decision 3: no status key, the authorizer's error, the extra fields, not the authorizer's data.
  assert.deepEqual(await client.next(3000), {
    event: "unsubscribe",
    subscription: "books.b1",
    error: "no longer authorized",
    v: 7,
  });
  const [subscribe, renewal] = service.requestsTo("/authorizer");
  assert.deepEqual(subscribe.body, { subscription: "books.b1", v: 7 });
  assert.deepEqual(
    renewal.body,
    { subscription: "books.b1", v: 7, cap: "c1" },
    "renewal sends the previous authorizer fields",
  );
  assertBetween(renewal.at - subscribe.at, 250, 2500, "the renewal came after one period");

  await service.waitFor("/on_unsubscribe", 1);
  const common = { subscription: "books.b1", v: 7, cap: "c1" };
  assert.deepEqual(service.requests.slice(2).map((r) => [r.path, r.body]), [
    ["/before_unsubscribe", common],
    ["/on_unsubscribe", common],
  ]);

  // Revoked: a message to books.b1 is not delivered, while the other subscription still gets its own.
  await published(shoal, [{ subscription: "books.b1", data: "revoked" }, {
    subscription: "open.x",
    data: "still here",
  }]);
  assert.deepEqual(deliveredMessage(await client.next()), {
    event: "message",
    subscription: "open.x",
    data: "still here",
  });
  // Two more periods: no further renewal, no further frame.
  await client.expectNothing(700);
  assert.equal(service.requestsTo("/authorizer").length, 2, "renewal stopped with the subscription");

  // The subscription is gone (not "Already subscribed."): subscribing again asks the authorizer, which refuses.
  client.send({ event: "subscribe", subscription: "books.b1" });
  assert.deepEqual(await client.next(), {
    event: "subscribe",
    status: "error",
    error: "no longer authorized",
    data: { hint: "h" },
    subscription: "books.b1",
  });
});

test("1,000 events sent without waiting all get their reply, in order (pongs may come early)", async () => {
  await using service = await TestService.start();
  service.on("/on_message", { status: "ok", data: "got" });
  await using shoal = await ShoalProcess.start({
    http: FAST_HTTP,
    services: { svc: { requireAuthentication: false, extraFields: ["n"], onMessage: service.url("/on_message") } },
  });
  await using client = await WsClient.connect(shoal.url);

  const groups = 250;
  const replies: Frame[] = [];
  const pongs: Frame[] = [];
  for (let n = 0; n < groups; n++) {
    const subscription = `svc.t${n}`;
    client.send({ event: "subscribe", subscription, n });
    client.send({ event: "message", subscription, data: n });
    client.send({ event: "ping", data: `p${n}` });
    client.send({ event: "unsubscribe", subscription });
    replies.push(
      { event: "subscribe", status: "ok", n, subscription },
      { event: "message", status: "ok", n, data: "got", subscription },
      { event: "unsubscribe", status: "ok", n, subscription },
    );
    pongs.push({ event: "pong", data: `p${n}` });
  }

  const got: Frame[] = [];
  for (let i = 0; i < groups * 4; i++) got.push(await client.next(10_000));
  await client.expectNothing(200);
  assert.deepEqual(got.filter((f) => f.event !== "pong"), replies, "every non-ping reply, in the order sent");
  assert.deepEqual(got.filter((f) => f.event === "pong"), pongs, "every pong, in the order sent");
  assert.deepEqual(
    service.bodies("/on_message"),
    Array.from({ length: groups }, (_, n) => ({ subscription: `svc.t${n}`, n, data: n })),
  );
  assert.equal(client.closeCode, undefined, "the connection stays open");
});

test("keep-alive: a client that stops answering pings is closed; one that answers stays", async () => {
  await using service = await TestService.start();
  service.on("/on_unsubscribe", { status: "ok" });
  await using shoal = await ShoalProcess.start({
    ws: { ping: { interval: 0.5, timeout: 0.5 } },
    services: { open: { requireAuthentication: false, onUnsubscribe: service.url("/on_unsubscribe") } },
    publish: { token: TOKEN },
  });
  const started = Date.now(); // before the server's keep-alive of either connection can start
  await using silent = await RawWsClient.connect(shoal.url, { answerPings: false });
  await using answering = await RawWsClient.connect(shoal.url);
  for (const client of [silent, answering]) {
    client.send({ event: "subscribe", subscription: "open.a" });
    assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "open.a" });
  }

  const closed = await silent.waitClosed(6000);
  // Every runtime closes with 1000 when the pong is late, as SocketShark: Bun (and the binary) ping every interval;
  // on Deno, which has no server ping API, Deno's own keep-alive pings and Shoal closes before Deno's 1001 would.
  assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 1000, reason: "" }, `target ${shoal.target}`);
  await shoal.waitForLog((line) => line.message === "ping timeout");
  assert.ok(silent.pings.length >= 1, "the silent client was pinged before it was closed");
  assertBetween(closed.at - silent.pings[0].at, 300, 3000, "close after the unanswered ping");
  assertBetween(closed.at - started, 800, 6000, "close after interval + timeout");
  // The closed session was torn down like any other disconnect.
  assert.deepEqual((await service.waitFor("/on_unsubscribe", 1)).map((r) => r.body), [{ subscription: "open.a" }]);

  // The answering client outlives several more pings and still gets published messages.
  await answering.waitPings(answering.pings.length + 2, 5000);
  assert.equal(answering.closeInfo, undefined, "a client answering pings stays open");
  await published(shoal, [{ subscription: "open.a", data: "after" }]);
  assert.deepEqual(deliveredMessage(await answering.next()), {
    event: "message",
    subscription: "open.a",
    data: "after",
  });
  assert.equal(service.requestsTo("/on_unsubscribe").length, 1);
});

test("slow consumer: a client that stops reading is closed with 1013; a reading client gets every message", async () => {
  await using shoal = await ShoalProcess.start({
    ws: { maxBufferedBytes: 65536 },
    services: OPEN,
    publish: { token: TOKEN },
  });
  await using reader = await subscribed(shoal, "open.big");
  await using slow = await RawWsClient.connect(shoal.url);
  slow.send({ event: "subscribe", subscription: "open.big" });
  assert.deepEqual(await slow.next(), { event: "subscribe", status: "ok", subscription: "open.big" });
  slow.pauseReading();

  // The kernel buffers of a loopback connection absorb a few MB (about 4 MB here: 207 of these messages) before
  // the server's own buffer grows, so publish until the server reports the slow consumer (40 MB at most), then a
  // few more that must not reach it. One message per request keeps the reading client's buffer small.
  const padding = "x".repeat(20_000);
  const cutOff = () => shoal.logs.some((line) => /slow consumer/i.test(String(line.message)));
  let count = 0;
  const publishSome = async () => {
    for (let i = 0; i < 25; i++, count++) {
      await published(shoal, [{ subscription: "open.big", data: { i: count, padding } }]);
    }
  };
  do {
    await publishSome();
  } while (count < 2000 && !cutOff());
  await publishSome();

  for (let i = 0; i < count; i++) {
    const frame = deliveredMessage(await reader.next(10_000));
    assert.deepEqual(frame, { event: "message", subscription: "open.big", data: { i, padding } }, `message ${i}`);
  }
  assert.equal(reader.closeCode, undefined, "the reading client stays open");

  slow.resumeReading();
  const closed = await slow.waitClosed(10_000);
  assert.equal(
    closed.code,
    1013,
    `close ${closed.code} ${JSON.stringify(closed.reason)} after ${slow.seen.length} frames`,
  );
  const messages = slow.seen.length - 1; // the subscribe OK was the first
  assert.ok(messages < count, `the slow client was cut off: it got ${messages} of ${count} messages`);
});
