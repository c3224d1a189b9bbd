// The hub on its own: a memory broker, a fake clock and fake members (no Router, no Session).
import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryBroker } from "../../src/broker/memory_broker.ts";
import { Activity } from "../../src/core/activity.ts";
import { type FrameSource, Hub, type HubMember } from "../../src/core/hub.ts";
import type { PublishedMessage } from "../../src/protocol/broker_message.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** A member recording what reaches it; `active` decides whether a uniform message goes out. */
class FakeMember implements HubMember {
  topic: string | undefined;
  readonly received: string[] = [];
  readonly routed: string[] = [];
  readonly joined: string[] = [];
  readonly gaps: string[] = [];
  readonly service: { readonly filterFields: readonly string[] };
  readonly extraKey: string;
  constructor(
    readonly name: string,
    readonly extra: Readonly<Record<string, unknown>> = {},
    options: { filterFields?: string[]; active?: boolean; topics?: boolean } = {},
  ) {
    this.service = { filterFields: options.filterFields ?? [] };
    this.extraKey = Object.keys(extra).length ? JSON.stringify(extra) : "";
    this.active = options.active ?? true;
    this.topics = options.topics ?? false;
  }
  active: boolean;
  topics: boolean;
  joinTopic(topic: string): boolean {
    if (!this.topics) return false;
    this.joined.push(topic);
    return true;
  }
  leaveTopic(topic: string): void {
    this.joined.splice(this.joined.indexOf(topic), 1);
  }
  insufficientState(why: string): void {
    this.gaps.push(why);
  }
  skip(): void {}
  receive(message: PublishedMessage, frame: FrameSource): void {
    this.received.push(`${message.data}:${frame(this)}`);
  }
  receiveUniform(message: PublishedMessage, frame: FrameSource): boolean {
    if (!this.active) return false;
    this.received.push(`${message.data}:${frame(this)}`);
    return true;
  }
  route(message: PublishedMessage, _frame: FrameSource): void {
    this.routed.push(`${message.subscription}:${message.data}`);
  }
}

async function world() {
  const broker = new MemoryBroker();
  const delivered: number[] = [];
  const activity = new Activity();
  const hub = new Hub(broker, { clock: new FakeClock(), observer: { delivered: (n) => delivered.push(n) }, activity });
  await broker.start({ onMessage: (message) => hub.deliver(message) });
  const publish = async (channel: string, message: unknown) => {
    // Resolves once the hub has had the message.
    await broker.publish(channel, typeof message === "string" ? message : JSON.stringify(message));
  };
  return { broker, hub, delivered, publish, activity };
}

test("Hub: the first member subscribes the broker channel, the last one out unsubscribes it", async () => {
  const { broker, hub, activity } = await world();
  const a = new FakeMember("svc.x");
  const b = new FakeMember("svc.x");
  await hub.add(a);
  await hub.add(b);
  assert.deepEqual([...broker.channels], ["svc.x"]);
  assert.equal(hub.subscriptionCount, 2);
  hub.remove(a);
  hub.remove(a); // idempotent
  assert.deepEqual([...broker.channels], ["svc.x"]);
  hub.remove(b);
  await activity.idle(); // the broker unsubscribe
  assert.deepEqual([...broker.channels], []);
  assert.equal(hub.channelCount, 0);
});

test("Hub: a uniform message goes to every member as one frame per extra-field set; others are routed", async () => {
  const { hub, delivered, publish } = await world();
  const a = new FakeMember("svc.x", { v: 1 });
  const b = new FakeMember("svc.x", { v: 1 });
  const c = new FakeMember("svc.x", {}, { active: false });
  for (const m of [a, b, c]) await hub.add(m);
  await publish("svc.x", { subscription: "svc.x", data: "hi" });
  assert.equal(a.received.length, 1);
  assert.equal(a.received[0], b.received[0], "the same serialized frame");
  const frame = JSON.parse(a.received[0].slice(3));
  assert.deepEqual([frame.event, frame.subscription, frame.data, frame.v], ["message", "svc.x", "hi", 1]);
  assert.deepEqual(c.received, [], "a member that is not active sends nothing");
  assert.deepEqual(delivered, [2]);
  // Addressed to another name on this channel, or with an order: each member routes it itself.
  await publish("svc.x", { subscription: "svc.y", data: "other" });
  await publish("svc.x", { subscription: "svc.x", data: "ordered", options: { order: 1 } });
  assert.deepEqual(a.routed, ["svc.y:other", "svc.x:ordered"]);
});

test("Hub: a message with a filter field is routed per member; invalid or too deep payloads reach nobody", async () => {
  const { hub, publish } = await world();
  const a = new FakeMember("svc.x", {}, { filterFields: ["user"] });
  await hub.add(a);
  await publish("svc.x", { subscription: "svc.x", data: 1, user: 7 });
  await publish("svc.x", "not json");
  await publish("svc.x", `{"subscription":"svc.x","data":${"[".repeat(200)}${"]".repeat(200)}}`);
  await publish("svc.x", { data: "no subscription" });
  assert.deepEqual(a.routed, ["svc.x:1"]);
  assert.deepEqual(a.received, []);
});

test("Hub: with native topics, active members join one topic per extra-field set and a message is one publish each", async () => {
  const { hub, publish } = await world();
  const published: string[] = [];
  hub.useFanout((topic) => published.push(topic));
  const members = [new FakeMember("svc.x", { v: 1 }, { topics: true }), new FakeMember("svc.x", { v: 1 }, { topics: true }), new FakeMember("svc.x", { v: 2 }, { topics: true })];
  for (const m of members) {
    await hub.add(m);
    hub.activated(m);
  }
  assert.equal(hub.fanoutMembers, 3);
  await publish("svc.x", { subscription: "svc.x", data: "hi" });
  assert.equal(published.length, 2, "one publish per distinct frame");
  assert.ok(members.every((m) => m.received.length === 0), "nothing went per member");
  for (const m of members) hub.remove(m);
  assert.equal(hub.fanoutMembers, 0);
  assert.ok(members.every((m) => m.joined.length === 0), "every topic left");
});
