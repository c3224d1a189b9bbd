// The per-connection limits of a public endpoint (extensions E5), driven through sessions on the memory broker.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gate, until } from "../support/fake_clock.ts";
import { Harness } from "../support/harness.ts";
import { TokenBucket } from "../../src/core/token_bucket.ts";
import { FakeClock } from "../support/fake_clock.ts";

const ON_MSG = "http://svc.test/on_message";
const open = { requireAuthentication: false, extraFields: ["v"] };

test("limits: past maxSubscriptionsPerConnection a subscribe gets Too many subscriptions., echoing its fields", async () => {
  const h = await new Harness({ services: { open }, limits: { maxSubscriptionsPerConnection: 2 } }).start();
  const c = h.connect();
  assert.equal((await c.call({ event: "subscribe", subscription: "open.1" }))[0].status, "ok");
  assert.equal((await c.call({ event: "subscribe", subscription: "open.2" }))[0].status, "ok");
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "open.3", v: 7 }), [
    { event: "subscribe", status: "error", error: "Too many subscriptions.", v: 7, subscription: "open.3" },
  ]);
  assert.equal(h.broker.channels.has("open.3"), false, "nothing was subscribed");
  // An existing one still says Already subscribed. (that check comes first), and room frees on unsubscribe.
  assert.equal((await c.call({ event: "subscribe", subscription: "open.2" }))[0].error, "Already subscribed.");
  assert.equal((await c.call({ event: "unsubscribe", subscription: "open.1" }))[0].status, "ok");
  assert.equal((await c.call({ event: "subscribe", subscription: "open.3" }))[0].status, "ok");
  // The limit is per connection.
  const other = h.connect();
  assert.equal((await other.call({ event: "subscribe", subscription: "open.1" }))[0].status, "ok");
});

test("limits: the default cap is 1,000 subscriptions per connection", async () => {
  const h = await new Harness({ services: { open } }).start();
  const c = h.connect();
  for (let i = 0; i < 1000; i++) c.session.receive(JSON.stringify({ event: "subscribe", subscription: `open.${i}` }));
  await until(() => c.transport.texts.length === 1000, "1000 replies");
  assert.ok(c.take().every((f) => f.status === "ok"));
  assert.equal((await c.call({ event: "subscribe", subscription: "open.x" }))[0].error, "Too many subscriptions.");
});

test("limits: a name that is not well-formed UTF-16 is an invalid format; it cannot alias the U+FFFD name", async () => {
  const h = await new Harness({ services: { open } }).start();
  const c = h.connect();
  for (const name of ["open.room\udc00", "open.\ud800", "open.a\ud83dz"]) {
    for (const event of ["subscribe", "message", "unsubscribe"]) {
      assert.deepEqual(await c.call({ event, subscription: name }), [
        { event, status: "error", error: "Invalid subscription format.", subscription: name },
      ], `${event} ${JSON.stringify(name)}`);
    }
  }
  assert.equal(h.broker.channels.size, 0);
  // A well-formed astral character is fine.
  assert.equal((await c.call({ event: "subscribe", subscription: "open.room\u{1F600}" }))[0].status, "ok");
});

test("limits: a name longer than maxSubscriptionLength UTF-8 bytes is an invalid format", async () => {
  const h = await new Harness({ services: { open }, limits: { maxSubscriptionLength: 12 } }).start();
  const c = h.connect();
  assert.equal((await c.call({ event: "subscribe", subscription: "open.1234567" }))[0].status, "ok", "12 bytes");
  assert.equal((await c.call({ event: "subscribe", subscription: "open.12345678" }))[0].error, "Invalid subscription format.");
  // "é" is two bytes in UTF-8: 5 + 4 × 2 = 13 bytes in 9 characters.
  assert.equal((await c.call({ event: "subscribe", subscription: "open.éééé" }))[0].error, "Invalid subscription format.");
  assert.equal((await c.call({ event: "subscribe", subscription: "open.ééé" }))[0].status, "ok", "11 bytes");
  assert.equal(h.broker.channels.size, 2);
});

