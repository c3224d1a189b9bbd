import assert from "node:assert/strict";
import { test } from "node:test";
import { gate, until } from "../support/fake_clock.ts";
import { Harness } from "../support/harness.ts";

const AUTHZ = "http://svc.test/authorize";
const ON_MSG = "http://svc.test/on_message";
const BEFORE_UNSUB = "http://svc.test/before_unsubscribe";
const ON_UNSUB = "http://svc.test/on_unsubscribe";
const CHANGE = "http://svc.test/on_authorization_change";
const BEAT = "http://svc.test/heartbeat";

const config = {
  services: {
    open: { requireAuthentication: false },
    slow: { requireAuthentication: false, onMessage: ON_MSG, beforeUnsubscribe: BEFORE_UNSUB, onUnsubscribe: ON_UNSUB },
  },
};

test("session: replies come in event order; ping is answered at once past a slow event (decision 12)", async () => {
  const h = await new Harness(config).start();
  const held = gate();
  h.services.on(ON_MSG, { after: held, reply: { status: "ok", data: "late" } });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.a" });
  c.session.receive(JSON.stringify({ event: "message", subscription: "slow.a" }));
  c.session.receive(JSON.stringify({ event: "nope" }));
  c.session.receive(JSON.stringify({ event: "ping", data: "now" }));
  await h.settled();
  assert.deepEqual(c.take(), [{ event: "pong", data: "now" }]);
  held.open();
  await h.settled();
  assert.deepEqual(c.take(), [
    { event: "message", status: "ok", data: "late", subscription: "slow.a" },
    { event: "nope", status: "error", error: "Event not found." },
  ]);
});

test("session: 1,000 events sent without waiting get 1,000 replies in order", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  for (let i = 0; i < 1000; i++) {
    c.session.receive(JSON.stringify(
      i % 2 === 0 ? { event: "subscribe", subscription: `open.${i}` } : { event: "unsubscribe", subscription: `open.${i - 1}` },
    ));
  }
  await until(() => c.transport.texts.length === 1000, "1000 replies");
  const frames = c.take();
  frames.forEach((f, i) => {
    assert.equal(f.event, i % 2 === 0 ? "subscribe" : "unsubscribe");
    assert.equal(f.subscription, `open.${i - (i % 2)}`);
    assert.equal(f.status, "ok");
  });
  assert.equal(h.router.hub.channelCount, 0);
});

test("session: more than maxPendingEvents waiting closes the connection with 1008", async () => {
  const h = await new Harness({ ...config, ws: { maxPendingEvents: 3 } }).start();
  const held = gate();
  h.services.on(ON_MSG, { after: held, reply: { status: "ok" } }).on(ON_UNSUB, { status: "ok" }).on(
    BEFORE_UNSUB,
    { status: "ok" },
  );
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.a" });
  for (let i = 0; i < 5; i++) c.session.receive(JSON.stringify({ event: "message", subscription: "slow.a" }));
  assert.deepEqual(c.transport.closed, { code: 1008, reason: "too many pending events" });
  held.open();
  await until(() => h.router.sessionCount === 0, "teardown");
  assert.equal(h.router.hub.channelCount, 0);
});

test("session: disconnect cancels the running event's callback, then unsubscribes newest first with both callbacks", async () => {
  const h = await new Harness({
    services: {
      a: { requireAuthentication: false, beforeUnsubscribe: BEFORE_UNSUB, onUnsubscribe: ON_UNSUB },
      b: { requireAuthentication: false, onMessage: ON_MSG, beforeUnsubscribe: BEFORE_UNSUB, onUnsubscribe: ON_UNSUB },
    },
  }).start();
  const held = gate();
  h.services.on(BEFORE_UNSUB, { status: "error" }).on(ON_UNSUB, { status: "ok" }).on(ON_MSG, {
    after: held,
    reply: { status: "ok" },
  });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "a.1" });
  await c.call({ event: "subscribe", subscription: "b.2" });
  c.session.receive(JSON.stringify({ event: "message", subscription: "b.2" }));
  await h.settled();
  assert.equal(h.services.bodies(ON_MSG).length, 1, "the message callback is in flight");
  const done = c.session.disconnected();
  c.session.receive(JSON.stringify({ event: "ping" })); // ignored once closing
  // The client is gone: its on_message call is cancelled rather than waited for, and teardown goes on.
  await done;
  assert.deepEqual(h.services.bodies(BEFORE_UNSUB), [{ subscription: "b.2" }, { subscription: "a.1" }]);
  assert.deepEqual(h.services.bodies(ON_UNSUB), [{ subscription: "b.2" }, { subscription: "a.1" }]);
  assert.equal(h.router.sessionCount, 0);
  assert.equal(h.router.hub.channelCount, 0);
  assert.equal(h.broker.channels.size, 0);
  assert.deepEqual(c.take(), []);
  held.open();
  await h.settled();
  assert.deepEqual(c.take(), [], "the late answer goes nowhere");
});

