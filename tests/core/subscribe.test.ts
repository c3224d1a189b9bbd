import assert from "node:assert/strict";
import { test } from "node:test";
import { gate, until } from "../support/fake_clock.ts";
import { Harness } from "../support/harness.ts";

const AUTHZ = "http://svc.test/authorize";
const BEFORE = "http://svc.test/before_subscribe";
const ON_SUB = "http://svc.test/on_subscribe";
const ON_MSG = "http://svc.test/on_message";
const BEFORE_UNSUB = "http://svc.test/before_unsubscribe";
const ON_UNSUB = "http://svc.test/on_unsubscribe";
const TICKET = "http://auth.test/ticket";

const config = {
  authentication: { ticket: { validationUrl: TICKET, authFields: ["session_id"] } },
  services: {
    open: { requireAuthentication: false },
    empty: {},
    authz: { requireAuthentication: false, authorizer: AUTHZ, authorizerFields: ["capabilities"], extraFields: ["extra"] },
    complex: {
      requireAuthentication: false,
      authorizer: AUTHZ,
      authorizerFields: ["cap"],
      extraFields: ["extra"],
      beforeSubscribe: BEFORE,
      onSubscribe: ON_SUB,
      onMessage: ON_MSG,
      beforeUnsubscribe: BEFORE_UNSUB,
      onUnsubscribe: ON_UNSUB,
    },
  },
};

test("subscribe: invalid formats and unknown services", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  const e = (error: string, extra: Record<string, unknown> = {}) => ({ event: "subscribe", status: "error", error, ...extra });
  assert.deepEqual(await c.call({ event: "subscribe" }), [e("Invalid subscription format.")]);
  for (const falsy of ["", null, 0, false, [], {}]) {
    assert.deepEqual(await c.call({ event: "subscribe", subscription: falsy }), [e("Invalid subscription format.")]);
  }
  // Decision 1: a truthy non-string gets the same answer and the connection stays.
  for (const bad of [5, true, ["open.a"], { a: 1 }]) {
    assert.deepEqual(await c.call({ event: "subscribe", subscription: bad }), [e("Invalid subscription format.")]);
  }
  for (const name of ["invalid", ".topic", "open."]) {
    assert.deepEqual(await c.call({ event: "subscribe", subscription: name }), [
      e("Invalid subscription format.", { subscription: name }),
    ]);
  }
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "nope.topic" }), [
    e("Invalid service.", { subscription: "nope.topic" }),
  ]);
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "empty.topic" }), [
    e("Authentication required.", { subscription: "empty.topic" }),
  ]);
  assert.equal(c.transport.closed, undefined);
  assert.equal(h.router.hub.channelCount, 0);
});

test("subscribe: splits at the first dot; already subscribed echoes the first subscription's extra fields", async () => {
  const h = await new Harness(config).start();
  h.services.on(AUTHZ, { status: "ok" });
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "open.a.b" }), [
    { event: "subscribe", status: "ok", subscription: "open.a.b" },
  ]);
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "open.a.b" }), [
    { event: "subscribe", status: "error", error: "Already subscribed.", subscription: "open.a.b" },
  ]);
  await c.call({ event: "subscribe", subscription: "authz.x", extra: "first" });
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "authz.x", extra: "second" }), [
    { event: "subscribe", status: "error", error: "Already subscribed.", extra: "first", subscription: "authz.x" },
  ]);
});

test("subscribe: authorizer failures, data passthrough, and only listed extra fields kept", async () => {
  const h = await new Harness(config).start();
  h.services.on(
    AUTHZ,
    { status: "error" },
    { status: "error", error: "test error", data: { why: 1 } },
    { status: "error", error: "x", data: {} },
    { status: "ok", capabilities: "rw", plan: "pro" },
  );
  const c = h.connect();
  const sub = { event: "subscribe", subscription: "authz.t", extra: "foo", other: "bar" };
  assert.deepEqual(await c.call(sub), [
    { event: "subscribe", status: "error", error: "Unauthorized.", extra: "foo", subscription: "authz.t" },
  ]);
  assert.deepEqual(await c.call(sub), [
    { event: "subscribe", status: "error", error: "test error", extra: "foo", data: { why: 1 }, subscription: "authz.t" },
  ]);
  assert.deepEqual(await c.call(sub), [
    { event: "subscribe", status: "error", error: "x", extra: "foo", subscription: "authz.t" },
  ]);
  assert.deepEqual(await c.call(sub), [{ event: "subscribe", status: "ok", extra: "foo", subscription: "authz.t" }]);
  // The authorizer gets the common body without authorizer fields; unlisted request keys never reach it.
  assert.deepEqual(h.services.bodies(AUTHZ)[0], { subscription: "authz.t", extra: "foo" });
  assert.equal(h.router.hub.channelCount, 1);
});

test("subscribe: authorizer unreachable gives Service unavailable", async () => {
  const h = await new Harness(config).start();
  h.services.on(AUTHZ, { fail: "network" });
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "authz.t" }), [
    { event: "subscribe", status: "error", error: "Service unavailable.", subscription: "authz.t" },
  ]);
  assert.equal(h.router.hub.channelCount, 0);
});

