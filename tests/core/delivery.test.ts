import assert from "node:assert/strict";
import { test } from "node:test";
import { passesFilter } from "../../src/core/delivery.ts";
import { Harness } from "../support/harness.ts";

const TICKET = "http://auth.test/ticket";
const AUTHZ = "http://svc.test/authorize";
const BEFORE = "http://svc.test/before_subscribe";

const config = {
  authentication: { ticket: { validationUrl: TICKET, authFields: ["session_id"] } },
  services: {
    simple: { requireAuthentication: false, filterFields: ["session_id"] },
    books: {
      requireAuthentication: false,
      extraFields: ["extra"],
      filterFields: ["extra", "session_id", "cap"],
      authorizer: AUTHZ,
      authorizerFields: ["cap"],
    },
    ordered: { requireAuthentication: false, beforeSubscribe: BEFORE },
  },
};

/** Published frames without their timestamps. */
function messages(frames: Record<string, unknown>[]): Record<string, unknown>[] {
  return frames.map(({ sent_at: _s, received_at: _r, ...rest }) => rest);
}

test("delivery: message shape, routing by the payload's subscription, invalid payloads ignored", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "simple.a" });
  await h.publish({ subscription: "simple.a", data: { n: 1 }, published_at: "2024-01-02T03:04:05.123+00:00", junk: 1 });
  const [frame] = c.take();
  assert.deepEqual(Object.keys(frame), ["event", "subscription", "data", "published_at", "received_at", "queue_size", "sent_at"]);
  assert.equal(frame.published_at, "2024-01-02T03:04:05.123+00:00");
  assert.equal(typeof frame.queue_size, "number");
  for (const key of ["received_at", "sent_at"]) assert.match(String(frame[key]), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);

  await h.publish({ subscription: "simple.other", data: 1 }, "simple.a"); // not this session's subscription
  await h.publish("{", "simple.a");
  await h.publish([1, 2], "simple.a");
  await h.publish({ subscription: "simple.a" }, "simple.a");
  await h.publish({ subscription: "simple.a", data: null, published_at: 5, options: null });
  assert.deepEqual(messages(c.take()), [{ event: "message", subscription: "simple.a", data: null, queue_size: 1 }]);

  // Published on channel a, addressed to b: reaches sessions subscribed to both, as b.
  await c.call({ event: "subscribe", subscription: "simple.b" });
  await h.publish({ subscription: "simple.b", data: "x" }, "simple.a");
  assert.deepEqual(messages(c.take()), [{ event: "message", subscription: "simple.b", data: "x", queue_size: 1 }]);
});

test("delivery: one serialized frame per distinct extra-field set", async () => {
  const h = await new Harness(config).start();
  h.services.on(AUTHZ, { status: "ok" });
  const [a, b, c] = [h.connect(), h.connect(), h.connect()];
  await a.call({ event: "subscribe", subscription: "books.1", extra: "v1" });
  await b.call({ event: "subscribe", subscription: "books.1", extra: "v1" });
  await c.call({ event: "subscribe", subscription: "books.1", extra: "v2" });
  await h.publish({ subscription: "books.1", data: "d" });
  const [ta] = a.transport.texts;
  const [tb] = b.transport.texts;
  const [tc] = c.transport.texts;
  assert.equal(ta, tb);
  assert.notEqual(ta, tc);
  assert.equal(JSON.parse(tc).extra, "v2");
});

test("filter fields: extra, then authorizer, then auth fields; null matches a missing value (decision 4)", async () => {
  const h = await new Harness(config).start();
  h.services.on(TICKET, { status: "ok", session_id: "sess_1" }).on(AUTHZ, { status: "ok", cap: "rw" });
  const anon = h.connect();
  await anon.call({ event: "subscribe", subscription: "simple.t" });
  const user = h.connect();
  await user.call({ event: "auth", ticket: "t" });
  await user.call({ event: "subscribe", subscription: "simple.t" });
  await user.call({ event: "subscribe", subscription: "books.t", extra: "bar" });

  await h.publish({ subscription: "simple.t", data: 1, session_id: null });
  await h.publish({ subscription: "simple.t", data: 2, session_id: "sess_1" });
  await h.publish({ subscription: "simple.t", data: 3, session_id: "other" });
  await h.publish({ subscription: "simple.t", data: 4 });
  assert.deepEqual(messages(anon.take()).map((m) => m.data), [1, 4]);
  assert.deepEqual(messages(user.take()).map((m) => m.data), [2, 4]);

  await h.publish({ subscription: "books.t", data: "a", extra: "foo" });
  await h.publish({ subscription: "books.t", data: "b", extra: "bar" });
  await h.publish({ subscription: "books.t", data: "c", cap: "ro" });
  await h.publish({ subscription: "books.t", data: "d", cap: "rw", session_id: "sess_1", extra: "bar" });
  const got = messages(user.take());
  assert.deepEqual(got.map((m) => m.data), ["b", "d"]);
  assert.equal(got[0].extra, "bar");
  // simple.t: 1 and 3 to the user, 2 and 3 to the anonymous session; books.t: a and c.
  assert.equal(h.filtered.filter((r) => r === "fields").length, 6);
});

