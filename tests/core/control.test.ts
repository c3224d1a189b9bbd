// The admin API's control module (extension E4): fake nodes on a fake broker and a fake clock, then the real router
// and sessions on the memory broker for what a command does to a session.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { BrokerMessage } from "../../src/broker/broker.ts";
import {
  CONTROL_CHANNEL,
  Control,
  type ControlBus,
  type ControlNode,
  type ControlSession,
  type ControlSubscription,
} from "../../src/core/control.ts";
import { controlPayload, parseControlMessage } from "../../src/core/control_message.ts";
import type { Close } from "../../src/protocol/close_codes.ts";
import { FakeClock, gate } from "../support/fake_clock.ts";
import { Harness } from "../support/harness.ts";

/** A broker as the control module sees it: every bus on one network, like nodes on one Redis. */
class FakeNetwork {
  readonly buses = new Set<FakeBus>();
  /** Every payload published on the control channel, in order. */
  readonly published: string[] = [];

  bus(): FakeBus {
    const bus = new FakeBus(this);
    this.buses.add(bus);
    return bus;
  }
}

class FakeBus implements ControlBus {
  ready = true;
  /** Publishing fails (the broker refused). */
  failing = false;
  /** The node is dead: nothing it publishes goes out, nothing reaches it. */
  dead = false;
  readonly channels = new Set<string>();
  receiver: Control | undefined;

  constructor(readonly network: FakeNetwork) {}

  subscribe(channel: string): Promise<void> {
    this.channels.add(channel);
    return Promise.resolve();
  }

  async publish(channel: string, payload: string): Promise<void> {
    if (this.failing) throw new Error("publish refused");
    if (this.dead) return;
    this.network.published.push(payload);
    // Delivered later, as a network broker would: publishing never re-enters the receiver.
    await Promise.resolve();
    for (const bus of this.network.buses) {
      if (bus.dead || !bus.channels.has(channel)) continue;
      const message: BrokerMessage = { channel, payload, receivedAt: 0, queueSize: 0 };
      bus.receiver?.receive(message);
    }
  }
}

class FakeSubscription implements ControlSubscription {
  constructor(readonly name: string, readonly active = true) {}
}

class FakeSession implements ControlSession {
  readonly subscriptions = new Map<string, FakeSubscription>();
  readonly revoked: { name: string; error: unknown }[] = [];
  closed: Close | undefined;

  constructor(
    readonly id: string,
    readonly authInfo: Readonly<Record<string, unknown>> = {},
    subscriptions: readonly string[] = [],
  ) {
    for (const name of subscriptions) this.subscriptions.set(name, new FakeSubscription(name));
  }

  revoke(subscription: ControlSubscription, error: unknown): void {
    this.revoked.push({ name: (subscription as FakeSubscription).name, error });
  }

  closeAfterCallbacks(close: Close): Promise<void> {
    this.closed ??= close;
    return Promise.resolve();
  }
}

class FakeNode implements ControlNode {
  readonly list: FakeSession[] = [];
  sessions(): Iterable<ControlSession> {
    return this.list;
  }
  add(...sessions: FakeSession[]): this {
    this.list.push(...sessions);
    return this;
  }
}

const INTERVAL = 5;

function node(network: FakeNetwork, clock: FakeClock, id: string, sessions: FakeSession[] = []) {
  const bus = network.bus();
  const local = new FakeNode().add(...sessions);
  const control = new Control({ bus, node: local, id, runtime: "bun 1.4.5", version: "0.1.0", interval: INTERVAL, clock });
  bus.receiver = control;
  return { bus, local, control };
}

test("control: a lone node's info and channels are its own figures as of now; pending subscriptions do not count", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const a = node(network, clock, "a", [new FakeSession("a-1", {}, ["chat.x", "chat.y"]), new FakeSession("a-2", {}, ["chat.x"])]);
  a.local.list[1].subscriptions.set("chat.z", new FakeSubscription("chat.z", false));
  await a.control.start();
  await clock.advance(12_000);
  assert.deepEqual(a.control.info(), [
    { id: "a", runtime: "bun 1.4.5", version: "0.1.0", uptime: 12, connections: 2, subscriptions: 3, channels: 2 },
  ]);
  assert.deepEqual(a.control.channels(), [
    { subscription: "chat.x", subscribers: 2 },
    { subscription: "chat.y", subscribers: 1 },
  ]);
  a.local.add(new FakeSession("a-3", {}, ["news.1"]));
  assert.deepEqual(a.control.channels("news."), [{ subscription: "news.1", subscribers: 1 }], "live, not as of the last report");
  assert.deepEqual(a.control.channels("nothing"), []);
  await a.control.close();
});