test("session: an internal error answers Unhandled exception. and closes with 1000", async () => {
  const h = await new Harness(config).start();
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "open.a" });
  // Make the subscription's body() throw: a bug, not an expected failure.
  Object.defineProperty(c.session, "authInfo", { get: () => { throw new Error("boom"); } });
  h.services.on(ON_MSG, { status: "ok" });
  await c.call({ event: "subscribe", subscription: "slow.b" });
  const frames = await c.call({ event: "message", subscription: "slow.b" });
  assert.deepEqual(frames, [{ event: "message", status: "error", error: "Unhandled exception.", subscription: "slow.b" }]);
  assert.deepEqual(c.transport.closed, { code: 1000, reason: "" });
  await until(() => h.router.sessionCount === 0, "the session released despite the failing teardown");
  assert.equal(h.router.hub.channelCount, 0);
});

test("leaks: 1,000 connect/subscribe/disconnect cycles leave no session, channel or timer", async () => {
  const h = await new Harness({
    services: {
      r: {
        requireAuthentication: false,
        authorizer: AUTHZ,
        authorizationRenewalPeriod: 60,
        heartbeatPeriod: 30,
        onHeartbeat: BEAT,
      },
    },
  }).start();
  h.services.on(AUTHZ, { status: "ok" });
  for (let i = 0; i < 1000; i++) {
    const c = h.connect();
    c.session.receive(JSON.stringify({ event: "subscribe", subscription: `r.${i % 10}` }));
    c.session.receive(JSON.stringify({ event: "subscribe", subscription: "r.shared" }));
    if (i % 3 === 0) await h.settled();
    void c.session.disconnected();
  }
  await until(() => h.router.sessionCount === 0, "all sessions closed", 10_000);
  assert.equal(h.router.hub.channelCount, 0);
  assert.equal(h.router.hub.subscriptionCount, 0);
  await until(() => h.broker.channels.size === 0, "broker channels released");
  assert.equal(h.clock.pending, 0);
  assert.equal(h.router.hub.fanoutMembers, 0);
  assert.equal(h.fanout?.topics.size ?? 0, 0, "no native topic left joined (on the fan-out path)");
});

test("renewal: changed authorizer fields call on_authorization_change; failure revokes with callbacks (decision 3)", async () => {
  const h = await new Harness({
    services: {
      p: {
        requireAuthentication: false,
        authorizer: AUTHZ,
        authorizerFields: ["capabilities"],
        authorizationRenewalPeriod: 1,
        authorizationRenewalJitter: 0.5,
        onAuthorizationChange: CHANGE,
        beforeUnsubscribe: BEFORE_UNSUB,
        onUnsubscribe: ON_UNSUB,
        extraFields: ["x"],
      },
    },
  }).start();
  h.services
    .on(AUTHZ, { status: "ok", capabilities: "foo", plan: "pro" }, { status: "ok", capabilities: "bar" }, {
      status: "ok",
      capabilities: "bar",
    }, { status: "error", error: "no longer authorized", data: { hidden: true } })
    .on(CHANGE, { status: "ok" })
    .on(BEFORE_UNSUB, { status: "error", error: "verdict ignored", data: "from before_unsubscribe" })
    .on(ON_UNSUB, { status: "ok" });
  h.clock.randoms = [0, 1, 0.5];
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "p.t", x: 1 });
  await h.clock.advance(999);
  assert.equal(h.services.bodies(AUTHZ).length, 1, "first renewal at period - random*jitter = 1 s");
  await h.clock.advance(1);
  assert.deepEqual(h.services.bodies(AUTHZ)[1], { subscription: "p.t", x: 1, capabilities: "foo" });
  assert.deepEqual(h.services.bodies(CHANGE), [{ subscription: "p.t", x: 1, capabilities: "bar" }]);
  await h.clock.advance(500); // second renewal at 1 - 1*0.5 = 0.5 s: unchanged
  assert.equal(h.services.bodies(CHANGE).length, 1);
  assert.deepEqual(c.take(), []);
  await h.clock.advance(750); // third renewal at 1 - 0.5*0.5 = 0.75 s: revoked
  await until(() => c.transport.texts.length > 0, "revocation");
  // The notice carries before_unsubscribe's data (docs/protocol.md §11.2), never the authorizer's.
  assert.deepEqual(c.take(), [
    { event: "unsubscribe", subscription: "p.t", data: "from before_unsubscribe", error: "no longer authorized", x: 1 },
  ]);
  assert.equal(h.services.bodies(BEFORE_UNSUB).length, 1);
  assert.equal(h.services.bodies(ON_UNSUB).length, 1);
  assert.equal(h.router.hub.channelCount, 0);
  assert.equal(h.clock.pending, 0);
  assert.deepEqual(await c.call({ event: "unsubscribe", subscription: "p.t" }), [
    { event: "unsubscribe", status: "error", error: "Subscription does not exist.", subscription: "p.t" },
  ]);
});