test("limits: extra fields whose JSON is over maxExtraFieldsBytes get Extra fields too large.", async () => {
  const h = await new Harness({
    services: { open: { requireAuthentication: false, extraFields: ["v", "w"] } },
    limits: { maxExtraFieldsBytes: 40 },
  }).start();
  const c = h.connect();
  const fits = { v: "x".repeat(20), w: 1 }; // {"v":"xxxxxxxxxxxxxxxxxxxx","w":1} is 32 characters
  assert.equal((await c.call({ event: "subscribe", subscription: "open.a", ...fits }))[0].status, "ok");
  const big = { v: "x".repeat(30), w: 1 };
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "open.b", ...big, ignored: "y".repeat(100) }), [
    { event: "subscribe", status: "error", error: "Extra fields too large.", ...big, subscription: "open.b" },
  ]);
  assert.equal(h.broker.channels.has("open.b"), false);
  // The limit counts UTF-8 bytes: 20 "é" are 20 characters but 40 bytes.
  const wide = { v: "é".repeat(20), w: 1 }; // 32 characters, 52 bytes
  assert.equal((await c.call({ event: "subscribe", subscription: "open.c", ...wide }))[0].error, "Extra fields too large.");
});

test("limits: events past eventsPerSecond and eventsBurst get Rate limit exceeded.; ping is exempt", async () => {
  const h = await new Harness({ services: { open }, limits: { eventsPerSecond: 2, eventsBurst: 3 } }).start();
  const c = h.connect();
  for (let i = 0; i < 3; i++) assert.equal((await c.call({ event: "subscribe", subscription: `open.${i}` }))[0].status, "ok");
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "open.3" }), [
    { event: "subscribe", status: "error", error: "Rate limit exceeded.", subscription: "open.3" },
  ]);
  assert.deepEqual(await c.call({ event: "auth", ticket: "x", subscription: "open.1" }), [
    { event: "auth", status: "error", error: "Rate limit exceeded." },
  ]);
  assert.deepEqual(await c.call({ event: "nope" }), [{ event: "nope", status: "error", error: "Rate limit exceeded." }]);
  assert.deepEqual(await c.call("not json"), [{ status: "error", error: "Messages must be JSON and contain an event field." }]);
  for (let i = 0; i < 10; i++) assert.deepEqual(await c.call({ event: "ping", data: i }), [{ event: "pong", data: null }]);
  assert.equal(h.broker.channels.has("open.3"), false, "a refused event never runs");
  await h.clock.advance(500); // one token back
  assert.equal((await c.call({ event: "subscribe", subscription: "open.3" }))[0].status, "ok");
  assert.equal((await c.call({ event: "subscribe", subscription: "open.4" }))[0].error, "Rate limit exceeded.");
});

test("limits: eventsBurst 0 means a burst of eventsPerSecond", () => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(clock, { rate: 5, burst: 5 });
  let taken = 0;
  while (bucket.take()) taken++;
  assert.equal(taken, 5);
  const h = new Harness({ limits: { eventsPerSecond: 2.5 } });
  assert.equal(h.router.config.limits.eventsBurst, 0);
});

test("limits: queued events past maxPendingBytes close the connection with 1008", async () => {
  const h = await new Harness({
    services: { slow: { requireAuthentication: false, onMessage: ON_MSG } },
    limits: { maxPendingBytes: 1200 },
  }).start();
  const held = gate();
  h.services.on(ON_MSG, { after: held, reply: { status: "ok" } });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.a" });
  // ~450 characters and 3 structural characters: weighs ~546 bytes.
  const frame = JSON.stringify({ event: "message", subscription: "slow.a", data: "x".repeat(400) });
  c.session.receive(frame); // runs at once: not queued
  await h.settled();
  c.session.receive(frame);
  c.session.receive(frame);
  assert.equal(c.transport.closed, undefined, "two queued frames fit in 1200 bytes");
  c.session.receive(frame);
  assert.deepEqual(c.transport.closed, { code: 1008, reason: "too many pending bytes" });
  held.open();
  await until(() => h.router.sessionCount === 0, "teardown");
});

test("limits: a dense frame weighs its parsed size, so few of them may wait; one that starts at once is never refused", async () => {
  const h = await new Harness({
    services: { slow: { requireAuthentication: false, onMessage: ON_MSG } },
    limits: { maxPendingBytes: 100_000 },
  }).start();
  const held = gate();
  h.services.on(ON_MSG, { after: held, reply: { status: "ok" } });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.a" });
  // 20,000 characters that parse into 10,000 objects: about 340 KB once parsed.
  const dense = JSON.stringify({ event: "message", subscription: "slow.a", data: Array(5000).fill({}) });
  c.session.receive(dense); // nothing ahead of it: it runs, whatever it weighs
  await h.settled();
  assert.equal(c.transport.closed, undefined);
  c.session.receive(dense); // waits behind the first: 340 KB > 100 KB
  assert.deepEqual(c.transport.closed, { code: 1008, reason: "too many pending bytes" });
  held.open();
  await until(() => h.router.sessionCount === 0, "teardown");
});

