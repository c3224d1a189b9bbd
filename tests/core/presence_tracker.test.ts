// The presence tracker on its own (extension E3): batching per channel, order of writes and notices, retries after a
// failed write, restored entries, reads, and close(); over the memory store and a fake clock.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryPresenceStore } from "../../src/broker/memory_presence.ts";
import { Activity } from "../../src/core/activity.ts";
import {
  type PresenceChange,
  type PresenceMember,
  type PresenceStore,
  PresenceTracker,
  stableJson,
} from "../../src/core/presence_tracker.ts";
import { parsePresenceControl } from "../../src/protocol/broker_message.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** The memory store, recording each write and failing while `failing` is set. */
class RecordingStore implements PresenceStore {
  readonly inner: MemoryPresenceStore;
  readonly writes: PresenceChange[] = [];
  failing = false;
  constructor(clock: FakeClock) {
    this.inner = new MemoryPresenceStore(clock);
  }
  updatePresence(channel: string, change: PresenceChange) {
    this.writes.push(change);
    if (this.failing) return Promise.reject(new Error("store down"));
    return this.inner.updatePresence(channel, change);
  }
  readPresence(channel: string) {
    if (this.failing) return Promise.reject(new Error("store down"));
    return this.inner.readPresence(channel);
  }
}

function world() {
  const clock = new FakeClock();
  const activity = new Activity();
  clock.settle = () => activity.idle();
  const store = new RecordingStore(clock);
  const published: string[] = [];
  const queries: string[] = [];
  const tracker = new PresenceTracker(store, {
    clock,
    activity,
    observer: { presenceQuery: (source) => queries.push(source) },
    publish: (_channel, payload) => {
      const control = parsePresenceControl(payload);
      assert.ok(control, `a presence notice: ${payload}`);
      published.push(`${control.kind}:${control.session}`);
      return Promise.resolve();
    },
  });
  return { clock, activity, store, tracker, published, queries };
}

const member = (id: string, authInfo: Record<string, unknown> = { user: id }, name = "chat.1"): PresenceMember => ({
  name,
  session: { id, authInfo },
});

const JOIN_LEAVE = { joinLeave: true, refreshInterval: 10 };

test("tracker: a burst of joins on one channel is one or two store writes, not one per session", async () => {
  const { store, tracker, activity } = world();
  const joins = Array.from({ length: 100 }, (_, i) => tracker.join(member(`s-${i}`), JOIN_LEAVE));
  await Promise.all(joins);
  await activity.idle();
  assert.ok(store.writes.length <= 2, `${store.writes.length} writes`);
  assert.equal(store.writes.reduce((n, w) => n + w.add.length, 0), 100);
  assert.equal((await tracker.read("chat.1", JOIN_LEAVE, "event")).count, 100);
});

test("tracker: writes of one channel never overlap and keep their order; the latest write of a session wins", async () => {
  const { store, tracker, activity, published } = world();
  const a = member("a");
  await tracker.join(a, JOIN_LEAVE);
  const b = member("b");
  void tracker.join(b, JOIN_LEAVE);
  tracker.leave(b); // before its write went out
  await activity.idle();
  assert.deepEqual(store.writes.at(-1), { add: [], remove: ["b"], ttl: 30 });
  assert.deepEqual(published, ["join:a", "join:b", "leave:b"]);
  assert.deepEqual((await tracker.read("chat.1", JOIN_LEAVE, "event")).users.map((u) => u.fields), [{ user: "a" }]);
});

test("tracker: leave is idempotent and ignores another subscription object of the same session", async () => {
  const { tracker, activity, published } = world();
  const a = member("a");
  await tracker.join(a, JOIN_LEAVE);
  tracker.leave(member("a")); // not the one that joined
  tracker.leave(a);
  tracker.leave(a);
  await activity.idle();
  assert.deepEqual(published, ["join:a", "leave:a"]);
  assert.equal(tracker.size, 0);
});

test("tracker: a failed write is retried at the next refresh, its notices published then", async () => {
  const { clock, store, tracker, activity, published } = world();
  await tracker.join(member("a"), JOIN_LEAVE);
  store.failing = true;
  const b = member("b");
  await tracker.join(b, JOIN_LEAVE); // resolves although the write failed
  const c = member("c");
  await tracker.join(c, JOIN_LEAVE);
  tracker.leave(c);
  await activity.idle();
  assert.deepEqual(published, ["join:a"]);
  store.failing = false;
  await clock.advance(10_000);
  assert.deepEqual(published, ["join:a", "join:b", "join:c", "leave:c"]);
  const found = await tracker.read("chat.1", JOIN_LEAVE, "event");
  assert.deepEqual(found.users.map((u) => u.text), ['{"user":"a"}', '{"user":"b"}']);
});

test("tracker: an entry that expired while its node stalled comes back with a join", async () => {
  const { clock, store, tracker, activity, published } = world();
  await tracker.join(member("a"), JOIN_LEAVE);
  await tracker.join(member("b"), JOIN_LEAVE);
  // Another node purged b's entry (its refreshes were late): it told everyone b left.
  await store.inner.updatePresence("chat.1", { add: [], remove: ["b"], ttl: 30 });
  await clock.advance(10_000);
  await activity.idle();
  assert.deepEqual(published, ["join:a", "join:b", "join:b"]);
});

test("tracker: reads count by source and report expired entries as leaves (without joinLeave, silently)", async () => {
  const { clock, store, tracker, activity, published, queries } = world();
  await store.inner.updatePresence("chat.1", { add: [{ session: "dead", user: "{}" }], remove: [], ttl: 5 });
  await store.inner.updatePresence("room.1", { add: [{ session: "dead", user: "{}" }], remove: [], ttl: 5 });
  await clock.advance(6_000);
  assert.deepEqual(await tracker.read("chat.1", JOIN_LEAVE, "event"), { count: 0, users: [] });
  assert.deepEqual(await tracker.read("room.1", { joinLeave: false, refreshInterval: 10 }, "api"), { count: 0, users: [] });
  await activity.idle();
  assert.deepEqual(published, ["leave:dead"]);
  assert.deepEqual(queries, ["event", "api"]);
});

test("tracker: without joinLeave nothing is published", async () => {
  const { tracker, activity, published } = world();
  const a = member("a");
  await tracker.join(a, { joinLeave: false, refreshInterval: 10 });
  tracker.leave(a);
  await activity.idle();
  assert.deepEqual(published, []);
});

test("tracker: a channel with no local entry keeps no timer; close() waits for writes and stops refreshing", async () => {
  const { clock, store, tracker, activity } = world();
  const a = member("a");
  await tracker.join(a, JOIN_LEAVE);
  await tracker.join(member("x", {}, "chat.2"), JOIN_LEAVE);
  assert.equal(clock.pending, 2, "one refresh timer per channel");
  tracker.leave(a);
  await activity.idle();
  assert.equal(clock.pending, 1);
  const writes = store.writes.length;
  await tracker.close();
  assert.equal(clock.pending, 0);
  await clock.advance(60_000);
  assert.equal(store.writes.length, writes, "no refresh after close");
  await tracker.join(member("y"), JOIN_LEAVE);
  assert.equal(store.writes.length, writes, "no join after close");
});

test("stableJson: keys sorted at every level, so equal auth fields are equal texts", () => {
  assert.equal(stableJson({ b: 1, a: { d: [1, { z: 0, y: null }], c: "x" } }), '{"a":{"c":"x","d":[1,{"y":null,"z":0}]},"b":1}');
  assert.equal(stableJson({}), "{}");
  assert.equal(stableJson({ a: undefined, b: 2 }), '{"b":2}');
});