test("control: nodes learn of each other at once and add up; a report's uptime keeps counting", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const a = node(network, clock, "a", [new FakeSession("a-1", {}, ["chat.x"])]);
  await a.control.start();
  await clock.advance(2000);
  const b = node(network, clock, "b", [new FakeSession("b-1", {}, ["chat.x", "news.1"]), new FakeSession("b-2")]);
  await b.control.start();
  // b's first report makes a report back at once, not an interval later.
  await clock.advance(0);
  assert.deepEqual(a.control.info().map((n) => n.id), ["a", "b"]);
  assert.deepEqual(b.control.info().map((n) => n.id), ["a", "b"]);
  assert.deepEqual(b.control.info()[0], {
    id: "a", runtime: "bun 1.4.5", version: "0.1.0", uptime: 2, connections: 1, subscriptions: 1, channels: 1,
  });
  assert.deepEqual(a.control.info()[1], {
    id: "b", runtime: "bun 1.4.5", version: "0.1.0", uptime: 0, connections: 2, subscriptions: 2, channels: 2,
  });
  for (const control of [a.control, b.control]) {
    assert.deepEqual(control.channels(), [
      { subscription: "chat.x", subscribers: 2 },
      { subscription: "news.1", subscribers: 1 },
    ]);
    assert.deepEqual(control.channels("chat"), [{ subscription: "chat.x", subscribers: 2 }]);
  }
  // Between reports another node's uptime is its last report's plus the time since.
  await clock.advance(3000);
  assert.equal(a.control.info()[1].uptime, 3);
  // Figures change in the next report.
  b.local.list[1].subscriptions.set("chat.x", new FakeSubscription("chat.x"));
  await clock.advance(INTERVAL * 1000);
  assert.deepEqual(a.control.channels("chat"), [{ subscription: "chat.x", subscribers: 3 }]);
  await a.control.close();
  await b.control.close();
});

test("control: a node that stops reporting drops out after three of its intervals, not before", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const a = node(network, clock, "a");
  const b = node(network, clock, "b", [new FakeSession("b-1", {}, ["chat.x"])]);
  await a.control.start();
  await b.control.start();
  await clock.advance(0);
  await clock.advance(INTERVAL * 1000); // b's last report goes out now
  b.bus.dead = true;
  await clock.advance(3 * INTERVAL * 1000 - 1);
  assert.deepEqual(a.control.info().map((n) => n.id), ["a", "b"]);
  assert.deepEqual(a.control.channels(), [{ subscription: "chat.x", subscribers: 1 }]);
  await clock.advance(1);
  assert.deepEqual(a.control.info().map((n) => n.id), ["a"]);
  assert.deepEqual(a.control.channels(), []);
  await a.control.close();
  await b.control.close();
});

test("control: a node that closes says goodbye and is forgotten at once; it leaves no timer", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const a = node(network, clock, "a");
  const b = node(network, clock, "b");
  await a.control.start();
  await b.control.start();
  await clock.advance(0);
  assert.equal(a.control.info().length, 2);
  await b.control.close();
  await clock.advance(0);
  assert.deepEqual(a.control.info().map((n) => n.id), ["a"]);
  await a.control.close();
  assert.equal(clock.pending, 0, "no report timer left");
  const before = network.published.length;
  await clock.advance(10 * INTERVAL * 1000);
  assert.equal(network.published.length, before, "nothing published after close");
});

test("control: no report is published while the broker is down; the others forget the node meanwhile", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const a = node(network, clock, "a");
  const b = node(network, clock, "b");
  await a.control.start();
  await b.control.start();
  await clock.advance(0);
  b.bus.ready = false;
  const before = network.published.length;
  await clock.advance(3 * INTERVAL * 1000);
  assert.equal(network.published.filter((p, i) => i >= before && p.includes('"node":"b"')).length, 0);
  assert.deepEqual(a.control.info().map((n) => n.id), ["a"]);
  b.bus.ready = true;
  await clock.advance(INTERVAL * 1000);
  assert.deepEqual(a.control.info().map((n) => n.id), ["a", "b"], "back with its next report");
  await a.control.close();
  await b.control.close();
});

