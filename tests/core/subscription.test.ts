// A Subscription on its own: a fake CoreContext (config, clock, services, hub) and a fake owning session.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConfig } from "../../src/config.ts";
import { Activity } from "../../src/core/activity.ts";
import type { CoreContext, Services } from "../../src/core/context.ts";
import type { HubMember } from "../../src/core/hub.ts";
import { Subscription, type SubscriptionOwner } from "../../src/core/subscription.ts";
import { parsePublishedMessage } from "../../src/protocol/broker_message.ts";
import type { ServiceAnswer } from "../../src/services/service_client.ts";
import { FakeClock } from "../support/fake_clock.ts";

class FakeOwner implements SubscriptionOwner {
  readonly id = "s-1";
  authInfo: Readonly<Record<string, unknown>> = {};
  readonly signal = new AbortController().signal;
  readonly subscriptions = new Map<string, Subscription>();
  readonly sent: Record<string, unknown>[] = [];
  readonly revoked: unknown[] = [];
  sendText(text: string): void {
    this.sent.push(JSON.parse(text));
  }
  joinTopic(): boolean {
    return false;
  }
  leaveTopic(): void {}
  revoke(_subscription: Subscription, error: unknown): void {
    this.revoked.push(error);
  }
}

function context(services: Record<string, unknown>, answers: ServiceAnswer[] = []) {
  const calls: { url: string; body: unknown }[] = [];
  const activated: HubMember[] = [];
  const post: Services["post"] = (url, body) => {
    calls.push({ url, body });
    return Promise.resolve(answers.shift() ?? { ok: false });
  };
  const clock = new FakeClock();
  const activity = new Activity();
  clock.settle = () => activity.idle(); // a timer's renewal or heartbeat has run before the next fires
  const ctx: CoreContext = {
    config: parseConfig({ services }),
    clock,
    activity,
    observer: {},
    services: { post },
    hub: { add: () => Promise.resolve(), remove: () => {}, activated: (m) => void activated.push(m) },
    history: { history: () => Promise.reject(new Error("no history in these tests")) },
  };
  return { ctx, calls, activated, clock };
}

function subscription(ctx: CoreContext, owner: FakeOwner, extra: Record<string, unknown> = {}): Subscription {
  const service = ctx.config.services.svc;
  const sub = new Subscription(ctx, owner, { name: "svc.a", serviceName: "svc", service, extra });
  owner.subscriptions.set(sub.name, sub);
  return sub;
}

const message = (value: unknown) => {
  const parsed = parsePublishedMessage(value);
  assert.ok(parsed.ok);
  return parsed.message;
};
const frame = (text: string) => () => text;

test("Subscription: pending buffers messages; activate sends them in order, then joins the hub", () => {
  const { ctx, activated } = context({ svc: { requireAuthentication: false } });
  const owner = new FakeOwner();
  const sub = subscription(ctx, owner);
  sub.receive(message({ subscription: "svc.a", data: 1 }), frame("live-1"));
  sub.receive(message({ subscription: "svc.a", data: 2 }), frame("live-2"));
  assert.equal(owner.sent.length, 0, "nothing sent while pending");
  sub.activate();
  assert.deepEqual(owner.sent.map((f) => [f.event, f.data, "received_at" in f]), [["message", 1, false], ["message", 2, false]]);
  assert.deepEqual(activated, [sub]);
  sub.receive(message({ subscription: "svc.a", data: 3 }), frame('{"live":3}'));
  assert.deepEqual(owner.sent.at(-1), { live: 3 });
});

test("Subscription: filter fields look at extra fields, then authorizer fields, then the session's auth fields", () => {
  const { ctx } = context({
    svc: { requireAuthentication: false, extraFields: ["room"], authorizerFields: ["role"], filterFields: ["room", "role", "user"] },
  });
  const owner = new FakeOwner();
  owner.authInfo = { user: 7, role: "ignored: the authorizer's wins" };
  const sub = subscription(ctx, owner, { room: "r1" });
  sub.storeAuthorizerFields({ role: "admin" });
  assert.equal(sub.matches({ room: "r1", role: "admin", user: 7 }), true);
  assert.equal(sub.matches({ room: "r2" }), false);
  assert.equal(sub.matches({ role: "ignored: the authorizer's wins" }), false);
  assert.equal(sub.matches({ user: 8 }), false);
  assert.equal(sub.matches({ other: 1 }), true, "fields that are not filter fields do not count");
});

