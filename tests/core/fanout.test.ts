// The hub's fan-out path (Bun's native pub/sub, here a FakeFanout): which messages take it, and that clients see
// exactly what per-session delivery would send. (Every other core test also runs on this path: SHOAL_TEST_FANOUT.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { gate } from "../support/fake_clock.ts";
import { Harness } from "../support/harness.ts";

const BEFORE = "http://svc.test/before_subscribe";
const TICKET = "http://auth.test/ticket";

const config = {
  authentication: { ticket: { validationUrl: TICKET, authFields: ["user"] } },
  services: {
    open: { requireAuthentication: false, extraFields: ["v"] },
    filtered: { requireAuthentication: false, filterFields: ["user"] },
    slow: { requireAuthentication: false, beforeSubscribe: BEFORE },
  },
};

function data(frames: Record<string, unknown>[]): unknown[] {
  return frames.map((f) => [f.event, f.data, f.v]);
}

test("fanout: a plain message is one publish per distinct extra-field set, reaching every subscriber once", async () => {
  const h = await new Harness(config, { fanout: true }).start();
  const fanout = h.fanout!;
  const [a, b, c, d] = [h.connect(), h.connect(), h.connect(), h.connect()];
  await a.call({ event: "subscribe", subscription: "open.x", v: 1 });
  await b.call({ event: "subscribe", subscription: "open.x", v: 1 });
  await c.call({ event: "subscribe", subscription: "open.x", v: 2 });
  await d.call({ event: "subscribe", subscription: "open.x" });
  assert.equal(h.router.hub.fanoutMembers, 4);
  assert.equal(fanout.topics.size, 3);

  await h.publish({ subscription: "open.x", data: "hello" });
  assert.equal(fanout.published.length, 3, "one publish per distinct frame");
  assert.deepEqual(data(a.take()), [["message", "hello", 1]]);
  assert.deepEqual(data(b.take()), [["message", "hello", 1]]);
  assert.deepEqual(data(c.take()), [["message", "hello", 2]]);
  assert.deepEqual(data(d.take()), [["message", "hello", undefined]]);
  assert.equal(h.delivered, 4, "the delivered metric counts recipients, not publishes");
  const frame = JSON.parse(fanout.published.find((p) => p.text.includes('"v":1'))!.text);
  assert.deepEqual(Object.keys(frame), ["event", "subscription", "data", "received_at", "queue_size", "v", "sent_at"]);
});

test("fanout: order, throttle, filter fields and a payload addressed elsewhere go per session, with their semantics", async () => {
  const h = await new Harness(config, { fanout: true }).start();
  const fanout = h.fanout!;
  h.services.on(TICKET, { status: "ok", user: "u1" });
  const a = h.connect();
  await a.call({ event: "auth", ticket: "t" });
  await a.call({ event: "subscribe", subscription: "filtered.x" });
  const b = h.connect();
  await b.call({ event: "subscribe", subscription: "filtered.x" });
  a.take();
  b.take();

  await h.publish({ subscription: "filtered.x", data: 1, options: { order: 5 } });
  await h.publish({ subscription: "filtered.x", data: 2, options: { order: 4 } });
  await h.publish({ subscription: "filtered.x", data: 3, user: "u1" });
  await h.publish({ subscription: "filtered.x", data: 4, options: { throttle: 10 } });
  await h.publish({ subscription: "filtered.x", data: 5, options: { throttle: 10 } });
  await h.publish({ subscription: "filtered.other", data: 6 }, "filtered.x");
  assert.equal(fanout.published.length, 0, "none of these is the same for every subscriber");
  assert.deepEqual(data(a.take()), [["message", 1, undefined], ["message", 3, undefined], ["message", 4, undefined]]);
  assert.deepEqual(data(b.take()), [["message", 1, undefined], ["message", 4, undefined]]);

  // A filter field the service does not list does not matter: fanned out.
  await h.publish({ subscription: "filtered.x", data: 7, other: "z" });
  assert.equal(fanout.published.length, 1);
  assert.deepEqual(data(a.take()), [["message", 7, undefined]]);
  assert.deepEqual(data(b.take()), [["message", 7, undefined]]);
});

test("fanout: a pending subscription buffers; after the OK come the buffered messages, then fanned-out ones", async () => {
  const h = await new Harness(config, { fanout: true }).start();
  const early = h.connect();
  h.services.on(BEFORE, { status: "ok" });
  await early.call({ event: "subscribe", subscription: "slow.x" });
  const open = gate();
  h.services.on(BEFORE, { after: open, reply: { status: "ok" } });
  const late = h.connect();
  await late.send({ event: "subscribe", subscription: "slow.x" });
  await h.publish({ subscription: "slow.x", data: "during setup" });
  assert.deepEqual(data(early.take()), [["message", "during setup", undefined]]);
  assert.deepEqual(late.take(), [], "nothing before the OK");
  assert.equal(h.router.hub.fanoutMembers, 1, "only the active subscription joined its topic");
  open.open();
  await h.settled();
  await h.publish({ subscription: "slow.x", data: "after" });
  assert.deepEqual(late.take().map((f) => f.event === "message" ? f.data : f.event), ["subscribe", "during setup", "after"]);
  assert.equal(h.router.hub.fanoutMembers, 2);
  // "during setup" went out fanned to the early subscriber; "after" fanned to both.
  assert.equal(h.fanout!.published.length, 2);
});

test("fanout: unsubscribe and disconnect leave the topic; nothing follows the unsubscribe OK; no member leaks", async () => {
  const h = await new Harness(config, { fanout: true }).start();
  const fanout = h.fanout!;
  const a = h.connect();
  await a.call({ event: "subscribe", subscription: "open.x" });
  assert.deepEqual(data(await a.call({ event: "unsubscribe", subscription: "open.x" })), [["unsubscribe", undefined, undefined]]);
  await h.publish({ subscription: "open.x", data: "late" });
  assert.deepEqual(a.take(), []);
  assert.equal(fanout.topics.size, 0);
  await a.session.disconnected();

  for (let i = 0; i < 300; i++) {
    const c = h.connect();
    await c.send({ event: "subscribe", subscription: `open.t${i % 7}`, v: i % 3 });
    await c.session.disconnected();
  }
  assert.equal(h.router.hub.fanoutMembers, 0);
  assert.equal(fanout.topics.size, 0);
  assert.equal(h.router.hub.channelCount, 0);
  assert.equal(h.router.sessionCount, 0);
});
