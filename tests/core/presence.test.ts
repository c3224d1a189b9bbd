// Presence (extension E3) through the whole core: the presence event and its order of checks, join and leave
// notices, refreshes and expiry on the fake clock, and the router's presence() for the admin API.
import assert from "node:assert/strict";
import { test } from "node:test";
import { presenceControl } from "../../src/protocol/broker_message.ts";
import { gate } from "../support/fake_clock.ts";
import { type Client, Harness } from "../support/harness.ts";

const TICKET = "http://auth.test/ticket";
const BEFORE = "http://svc.test/before_subscribe";

const config = {
  authentication: { ticket: { validationUrl: TICKET, authFields: ["user_id", "name"] } },
  services: {
    room: { presence: true },
    chat: { presence: { joinLeave: true, refreshInterval: 10 } },
    slow: { presence: { joinLeave: true }, beforeSubscribe: BEFORE },
    anon: { requireAuthentication: false, presence: true },
    plain: { requireAuthentication: false },
  },
};

/** A harness whose ticket service answers these users, one per `auth`, in order. */
async function world(...users: { user_id: number; name: string }[]): Promise<Harness> {
  const h = await new Harness(config).start();
  h.services.on(TICKET, ...users.map((u) => ({ status: "ok", ...u })));
  return h;
}

async function login(h: Harness): Promise<Client> {
  const c = h.connect();
  const [ok] = await c.call({ event: "auth", ticket: "t" });
  assert.equal(ok.status, "ok");
  return c;
}

async function subscribed(h: Harness, subscription: string): Promise<Client> {
  const c = await login(h);
  const [ok] = await c.call({ event: "subscribe", subscription });
  assert.equal(ok.status, "ok", JSON.stringify(ok));
  return c;
}

const ALICE = { user_id: 1, name: "alice" };
const BOB = { user_id: 2, name: "bob" };

const byId = (users: unknown) => [...(users as { user_id: number }[])].sort((a, b) => a.user_id - b.user_id);

test("presence: a subscriber gets the count of sessions and each distinct user once", async () => {
  const h = await world(ALICE, ALICE, BOB);
  const a1 = await subscribed(h, "room.1");
  const [alone] = await a1.call({ event: "presence", subscription: "room.1" });
  assert.deepEqual(alone, { event: "presence", subscription: "room.1", status: "ok", data: { count: 1, users: [ALICE] } });
  await subscribed(h, "room.1"); // alice's second session
  await subscribed(h, "room.1");
  await subscribed(h, "room.2"); // another subscription: not counted
  const [reply] = await a1.call({ event: "presence", subscription: "room.1" });
  assert.equal((reply.data as { count: number }).count, 3);
  assert.deepEqual(byId((reply.data as { users: unknown }).users), [ALICE, BOB]);
});

test("presence: unsubscribes and disconnects leave the count at once", async () => {
  const h = await world(ALICE, BOB, { user_id: 3, name: "carol" });
  const a = await subscribed(h, "room.1");
  const b = await subscribed(h, "room.1");
  const c = await subscribed(h, "room.1");
  const count = async () => ((await a.call({ event: "presence", subscription: "room.1" }))[0].data as { count: number }).count;
  assert.equal(await count(), 3);
  await b.call({ event: "unsubscribe", subscription: "room.1" });
  assert.equal(await count(), 2);
  await c.session.disconnected();
  await h.settled();
  assert.equal(await count(), 1);
  await b.call({ event: "subscribe", subscription: "room.1" });
  const [reply] = await b.call({ event: "presence", subscription: "room.1" });
  assert.deepEqual(reply.data, { count: 2, users: byId([ALICE, BOB]) });
  assert.equal(h.router.presenceTracker.size, 2);
});