test("Subscription: renewal without a valid answer revokes with Service unavailable.; close stops every timer", async () => {
  const { ctx, calls, clock } = context({
    svc: { requireAuthentication: false, authorizer: "http://svc.test/authz", authorizationRenewalPeriod: 10 },
  }, [{ ok: false }]);
  const owner = new FakeOwner();
  const sub = subscription(ctx, owner);
  sub.activate();
  assert.equal(clock.pending, 1, "the renewal timer");
  await clock.advance(10_000);
  assert.deepEqual(calls.map((c) => c.url), ["http://svc.test/authz"]);
  assert.deepEqual(owner.revoked, ["Service unavailable."]);
  const other = subscription(ctx, new FakeOwner());
  other.activate();
  other.close();
  assert.equal(clock.pending, 0, "closed: no timer left");
  other.receive(message({ subscription: "svc.a", data: 1 }), frame("x"));
  assert.equal(other.closed, true);
});

// ---------------------------------------------------------------- history (extension E1)

const at = (offset: number, epoch = "e1") => ({ offset, epoch });
const stored = (data: unknown, offset: number, epoch = "e1") => ({ ...message({ subscription: "svc.a", data }), position: at(offset, epoch) });
const HISTORY = { svc: { requireAuthentication: false, history: { size: 10, ttl: 60 } } };

test("Subscription (history): replay first, then buffered messages past the position; duplicates dropped", () => {
  const { ctx, activated } = context(HISTORY);
  const owner = new FakeOwner();
  const sub = subscription(ctx, owner);
  // Arrived live while pending: 4 and 5 are already in the replay, 6 is new.
  for (const offset of [4, 5, 6]) sub.receive(stored(`live${offset}`, offset), frame("unused"));
  sub.activate({ position: at(5), replay: [stored("r4", 4), stored("r5", 5)] });
  assert.deepEqual(owner.sent.map((f) => [f.data, f.offset, f.epoch]), [["r4", 4, "e1"], ["r5", 5, "e1"], ["live6", 6, "e1"]]);
  assert.equal(owner.sent.some((f) => "received_at" in f), false, "stored and buffered frames carry no received_at");
  assert.deepEqual(sub.position, at(6));
  assert.equal(activated.length, 1, "caught up with the live stream: joins the fan-out");
});

test("Subscription (history): stays off the fan-out until the live stream passes its position, dropping what it knew", () => {
  const { ctx, activated } = context(HISTORY);
  const owner = new FakeOwner();
  const sub = subscription(ctx, owner);
  sub.activate({ position: at(7), replay: [] });
  assert.equal(activated.length, 0, "the read was ahead of the subscriber connection");
  assert.equal(sub.receiveUniform(stored("m6", 6), frame('{"n":6}')), false);
  assert.equal(sub.receiveUniform(stored("m7", 7), frame('{"n":7}')), false);
  assert.deepEqual(owner.sent, []);
  assert.equal(sub.receiveUniform(stored("m8", 8), frame('{"n":8}')), true);
  assert.deepEqual(owner.sent, [{ n: 8 }]);
  assert.equal(activated.length, 1);
  // A plain PUBLISH on the channel (no position) is delivered as before.
  assert.equal(sub.receiveUniform(message({ subscription: "svc.a", data: "plain" }), frame('{"plain":1}')), true);
  assert.deepEqual(owner.revoked, []);
});

test("Subscription (history): a hole or another epoch ends it with Insufficient state., and nothing more is sent", () => {
  for (const next of [at(10), at(1, "e2")]) {
    const { ctx } = context(HISTORY);
    const owner = new FakeOwner();
    const sub = subscription(ctx, owner);
    sub.activate({ position: at(7), replay: [] });
    sub.receive(stored("m8", 8), frame('{"n":8}'));
    sub.receive(stored("next", next.offset, next.epoch), frame('{"n":"next"}'));
    sub.receive(stored("m9", 9), frame('{"n":9}'));
    assert.deepEqual(owner.sent, [{ n: 8 }]);
    assert.deepEqual(owner.revoked, ["Insufficient state."]);
  }
});

test("Subscription (history): a hole among buffered messages (an overflowing buffer) ends it at activation", () => {
  const { ctx } = context(HISTORY);
  const owner = new FakeOwner();
  const sub = subscription(ctx, owner);
  sub.receive(stored("m6", 6), frame("unused"));
  sub.receive(stored("m8", 8), frame("unused"));
  sub.activate({ position: at(5), replay: [] });
  assert.deepEqual(owner.sent.map((f) => f.data), ["m6"]);
  assert.deepEqual(owner.revoked, ["Insufficient state."]);
});

test("Subscription (history): filter fields apply to replayed messages as to live ones", () => {
  const { ctx } = context({ svc: { requireAuthentication: false, filterFields: ["user"], history: { size: 10, ttl: 60 } } });
  const owner = new FakeOwner();
  owner.authInfo = { user: 1 };
  const sub = subscription(ctx, owner);
  const replay = [1, 2, 1].map((user, i) => ({
    ...message({ subscription: "svc.a", data: i + 1, user }),
    position: at(i + 1),
  }));
  sub.activate({ position: at(3), replay });
  assert.deepEqual(owner.sent.map((f) => [f.data, f.offset]), [[1, 1], [3, 3]]);
});