test("control: disconnect by auth fields closes every matching session on every node with 4000, Python-equal values", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const alice = new FakeSession("a-1", { user_id: 1, team: "red" });
  const aliceAgain = new FakeSession("b-1", { user_id: 1.0, team: "red" });
  const aliceTrue = new FakeSession("b-2", { user_id: true, team: "red" });
  const bob = new FakeSession("b-3", { user_id: 2, team: "red" });
  const anonymous = new FakeSession("a-2");
  const otherTeam = new FakeSession("a-3", { user_id: 1, team: "blue" });
  const a = node(network, clock, "a", [alice, anonymous, otherTeam]);
  const b = node(network, clock, "b", [aliceAgain, aliceTrue, bob]);
  await a.control.start();
  await b.control.start();
  assert.equal(await a.control.disconnect({ auth: { user_id: 1, team: "red" } }), 1, "one session matched on this node");
  await clock.advance(0);
  const closed = (s: FakeSession) => s.closed?.code;
  assert.deepEqual([alice, aliceAgain, aliceTrue].map(closed), [4000, 4000, 4000], "1 == 1.0 == true, as in Python");
  assert.deepEqual(alice.closed, { code: 4000, reason: "disconnected" });
  assert.deepEqual([bob, anonymous, otherTeam].map(closed), [undefined, undefined, undefined]);
  // A subset of the fields is enough; no field at all names nobody (not even the anonymous).
  await b.control.disconnect({ auth: { team: "blue" } });
  await clock.advance(0);
  assert.equal(closed(otherTeam), 4000);
  await a.control.disconnect({ auth: {} });
  await clock.advance(0);
  assert.equal(closed(anonymous), undefined);
  assert.equal(closed(bob), undefined);
  await a.control.close();
  await b.control.close();
});

test("control: disconnect by session id reaches the node holding it; a node acts once on its own command", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const target = new FakeSession("b-7");
  const closes: string[] = [];
  target.closeAfterCallbacks = (close) => {
    closes.push(`${close.code}`);
    return Promise.resolve();
  };
  const a = node(network, clock, "a", [new FakeSession("a-7")]);
  const b = node(network, clock, "b", [target]);
  await a.control.start();
  await b.control.start();
  assert.equal(await a.control.disconnect({ session: "b-7" }), 0);
  await clock.advance(0);
  assert.deepEqual(closes, ["4000"]);
  assert.equal(await b.control.disconnect({ session: "b-7" }), 1);
  await clock.advance(0);
  assert.deepEqual(closes, ["4000", "4000"], "once more, by b itself: its own message coming back is ignored");
  assert.equal(a.local.list[0].closed, undefined);
  await a.control.close();
  await b.control.close();
});

test("control: unsubscribe revokes that subscription with Unsubscribed. on every node, only where held", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const one = new FakeSession("a-1", { user_id: 1 }, ["chat.x", "chat.y"]);
  const two = new FakeSession("b-1", { user_id: 1 }, ["chat.y"]);
  const three = new FakeSession("b-2", { user_id: 2 }, ["chat.x"]);
  const a = node(network, clock, "a", [one]);
  const b = node(network, clock, "b", [two, three]);
  await a.control.start();
  await b.control.start();
  assert.equal(await a.control.unsubscribe({ auth: { user_id: 1 } }, "chat.x"), 1);
  await clock.advance(0);
  assert.deepEqual(one.revoked, [{ name: "chat.x", error: "Unsubscribed." }]);
  assert.deepEqual(two.revoked, [], "does not hold chat.x");
  assert.deepEqual(three.revoked, [], "another user");
  await b.control.unsubscribe({ session: "a-1" }, "chat.y");
  await clock.advance(0);
  assert.deepEqual(one.revoked.map((r) => r.name), ["chat.x", "chat.y"]);
  assert.equal(one.closed, undefined);
  await a.control.close();
  await b.control.close();
});