test("subscribe → message → unsubscribe with every callback and its exact body", async () => {
  const h = await new Harness(config).start();
  h.services
    .on(TICKET, { status: "ok", session_id: "sess_1" })
    .on(AUTHZ, { status: "ok", cap: "c1" })
    .on(BEFORE, { status: "ok", data: { snapshot: 1 } })
    .on(ON_SUB, { status: "ok" })
    .on(
      ON_MSG,
      { status: "ok" },
      { status: "error", error: "bad", data: { d: 1 } },
      { status: "ok", data: null },
      { status: "ok", data: { reply: true } },
      { status: "error" },
    )
    .on(BEFORE_UNSUB, { status: "error" }, { status: "error", error: "no", data: { x: 1 } }, { status: "ok", data: "bye" })
    .on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  await c.call({ event: "auth", ticket: "t" });
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "complex.t1", extra: "X" }), [
    { event: "subscribe", status: "ok", extra: "X", data: { snapshot: 1 }, subscription: "complex.t1" },
  ]);
  const body = { subscription: "complex.t1", extra: "X", cap: "c1", session_id: "sess_1" };
  assert.deepEqual(h.services.bodies(AUTHZ), [{ subscription: "complex.t1", extra: "X", session_id: "sess_1" }]);
  assert.deepEqual(h.services.bodies(BEFORE), [body]);
  assert.deepEqual(h.services.bodies(ON_SUB), [body]);

  const msg = (data?: unknown) => ({ event: "message", subscription: "complex.t1", extra: "ignored", ...(data === undefined ? {} : { data }) });
  assert.deepEqual(await c.call(msg()), []);
  assert.deepEqual(await c.call(msg("hi")), [
    { event: "message", status: "error", error: "bad", extra: "X", data: { d: 1 }, subscription: "complex.t1" },
  ]);
  assert.deepEqual(await c.call(msg(1)), [{ event: "message", status: "ok", extra: "X", subscription: "complex.t1" }]);
  assert.deepEqual(await c.call(msg(2)), [
    { event: "message", status: "ok", extra: "X", data: { reply: true }, subscription: "complex.t1" },
  ]);
  assert.deepEqual(await c.call(msg(3)), [
    { event: "message", status: "error", error: "Unhandled exception.", extra: "X", subscription: "complex.t1" },
  ]);
  assert.deepEqual(h.services.bodies(ON_MSG).slice(0, 2), [{ ...body, data: null }, { ...body, data: "hi" }]);

  const unsub = { event: "unsubscribe", subscription: "complex.t1" };
  assert.deepEqual(await c.call(unsub), [
    { event: "unsubscribe", status: "error", error: "Unhandled exception.", extra: "X", subscription: "complex.t1" },
  ]);
  assert.deepEqual(await c.call(unsub), [
    { event: "unsubscribe", status: "error", error: "no", extra: "X", data: { x: 1 }, subscription: "complex.t1" },
  ]);
  assert.equal(h.router.hub.channelCount, 1, "a refused unsubscribe keeps the subscription");
  assert.deepEqual(await c.call(unsub), [
    { event: "unsubscribe", status: "ok", extra: "X", data: "bye", subscription: "complex.t1" },
  ]);
  assert.deepEqual(h.services.bodies(ON_UNSUB), [body]);
  assert.equal(h.router.hub.channelCount, 0);
  assert.equal(c.transport.closed, undefined);
});

test("message and unsubscribe for a subscription that does not exist echo the request's extra fields", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  for (const event of ["message", "unsubscribe"]) {
    assert.deepEqual(await c.call({ event, subscription: "complex.none", extra: "req", other: 1 }), [
      { event, status: "error", error: "Subscription does not exist.", extra: "req", subscription: "complex.none" },
    ]);
  }
  assert.deepEqual(await c.call({ event: "message", subscription: "nope.x" }), [
    { event: "message", status: "error", error: "Invalid service.", subscription: "nope.x" },
  ]);
});

test("a message without on_message gets no reply", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "open.t" });
  assert.deepEqual(await c.call({ event: "message", subscription: "open.t", data: 1 }), []);
  assert.deepEqual(h.events.at(-1), { name: "message", success: true });
});

test("messages published during setup are delivered right after the OK, without received_at/queue_size", async () => {
  const h = await new Harness(config).start();
  const held = gate();
  h.services.on(AUTHZ, { status: "ok" }).on(BEFORE, { after: held, reply: { status: "ok", data: "snap" } });
  const c = h.connect();
  c.session.receive(JSON.stringify({ event: "subscribe", subscription: "complex.b", extra: "E" }));
  await until(() => h.broker.channels.has("complex.b"), "the broker subscription");
  await h.publish({ subscription: "complex.b", data: "during", published_at: "2024-01-02T03:04:05Z" });
  assert.deepEqual(c.take(), [], "nothing before the OK");
  held.open();
  await c.send("{}"); // any later event waits for the subscribe to finish
  const frames = c.take();
  assert.deepEqual(frames[0], { event: "subscribe", status: "ok", extra: "E", data: "snap", subscription: "complex.b" });
  const { sent_at, ...rest } = frames[1];
  assert.deepEqual(rest, {
    event: "message",
    subscription: "complex.b",
    data: "during",
    published_at: "2024-01-02T03:04:05Z",
    extra: "E",
  });
  assert.match(String(sent_at), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$/);
});

test("before_subscribe failure rolls back the provisional registration and its buffer (decision 2)", async () => {
  const h = await new Harness(config).start();
  const held = gate();
  h.services
    .on(AUTHZ, { status: "ok" })
    .on(BEFORE, { after: held, reply: { status: "error", error: "nope" } }, { status: "ok" });
  const c = h.connect();
  c.session.receive(JSON.stringify({ event: "subscribe", subscription: "complex.r" }));
  await until(() => h.broker.channels.has("complex.r"), "the broker subscription");
  await h.publish({ subscription: "complex.r", data: "stale" });
  held.open();
  await c.send("{}");
  assert.deepEqual(c.take()[0], { event: "subscribe", status: "error", error: "nope", subscription: "complex.r" });
  assert.equal(h.router.hub.channelCount, 0);
  assert.equal(h.broker.channels.size, 0);
  // A later successful subscribe delivers nothing stale.
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "complex.r" }), [
    { event: "subscribe", status: "ok", subscription: "complex.r" },
  ]);
});
