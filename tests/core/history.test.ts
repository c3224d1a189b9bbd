// History and recovery (extension E1) through the whole core: the memory broker's histories, the subscribe OK,
// recovery, the cases that cannot recover, and the recover field's validation.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gate } from "../support/fake_clock.ts";
import { type Client, Harness } from "../support/harness.ts";

const BEFORE = "http://svc.test/before_subscribe";
const ON_UNSUB = "http://svc.test/on_unsubscribe";

const config = {
  services: {
    h: { requireAuthentication: false, history: { size: 5, ttl: 60 }, extraFields: ["room"], filterFields: ["room"] },
    slow: { requireAuthentication: false, history: { size: 100, ttl: 60 }, beforeSubscribe: BEFORE, onUnsubscribe: ON_UNSUB },
    plain: { requireAuthentication: false },
  },
};

async function append(h: Harness, subscription: string, data: unknown, fields: Record<string, unknown> = {}) {
  const appended = await h.broker.append(subscription, JSON.stringify({ subscription, data, ...fields }), { size: 5, ttl: 60 });
  await h.settled();
  return appended;
}

const messages = (client: Client) => client.take().filter((f) => f.event === "message").map((f) => [f.data, f.offset]);

test("history: the OK carries the position (0 and an epoch when empty); messages carry offset and epoch", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  const [ok] = await c.call({ event: "subscribe", subscription: "h.a" });
  assert.equal(ok.status, "ok");
  assert.equal(ok.offset, 0);
  assert.equal(typeof ok.epoch, "string");
  assert.equal("recovered" in ok, false, "no recover asked: no recovered key");
  await append(h, "h.a", "one");
  const [frame] = c.take();
  assert.deepEqual([frame.data, frame.offset, frame.epoch], ["one", 1, ok.epoch]);
  const again = h.connect();
  const [second] = await again.call({ event: "subscribe", subscription: "h.a" });
  assert.deepEqual([second.offset, second.epoch], [1, ok.epoch]);
});

test("history: a client that comes back with recover gets every missed message once, in order, then live ones", async () => {
  const h = await new Harness(config).start();
  const first = h.connect();
  const [ok] = await first.call({ event: "subscribe", subscription: "h.a" });
  await append(h, "h.a", 1);
  await append(h, "h.a", 2);
  assert.deepEqual(messages(first), [[1, 1], [2, 2]]);
  await first.session.disconnected();
  for (const data of [3, 4, 5]) await append(h, "h.a", data);

  const back = h.connect();
  const frames = await back.call({ event: "subscribe", subscription: "h.a", recover: { offset: 2, epoch: ok.epoch } });
  assert.deepEqual(frames[0], { event: "subscribe", status: "ok", subscription: "h.a", offset: 5, epoch: ok.epoch, recovered: true });
  assert.deepEqual(frames.slice(1).map((f) => [f.data, f.offset]), [[3, 3], [4, 4], [5, 5]]);
  await append(h, "h.a", 6);
  assert.deepEqual(messages(back), [[6, 6]]);
});

test("history: nothing missed recovers with an empty replay; extra fields and filter fields apply", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  const [ok] = await c.call({ event: "subscribe", subscription: "h.a", room: "r1" });
  await append(h, "h.a", "for r1", { room: "r1" });
  await append(h, "h.a", "for r2", { room: "r2" });
  await c.session.disconnected();
  const back = h.connect();
  const same = await back.call({ event: "subscribe", subscription: "h.a", room: "r1", recover: { offset: 2, epoch: ok.epoch } });
  assert.deepEqual(same, [{ event: "subscribe", status: "ok", room: "r1", subscription: "h.a", offset: 2, epoch: ok.epoch, recovered: true }]);
  const other = h.connect();
  const frames = await other.call({ event: "subscribe", subscription: "h.a", room: "r1", recover: { offset: 0, epoch: ok.epoch } });
  assert.deepEqual(frames.slice(1).map((f) => [f.data, f.offset, f.room]), [["for r1", 1, "r1"]], "r2's message is filtered");
});