test("control: a command the broker refuses rejects, and no node acts on it", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const local = new FakeSession("a-1", { user_id: 1 }, ["chat.x"]);
  const remote = new FakeSession("b-1", { user_id: 1 }, ["chat.x"]);
  const a = node(network, clock, "a", [local]);
  const b = node(network, clock, "b", [remote]);
  await a.control.start();
  await b.control.start();
  a.bus.failing = true;
  await assert.rejects(a.control.disconnect({ auth: { user_id: 1 } }), /publish refused/);
  await assert.rejects(a.control.unsubscribe({ auth: { user_id: 1 } }, "chat.x"), /publish refused/);
  await clock.advance(0);
  assert.equal(local.closed, undefined);
  assert.equal(remote.closed, undefined);
  assert.deepEqual([...local.revoked, ...remote.revoked], []);
  a.bus.failing = false;
  await a.control.close();
  await b.control.close();
});

test("control: messages that are not Shoal's, or from another version, are ignored without a throw", async () => {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const session = new FakeSession("a-1", { user_id: 1 }, ["chat.x"]);
  const a = node(network, clock, "a", [session]);
  await a.control.start();
  const receive = (payload: string) => a.control.receive({ channel: CONTROL_CHANNEL, payload, receivedAt: 0, queueSize: 0 });
  for (
    const payload of [
      "not json",
      "[".repeat(200) + "]".repeat(200),
      "null",
      JSON.stringify({ type: "reboot", node: "x" }),
      // What POST /publish could carry: a subscription and a data key make it no control message.
      JSON.stringify({ subscription: CONTROL_CHANNEL, data: 1, type: "disconnect", node: "x", session: "a-1" }),
      JSON.stringify({ type: "disconnect", node: "x" }),
      JSON.stringify({ type: "disconnect", node: "x", session: "a-1", auth: { user_id: 1 } }),
      JSON.stringify({ type: "report", node: "x", runtime: "r", version: "v", uptime: -1, interval: 5, connections: 0, subscriptions: 0, channels: [] }),
      JSON.stringify({ type: "report", node: "x", runtime: "r", version: "v", uptime: 1, interval: 1e9, connections: 0, subscriptions: 0, channels: [] }),
    ]
  ) receive(payload);
  assert.equal(session.closed, undefined);
  assert.deepEqual(a.control.info().map((n) => n.id), ["a"]);
  await a.control.close();
});

test("control message: what is written is read back; a target is exactly one of auth and session", () => {
  for (
    const message of [
      { type: "leave", node: "n" },
      { type: "disconnect", node: "n", target: { auth: { user_id: 1, tags: ["a"] } } },
      { type: "disconnect", node: "n", target: { session: "n-1" } },
      { type: "unsubscribe", node: "n", target: { session: "n-1" }, subscription: "chat.x" },
      {
        type: "report", node: "n", runtime: "deno 2.9.5", version: "0.1.0", uptime: 3, interval: 0.5, connections: 2,
        subscriptions: 1, channels: [["chat.x", 1]],
      },
    ] as const
  ) {
    assert.deepEqual(parseControlMessage(controlPayload(message)), { ok: true, message });
  }
  assert.equal(parseControlMessage(JSON.stringify({ type: "unsubscribe", node: "n", subscription: "s" })).ok, false);
});

// The real router and sessions on the memory broker: what a command does to a connection.

const BEFORE_UNSUB = "http://svc.test/before_unsubscribe";
const ON_UNSUB = "http://svc.test/on_unsubscribe";
const TICKET = "http://auth.test/ticket";

async function world() {
  const h = await new Harness({
    authentication: { ticket: { validationUrl: TICKET, authFields: ["user_id"] } },
    services: {
      chat: { requireAuthentication: false, beforeUnsubscribe: BEFORE_UNSUB, onUnsubscribe: ON_UNSUB },
      open: { requireAuthentication: false },
    },
  }).start();
  const control = new Control({
    bus: h.broker,
    node: h.router,
    id: h.router.nodeId,
    runtime: "test",
    version: "0",
    interval: INTERVAL,
    clock: h.clock,
  });
  h.router.useControl(control);
  await control.start();
  return { h, control };
}