test("presence: order of checks — name, then service, then presence enabled, then subscribed", async () => {
  const h = await world(ALICE);
  const c = await subscribed(h, "plain.1");
  const ask = async (subscription: unknown) => (await c.call({ event: "presence", subscription }))[0];
  assert.deepEqual(await ask(5), { event: "presence", status: "error", error: "Invalid subscription format." });
  assert.deepEqual(await ask("room"), { event: "presence", status: "error", error: "Invalid subscription format.", subscription: "room" });
  assert.deepEqual(await ask("nope.1"), { event: "presence", status: "error", error: "Invalid service.", subscription: "nope.1" });
  // A service without presence says so whether or not the session holds the subscription.
  assert.deepEqual(await ask("plain.1"), { event: "presence", status: "error", error: "Presence not enabled.", subscription: "plain.1" });
  assert.deepEqual(await ask("plain.2"), { event: "presence", status: "error", error: "Presence not enabled.", subscription: "plain.2" });
  assert.deepEqual(await ask("room.1"), { event: "presence", status: "error", error: "Not subscribed.", subscription: "room.1" });
  assert.deepEqual(h.events.filter((e) => e.name === "presence").map((e) => e.success), [false, false, false, false, false, false]);
});

test("presence: a subscription still being set up is not subscribed yet, and is not counted", async () => {
  const h = await world(ALICE, BOB);
  const a = await subscribed(h, "room.1");
  const held = gate();
  h.services.on(BEFORE, { after: held, reply: { status: "ok" } });
  const b = await login(h);
  b.session.receive(JSON.stringify({ event: "subscribe", subscription: "slow.1" }));
  b.session.receive(JSON.stringify({ event: "presence", subscription: "slow.1" }));
  await h.settled();
  assert.deepEqual(b.take(), [], "the presence event waits behind the subscribe");
  const [count] = await a.call({ event: "presence", subscription: "room.1" });
  assert.equal((count.data as { count: number }).count, 1);
  held.open();
  await h.settled();
  const [ok, reply] = b.take();
  assert.equal(ok.status, "ok");
  assert.deepEqual(reply, { event: "presence", subscription: "slow.1", status: "ok", data: { count: 1, users: [BOB] } });
});

test("presence: a refused subscribe leaves no entry", async () => {
  const h = await world(ALICE, BOB);
  h.services.on(BEFORE, { status: "ok" });
  const a = await subscribed(h, "slow.1");
  h.services.on(BEFORE, { status: "error", error: "no" });
  const b = await login(h);
  const [refused] = await b.call({ event: "subscribe", subscription: "slow.1" });
  assert.equal(refused.error, "no");
  const frames = await a.call({ event: "presence", subscription: "slow.1" });
  assert.deepEqual(frames, [{ event: "presence", subscription: "slow.1", status: "ok", data: { count: 1, users: [ALICE] } }]);
});

test("presence: anonymous sessions count; their users entry is one empty object", async () => {
  const h = await new Harness(config).start();
  const a = h.connect();
  const b = h.connect();
  await a.call({ event: "subscribe", subscription: "anon.x" });
  await b.call({ event: "subscribe", subscription: "anon.x" });
  const [reply] = await a.call({ event: "presence", subscription: "anon.x" });
  assert.deepEqual(reply.data, { count: 2, users: [{}] });
});

test("join/leave: other subscribers are told, the session itself is not, on unsubscribe and on disconnect", async () => {
  const h = await world(ALICE, BOB);
  const a = await subscribed(h, "chat.1");
  const b = await login(h);
  const frames = await b.call({ event: "subscribe", subscription: "chat.1" });
  assert.deepEqual(frames.map((f) => f.event), ["subscribe"], "no join of its own");
  assert.deepEqual(a.take(), [{ event: "join", subscription: "chat.1", data: BOB }]);
  await b.call({ event: "unsubscribe", subscription: "chat.1" });
  assert.deepEqual(a.take(), [{ event: "leave", subscription: "chat.1", data: BOB }]);
  await b.call({ event: "subscribe", subscription: "chat.1" });
  assert.deepEqual(a.take(), [{ event: "join", subscription: "chat.1", data: BOB }]);
  await b.session.disconnected();
  await h.settled();
  assert.deepEqual(a.take(), [{ event: "leave", subscription: "chat.1", data: BOB }]);
  assert.deepEqual(b.take().filter((f) => f.event === "join" || f.event === "leave"), []);
});

test("join/leave: only with joinLeave; services with presence: true and without presence see no new frame", async () => {
  const h = await world(ALICE, BOB);
  const a = await subscribed(h, "room.1");
  const p = h.connect();
  await p.call({ event: "subscribe", subscription: "plain.1" });
  const b = await subscribed(h, "room.1");
  await b.session.disconnected();
  await h.settled();
  assert.deepEqual(a.take(), []);
  // A notice published by hand on a channel without presence is what it always was: an invalid message, dropped.
  await h.publish(presenceControl("join", "x-1", JSON.stringify(BOB)), "plain.1");
  await h.publish(presenceControl("join", "x-1", JSON.stringify(BOB)), "room.1");
  assert.deepEqual(p.take(), []);
  assert.deepEqual(a.take(), []);
  await h.publish({ subscription: "plain.1", data: 1 });
  assert.deepEqual(p.take().map((f) => f.data), [1]);
});