test("renewal: an unreachable authorizer or a failing on_authorization_change revokes", async () => {
  const h = await new Harness({
    services: {
      u: { requireAuthentication: false, authorizer: AUTHZ, authorizationRenewalPeriod: 1 },
      v: {
        requireAuthentication: false,
        authorizer: CHANGE + "/authz",
        authorizerFields: ["cap"],
        authorizationRenewalPeriod: 1,
        onAuthorizationChange: CHANGE,
      },
    },
  }).start();
  h.services.on(AUTHZ, { status: "ok" }, { fail: "network" }).on(CHANGE + "/authz", { status: "ok", cap: 1 }, {
    status: "ok",
    cap: 2,
  }).on(CHANGE, { status: "error" });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "u.t" });
  await c.call({ event: "subscribe", subscription: "v.t" });
  await h.clock.advance(1000);
  await until(() => c.transport.texts.length === 2, "two revocations");
  const frames = c.take().sort((a, b) => String(a.subscription).localeCompare(String(b.subscription)));
  assert.deepEqual(frames, [
    { event: "unsubscribe", subscription: "u.t", error: "Service unavailable." },
    { event: "unsubscribe", subscription: "v.t", error: "Unhandled exception." },
  ]);
});

test("renewal racing a client unsubscribe: whichever comes second is a no-op (decision 9)", async () => {
  const h = await new Harness({
    services: {
      p: {
        requireAuthentication: false,
        authorizer: AUTHZ,
        authorizationRenewalPeriod: 1,
        beforeUnsubscribe: BEFORE_UNSUB,
        onUnsubscribe: ON_UNSUB,
      },
    },
  }).start();
  const held = gate();
  h.services.on(AUTHZ, { status: "ok" }, { status: "error" })
    .on(BEFORE_UNSUB, { after: held, reply: { status: "ok" } }, { status: "ok" })
    .on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "p.t" });
  c.session.receive(JSON.stringify({ event: "unsubscribe", subscription: "p.t" }));
  await h.settled();
  await h.clock.advance(1000); // renewal fails while the client's before_unsubscribe is pending
  held.open();
  await until(() => h.services.bodies(ON_UNSUB).length >= 1, "on_unsubscribe");
  await h.settled();
  assert.deepEqual(c.take(), [{ event: "unsubscribe", status: "ok", subscription: "p.t" }]);
  assert.equal(h.services.bodies(ON_UNSUB).length, 1);
  assert.equal(c.transport.closed, undefined);
});

test("heartbeat: first beat after period * random, then every period; failures keep it going", async () => {
  const h = await new Harness({
    services: { hb: { requireAuthentication: false, heartbeatPeriod: 0.2, onHeartbeat: BEAT, extraFields: ["e"] } },
  }).start();
  h.services.on(BEAT, { status: "error" }, { fail: "network" }, { status: "ok" });
  h.clock.randoms = [0.5];
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "hb.t", e: "v" });
  await h.clock.advance(99);
  assert.equal(h.services.bodies(BEAT).length, 0);
  await h.clock.advance(1);
  assert.deepEqual(h.services.bodies(BEAT), [{ subscription: "hb.t", e: "v" }]);
  await h.clock.advance(200);
  await h.clock.advance(200);
  assert.equal(h.services.bodies(BEAT).length, 3);
  await c.call({ event: "unsubscribe", subscription: "hb.t" });
  await h.clock.advance(1000);
  assert.equal(h.services.bodies(BEAT).length, 3);
  assert.equal(h.clock.pending, 0);
});

test("shutdown: sessions close with 1000 and their callbacks run; new connections are refused", async () => {
  const h = await new Harness(config).start();
  h.services.on(BEFORE_UNSUB, { status: "ok" }).on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.x" });
  await h.router.shutdown();
  assert.deepEqual(c.transport.closed, { code: 1000, reason: "" });
  assert.deepEqual(h.services.bodies(ON_UNSUB), [{ subscription: "slow.x" }]);
  assert.equal(h.router.sessionCount, 0);
  assert.equal(h.router.ready, false);
  assert.throws(() => h.connect(), /refused/);
});

test("shutdown: a callback that hangs past shutdown.drainTimeout is cancelled", async () => {
  const h = await new Harness({ ...config, shutdown: { drainTimeout: 1 } }).start();
  h.services.on(BEFORE_UNSUB, { hang: true }).on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  await c.call({ event: "subscribe", subscription: "slow.x" });
  const stopping = h.router.shutdown();
  await h.clock.advance(1000); // the drain timeout
  await h.clock.advance(1000); // then a moment for the cancelled calls to settle
  await stopping;
  assert.equal(h.router.ready, false);
});