test("limits: rate-limited events hold only their small reply while they wait, never their frames", async () => {
  const h = await new Harness({
    services: { slow: { requireAuthentication: false, onMessage: ON_MSG } },
    limits: { maxPendingBytes: 64 * 1024, eventsPerSecond: 1, eventsBurst: 2 },
  }).start();
  const held = gate();
  h.services.on(ON_MSG, { after: held, reply: { status: "ok", data: "done" } });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.a" });
  c.session.receive(JSON.stringify({ event: "message", subscription: "slow.a" })); // the second token: runs, held
  await h.settled();
  const big = JSON.stringify({ event: "message", subscription: "slow.a", data: "x".repeat(200_000) });
  for (let i = 0; i < 200; i++) c.session.receive(big); // 40 MB of frames, all refused by the rate limit
  assert.equal(c.transport.closed, undefined, "200 small refusals fit in 64 KiB");
  held.open();
  await until(() => c.transport.texts.length === 201, "201 replies");
  const replies = c.take();
  assert.deepEqual(replies[0], { event: "message", status: "ok", data: "done", subscription: "slow.a" });
  assert.ok(replies.slice(1).every((r) => r.error === "Rate limit exceeded." && r.subscription === "slow.a"));
});

test("limits: queued bytes are released as events run, so a steady client is never closed", async () => {
  const h = await new Harness({
    services: { slow: { requireAuthentication: false, onMessage: ON_MSG } },
    limits: { maxPendingBytes: 1000 },
  }).start();
  h.services.on(ON_MSG, { status: "ok" });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.a" });
  const frame = JSON.stringify({ event: "message", subscription: "slow.a", data: "x".repeat(400) });
  for (let i = 0; i < 50; i++) await c.send(frame);
  assert.equal(c.transport.closed, undefined);
  assert.equal(h.services.bodies(ON_MSG).length, 50);
});

test("departure: a client gone while its callback hangs is released at once; its teardown callbacks still run", async () => {
  const ON_UNSUB = "http://svc.test/on_unsubscribe";
  const h = await new Harness({
    services: { slow: { requireAuthentication: false, onMessage: ON_MSG, onUnsubscribe: ON_UNSUB } },
  }, { http: { timeout: 3600, tries: 3 } }).start();
  h.services.on(ON_MSG, { hang: true }).on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.a" });
  c.session.receive(JSON.stringify({ event: "message", subscription: "slow.a", data: 1 }));
  await h.settled();
  assert.equal(h.services.bodies(ON_MSG).length, 1, "the callback is in flight");
  const done = c.session.disconnected();
  assert.equal(h.router.hub.channelCount, 0, "out of the hub at once: nothing more is delivered to it");
  await h.publish({ subscription: "slow.a", data: "late" });
  await done; // no clock advance: the hanging call was aborted, not timed out
  assert.equal(h.router.sessionCount, 0);
  assert.equal(h.services.bodies(ON_MSG).length, 1, "an aborted call is not retried");
  assert.deepEqual(h.services.bodies(ON_UNSUB), [{ subscription: "slow.a" }]);
  assert.deepEqual(c.take().filter((f) => f.event === "message"), []);
});

test("departure: on_unsubscribe after a client unsubscribe is not cancelled when the client then leaves", async () => {
  const ON_UNSUB = "http://svc.test/on_unsubscribe";
  const h = await new Harness({ services: { svc: { requireAuthentication: false, onUnsubscribe: ON_UNSUB } } }).start();
  const held = gate();
  h.services.on(ON_UNSUB, { after: held, reply: { status: "ok" } });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "svc.a" });
  assert.deepEqual(await c.call({ event: "unsubscribe", subscription: "svc.a" }), [
    { event: "unsubscribe", status: "ok", subscription: "svc.a" },
  ]);
  const done = c.session.disconnected(); // on_unsubscribe is in flight: the subscription is already gone
  held.open();
  await done;
  assert.deepEqual(h.services.bodies(ON_UNSUB), [{ subscription: "svc.a" }], "told once, and not cut off");
  assert.equal(h.router.services.abandoned, 0);
});