test("join/leave: a pending subscription is not told (its OK comes first); messages still flow around notices", async () => {
  const h = await world(ALICE, BOB, { user_id: 3, name: "carol" });
  h.services.on(BEFORE, { status: "ok" });
  const a = await subscribed(h, "slow.1");
  const held = gate();
  h.services.on(BEFORE, { after: held, reply: { status: "ok" } }, { status: "ok" });
  const b = await login(h);
  b.session.receive(JSON.stringify({ event: "subscribe", subscription: "slow.1" }));
  await h.settled();
  await subscribed(h, "slow.1"); // carol joins while bob waits
  assert.deepEqual(a.take(), [{ event: "join", subscription: "slow.1", data: { user_id: 3, name: "carol" } }]);
  await h.publish({ subscription: "slow.1", data: "hello" });
  held.open();
  await h.settled();
  assert.deepEqual(b.take().map((f) => f.event), ["subscribe", "message"], "no notice from before the OK");
  assert.deepEqual(a.take().map((f) => [f.event, f.data]), [["message", "hello"], ["join", BOB]]);
});

test("refresh: entries are rewritten every interval and never expire while their node runs", async () => {
  const h = await world(ALICE);
  const a = await subscribed(h, "chat.1");
  for (let i = 0; i < 10; i++) await h.clock.advance(10_000);
  const [reply] = await a.call({ event: "presence", subscription: "chat.1" });
  assert.deepEqual(reply.data, { count: 1, users: [ALICE] });
  assert.deepEqual(a.take(), []);
});

test("expiry: an entry its node stopped refreshing drops out after 3 intervals, and its leave is said once", async () => {
  const h = await world(ALICE);
  const a = await subscribed(h, "chat.1");
  // Another node's session, written once and never again (that node died).
  await h.broker.updatePresence("chat.1", { add: [{ session: "dead-1", user: JSON.stringify(BOB) }], remove: [], ttl: 30 });
  const count = async () => ((await a.call({ event: "presence", subscription: "chat.1" }))[0].data as { count: number }).count;
  assert.equal(await count(), 2);
  await h.clock.advance(29_000);
  assert.equal(await count(), 2);
  assert.deepEqual(a.take(), []);
  await h.clock.advance(1_000); // 30 s: alice's node rewrote her entry at 10, 20 and 30 s, and purged bob's
  assert.deepEqual(a.take(), [{ event: "leave", subscription: "chat.1", data: BOB }]);
  assert.equal(await count(), 1);
  await h.clock.advance(60_000);
  assert.deepEqual(a.take(), [], "said once");
});

test("router.presence(): the data of the event, undefined without presence; nothing kept for idle channels", async () => {
  const h = await world(ALICE, BOB);
  await subscribed(h, "room.1");
  const b = await subscribed(h, "room.1");
  assert.deepEqual(await h.router.presence("room.1"), { count: 2, users: [ALICE, BOB] });
  assert.deepEqual(await h.router.presence("room.2"), { count: 0, users: [] });
  assert.equal(await h.router.presence("plain.1"), undefined);
  assert.equal(await h.router.presence("nope.1"), undefined);
  assert.equal(await h.router.presence("room"), undefined);
  await b.session.disconnected();
  await h.settled();
  assert.deepEqual(await h.router.presence("room.1"), { count: 1, users: [ALICE] });
});

test("shutdown: every entry is removed (with its leave) before the broker closes; no timer is left", async () => {
  const h = await world(ALICE, BOB);
  await subscribed(h, "chat.1");
  await subscribed(h, "chat.2");
  assert.equal(h.router.presenceTracker.size, 2);
  const entries = () => h.broker.readPresence("chat.1");
  assert.equal((await entries()).count, 1);
  const done = h.router.shutdown();
  await h.clock.advance(0);
  await done;
  assert.equal(h.router.presenceTracker.size, 0);
  assert.equal(h.clock.pending, 0, "no refresh timer left");
});