test("history: not recoverable (another epoch, trimmed past size, too far behind, expired, ahead) → recovered false, no replay", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  const [ok] = await c.call({ event: "subscribe", subscription: "h.a" });
  for (let i = 1; i <= 8; i++) await append(h, "h.a", i); // size 5: offsets 4..8 stored
  c.take();
  const cases = [
    { offset: 8, epoch: "another" }, // the history restarted since
    { offset: 2, epoch: ok.epoch }, // 3 was trimmed
    { offset: 9, epoch: ok.epoch }, // ahead of the newest: not a position this history gave
  ];
  for (const recover of cases) {
    const client = h.connect();
    const frames = await client.call({ event: "subscribe", subscription: "h.a", recover });
    assert.deepEqual(frames, [{ event: "subscribe", status: "ok", subscription: "h.a", offset: 8, epoch: ok.epoch, recovered: false }], JSON.stringify(recover));
  }
  const edge = h.connect();
  const ok3 = await edge.call({ event: "subscribe", subscription: "h.a", recover: { offset: 3, epoch: ok.epoch } });
  assert.equal(ok3[0].recovered, true, "exactly size behind: everything after 3 is stored");
  assert.deepEqual(ok3.slice(1).map((f) => f.offset), [4, 5, 6, 7, 8]);

  await h.clock.advance(61_000); // ttl: the history expires
  const late = h.connect();
  const [expired] = await late.call({ event: "subscribe", subscription: "h.a", recover: { offset: 8, epoch: ok.epoch } });
  assert.equal(expired.recovered, false);
  assert.equal(expired.offset, 0);
  assert.notEqual(expired.epoch, ok.epoch, "a history that expired starts again under a new epoch");
});

test("history: a malformed recover is refused; on a service without history recover is ignored", async () => {
  const h = await new Harness(config).start();
  for (const recover of [null, 1, "x", [], {}, { offset: -1, epoch: "e" }, { offset: 1.5, epoch: "e" }, { offset: 1 }, { epoch: "e" }, { offset: "1", epoch: "e" }, { offset: 1, epoch: 2 }, { offset: 2 ** 53, epoch: "e" }]) {
    const c = h.connect();
    const frames = await c.call({ event: "subscribe", subscription: "h.a", recover });
    assert.deepEqual(frames, [{ event: "subscribe", status: "error", error: "Invalid recovery position.", subscription: "h.a" }], JSON.stringify(recover));
    assert.equal(c.session.subscriptions.size, 0);
  }
  const plain = h.connect();
  const frames = await plain.call({ event: "subscribe", subscription: "plain.a", recover: "garbage" });
  assert.deepEqual(frames, [{ event: "subscribe", status: "ok", subscription: "plain.a" }], "exactly SocketShark's OK");
  await h.broker.publish("plain.a", JSON.stringify({ subscription: "plain.a", data: 1 }));
  await h.settled();
  const [message] = plain.take();
  assert.equal("offset" in message || "epoch" in message, false);
});

test("history: messages appended while before_subscribe runs come once, after the OK, and never before it", async () => {
  const h = await new Harness(config).start();
  const setup = gate();
  h.services.on(BEFORE, { after: setup, reply: { status: "ok" } });
  const c = h.connect();
  c.session.receive(JSON.stringify({ event: "subscribe", subscription: "slow.a" }));
  await h.settled();
  for (let i = 1; i <= 3; i++) await h.broker.append("slow.a", JSON.stringify({ subscription: "slow.a", data: i }), { size: 100, ttl: 60 });
  await h.settled();
  assert.deepEqual(c.take(), []);
  setup.open();
  await h.settled();
  const frames = c.take();
  // The read after before_subscribe sees all three: the OK says 3, and the buffered live copies are duplicates.
  assert.deepEqual(frames.map((f) => [f.event, f.offset]), [["subscribe", 3]]);
  await h.broker.append("slow.a", JSON.stringify({ subscription: "slow.a", data: 4 }), { size: 100, ttl: 60 });
  await h.settled();
  assert.deepEqual(messages(c), [[4, 4]]);
});