test("control + session: disconnect runs the unsubscribe callbacks first, then closes with 4000 \"disconnected\"", async () => {
  const { h, control } = await world();
  const held = gate();
  h.services.on(TICKET, { status: "ok", user_id: 7 }).on(BEFORE_UNSUB, { status: "ok" }).on(ON_UNSUB, { after: held, reply: { status: "ok" } });
  const c = h.connect();
  await c.call({ event: "auth", ticket: "t" });
  await c.call({ event: "subscribe", subscription: "chat.a" });
  await c.call({ event: "subscribe", subscription: "chat.b" });
  const other = h.connect();
  await other.call({ event: "subscribe", subscription: "open.a" });
  assert.ok(c.session.id.startsWith(`${h.router.nodeId}-`), "a session's id starts with its node's");

  assert.equal(await control.disconnect({ auth: { user_id: 7 } }), 1);
  await h.settled();
  const names = (url: string) => h.services.bodies(url).map((b) => (b as { subscription: string }).subscription);
  assert.deepEqual(names(BEFORE_UNSUB), ["chat.b"], "newest first, as any disconnect");
  assert.equal(c.transport.closed, undefined, "still open while on_unsubscribe is held");
  c.session.receive(JSON.stringify({ event: "ping" }));
  await h.publish({ subscription: "chat.a", data: "late" });
  held.open();
  await h.settled();
  assert.deepEqual(c.transport.closed, { code: 4000, reason: "disconnected" });
  assert.deepEqual(names(BEFORE_UNSUB), ["chat.b", "chat.a"]);
  assert.deepEqual(names(ON_UNSUB), ["chat.b", "chat.a"]);
  assert.deepEqual(c.take(), [], "nothing more reaches the client once the disconnect began");
  assert.equal(h.router.sessionCount, 1);
  assert.equal(other.transport.closed, undefined);
  await control.close();
});

test("control + session: disconnect by session id; a session already going is not closed twice", async () => {
  const { h, control } = await world();
  const c = h.connect();
  const d = h.connect();
  await control.disconnect({ session: c.session.id });
  await h.settled();
  assert.deepEqual(c.transport.closed, { code: 4000, reason: "disconnected" });
  assert.equal(d.transport.closed, undefined);
  await d.session.disconnected();
  await control.disconnect({ session: d.session.id });
  await h.settled();
  assert.equal(d.transport.closed, undefined, "gone before the command: not closed again");
  await control.close();
});

test("control + session: unsubscribe revokes with Unsubscribed. after the callbacks; other subscriptions stay", async () => {
  const { h, control } = await world();
  h.services.on(TICKET, { status: "ok", user_id: 7 }).on(BEFORE_UNSUB, { status: "ok", data: { bye: 1 } }).on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  await c.call({ event: "auth", ticket: "t" });
  await c.call({ event: "subscribe", subscription: "chat.a" });
  await c.call({ event: "subscribe", subscription: "open.a" });
  await control.unsubscribe({ auth: { user_id: 7 } }, "chat.a");
  await h.settled();
  assert.deepEqual(c.take(), [{ event: "unsubscribe", subscription: "chat.a", data: { bye: 1 }, error: "Unsubscribed." }]);
  assert.equal(h.services.bodies(ON_UNSUB).length, 1);
  await h.publish({ subscription: "chat.a", data: 1 });
  await h.publish({ subscription: "open.a", data: 2 });
  assert.deepEqual(c.take().map((f) => f.data), [2]);
  assert.equal(c.transport.closed, undefined);
  // The client may subscribe again.
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "chat.a" }), [{ event: "subscribe", subscription: "chat.a", status: "ok" }]);
  await control.close();
});

test("control + router: the control channel's messages never reach the hub, and no client can subscribe to it", async () => {
  const { h, control } = await world();
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "subscribe", subscription: CONTROL_CHANNEL }), [
    { event: "subscribe", subscription: CONTROL_CHANNEL, status: "error", error: "Invalid subscription format." },
  ]);
  await h.publish({ subscription: CONTROL_CHANNEL, data: 1 }, CONTROL_CHANNEL);
  assert.deepEqual(c.take(), []);
  assert.deepEqual(control.info().map((n) => n.id), [h.router.nodeId], "the memory broker is one node: its own report comes back and is ignored");
  await h.router.shutdown();
  assert.equal(h.clock.pending, 0, "shutdown closed the control module: no timer left");
});