test("order: strictly greater wins per key; before_subscribe sets the initial order; invalid values ignored", async () => {
  const h = await new Harness(config).start();
  h.services.on(BEFORE, { status: "ok", options: { order: 2 }, data: { msg: 1 } });
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "ordered.o" }), [
    { event: "subscribe", status: "ok", data: { msg: 1 }, subscription: "ordered.o" },
  ]);
  for (const order of [1, 2, 3, 5, 4, 5, 6]) await h.publish({ subscription: "ordered.o", data: order, options: { order } });
  for (const order of [1.1, 1.3, 1.2]) {
    await h.publish({ subscription: "ordered.o", data: order, options: { order, order_key: "other" } });
  }
  await h.publish({ subscription: "ordered.o", data: "invalid", options: { order: "invalid" } });
  await h.publish({ subscription: "ordered.o", data: "nan", options: { order: "nan" } });
  await h.publish({ subscription: "ordered.o", data: "str", options: { order: " 7 " } });
  await h.publish({ subscription: "ordered.o", data: "none" });
  await h.publish({ subscription: "ordered.o", data: "true-key", options: { order: 8, order_key: true } });
  await h.publish({ subscription: "ordered.o", data: "one-key", options: { order: 8, order_key: 1 } });
  assert.deepEqual(messages(c.take()).map((m) => m.data), [3, 5, 6, 1.1, 1.3, "invalid", "nan", "str", "none", "true-key"]);
});

test("throttle: first at once, the latest per window, the last one a window after the previous send", async () => {
  const h = await new Harness({ services: { t: { requireAuthentication: false } } }).start();
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "t.x" });
  const pub = (data: unknown, options?: unknown) => h.publish({ subscription: "t.x", data, ...(options ? { options } : {}) });
  await pub("one", { throttle: 0.2 });
  await pub("other", { throttle: 1, throttle_key: "other" });
  await pub("invalid", { throttle: "invalid" });
  await pub("plain");
  assert.deepEqual(messages(c.take()).map((m) => m.data), ["one", "other", "invalid", "plain"]);
  await pub("two", { throttle: 0.2 });
  await pub("three", { throttle: 0.2 });
  assert.deepEqual(c.take(), []);
  await h.clock.advance(199);
  assert.deepEqual(c.take(), []);
  await h.clock.advance(1);
  const held = c.take();
  assert.deepEqual(held.map(({ sent_at: _s, ...m }) => m), [{ event: "message", subscription: "t.x", data: "three" }]);
  await h.clock.advance(200);
  await pub("four", { throttle: 0.2 });
  const [four] = c.take();
  assert.equal(four.data, "four");
  assert.ok("received_at" in four && "queue_size" in four, "a message sent at once has the full fields");
});

test("throttle: a steady stream yields one message per window; unsubscribe cancels the held one", async () => {
  const h = await new Harness({ services: { t: { requireAuthentication: false } } }).start();
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "t.s" });
  const sent: unknown[] = [];
  for (let i = 0; i < 10; i++) {
    await h.publish({ subscription: "t.s", data: i, options: { throttle: 1 } });
    sent.push(...c.take().map((f) => f.data));
    await h.clock.advance(250);
    sent.push(...c.take().map((f) => f.data));
  }
  // 0 at once; then the latest at 1 s (3), 2 s (7); 9 is still held.
  assert.deepEqual(sent, [0, 3, 7]);
  await c.call({ event: "unsubscribe", subscription: "t.s" });
  await h.clock.advance(5000);
  assert.deepEqual(c.take(), []);
  assert.equal(h.clock.pending, 0, "no timer left behind");
});

test("a throttle in the before_subscribe answer starts a window; a filtered answer sends no OK", async () => {
  const h = await new Harness({
    services: {
      w: { requireAuthentication: false, beforeSubscribe: BEFORE, filterFields: ["session_id"] },
    },
  }).start();
  h.services.on(BEFORE, { status: "ok", options: { throttle: 0.5 } }, { status: "ok", session_id: "someone" });
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "w.a" }), [
    { event: "subscribe", status: "ok", subscription: "w.a" },
  ]);
  await h.publish({ subscription: "w.a", data: 1, options: { throttle: 0.5 } });
  assert.deepEqual(c.take(), []);
  await h.clock.advance(500);
  assert.deepEqual(c.take().map((f) => f.data), [1]);

  assert.deepEqual(await c.call({ event: "subscribe", subscription: "w.b" }), []);
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "w.b" }), [
    { event: "subscribe", status: "error", error: "Already subscribed.", subscription: "w.b" },
  ]);
});

test("passesFilter: present filter fields must equal the own value (Python ==, missing = null); absent ones do not filter", () => {
  const own = (values: Record<string, unknown>) => ({ fieldValue: (f: string) => values[f] });
  const filter = ["user", "room"];
  assert.equal(passesFilter(filter, { user: 1 }, own({ user: 1 })), true);
  assert.equal(passesFilter(filter, { user: true }, own({ user: 1 })), true, "True == 1 in Python");
  assert.equal(passesFilter(filter, { user: "1" }, own({ user: 1 })), false);
  assert.equal(passesFilter(filter, { room: null }, own({})), true, "a missing own value is null");
  assert.equal(passesFilter(filter, { room: "a" }, own({})), false);
  assert.equal(passesFilter(filter, { other: 1 }, own({})), true);
  assert.equal(passesFilter([], { user: 2 }, own({ user: 1 })), true);
});