test("history: a hole in the live stream ends the subscription with Insufficient state. and its callbacks", async () => {
  const h = await new Harness(config).start();
  h.services.on(BEFORE, { status: "ok" }).on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  const [ok] = await c.call({ event: "subscribe", subscription: "slow.a" });
  const envelope = (offset: number) => JSON.stringify({ offset, epoch: ok.epoch, message: { subscription: "slow.a", data: offset } });
  await h.publish(envelope(1), "slow.a");
  await h.publish(envelope(1), "slow.a"); // a duplicate: dropped
  await h.publish(envelope(3), "slow.a"); // 2 was lost (a broker outage)
  await h.publish(envelope(4), "slow.a");
  const frames = c.take();
  assert.deepEqual(frames.map((f) => [f.event, f.offset ?? f.error]), [["message", 1], ["unsubscribe", "Insufficient state."]]);
  assert.deepEqual(frames[1], { event: "unsubscribe", subscription: "slow.a", error: "Insufficient state." });
  assert.deepEqual(h.services.bodies(ON_UNSUB), [{ subscription: "slow.a" }]);
  assert.equal(c.session.subscriptions.size, 0);
  assert.equal(h.router.hub.channelCount, 0);
  // The client comes back with recover from its last offset: the memory history never had 2 (it was published
  // by hand), so it cannot recover past it.
  const [again] = await c.call({ event: "subscribe", subscription: "slow.a", recover: { offset: 1, epoch: ok.epoch } });
  assert.equal(again.recovered, false);
});

test("history (fan-out): a message that needs per-session checks after fanned-out ones does not end anyone", async () => {
  const h = await new Harness(config, { fanout: true }).start();
  const c = h.connect();
  const [ok] = await c.call({ event: "subscribe", subscription: "h.a", room: "r1" });
  await append(h, "h.a", 1); // the first live message: the subscription catches up and joins the native topic
  await append(h, "h.a", 2); // fanned out natively
  await append(h, "h.a", 3, { room: "r1" }); // a filter field: delivered per session, past the topic
  await append(h, "h.a", 4, { options: { order: 4 } }); // an order: per session too
  assert.deepEqual(c.take().map((f) => [f.event, f.data ?? f.error, f.offset]), [
    ["message", 1, 1],
    ["message", 2, 2],
    ["message", 3, 3],
    ["message", 4, 4],
  ]);
  assert.equal(h.fanout!.published.length, 1, "message 2 went through the native topic");
  assert.equal(ok.offset, 0);
});

test("history: an offset whose message is unusable or names another subscription is skipped, not a hole", async () => {
  const h = await new Harness(config).start();
  h.services.on(BEFORE, { status: "ok" }).on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  const [ok] = await c.call({ event: "subscribe", subscription: "slow.a" });
  const envelope = (offset: number, message: unknown) => JSON.stringify({ offset, epoch: ok.epoch, message });
  await h.publish(envelope(1, { subscription: "slow.a", data: 1 }), "slow.a");
  await h.publish(envelope(2, { subscription: "slow.other", data: "elsewhere" }), "slow.a");
  await h.publish(envelope(3, { no: "subscription" }), "slow.a");
  await h.publish(`{"offset":4,"epoch":${JSON.stringify(ok.epoch)},"message":${"[".repeat(200)}${"]".repeat(200)}}`, "slow.a");
  await h.publish(envelope(5, { subscription: "slow.a", data: 5 }), "slow.a");
  assert.deepEqual(c.take().map((f) => [f.event, f.data ?? f.error, f.offset]), [["message", 1, 1], ["message", 5, 5]]);
  assert.deepEqual(h.services.bodies(ON_UNSUB), []);
});

test("history: an envelope on a service without history is a plain message: no offset or epoch keys", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "plain.a" });
  await h.publish(JSON.stringify({ offset: 7, epoch: "x", message: { subscription: "plain.a", data: 1 } }), "plain.a");
  assert.deepEqual(c.take(), [], "not a message SocketShark would deliver: it has no subscription key");
  await h.publish({ subscription: "plain.a", data: 2, offset: 9 });
  const [frame] = c.take();
  assert.equal("epoch" in frame || "offset" in frame, false);
});
