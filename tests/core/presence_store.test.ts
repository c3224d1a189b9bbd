// The presence stores' own rules (extension E3): the memory store's expiry and replies, the Redis keys (the channel's
// hash tag), the write script's batching and the parsing of both scripts' replies. The scripts themselves run
// against a real Redis in tests/e2e/presence.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryPresenceStore } from "../../src/broker/memory_presence.ts";
import {
  PRESENCE_BATCH,
  parsePresenceRead,
  parsePresenceUpdate,
  presenceKeys,
  presencePurgeScript,
  presenceUpdateArgs,
  presenceUpdateScript,
  presenceValuesScript,
} from "../../src/broker/presence_script.ts";
import { historyKeys } from "../../src/broker/history_script.ts";
import { RedisBroker } from "../../src/broker/redis_broker.ts";
import { DEFAULTS } from "../../src/config.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { fakeLinks } from "../support/fake_link.ts";

const entry = (session: string, user: unknown = { id: session }) => ({ session, user: JSON.stringify(user) });

/** A read with each user as its auth fields (after checking that its text is what it parses from). */
function plain<T extends { users: readonly { text: string; fields: unknown }[] }>(read: T): Omit<T, "users"> & { users: unknown[] } {
  for (const user of read.users) assert.deepEqual(JSON.parse(user.text), user.fields);
  return { ...read, users: read.users.map((user) => user.fields) };
}

test("memory store: add, rewrite, remove; count and distinct users; restored = had no entry", async () => {
  const store = new MemoryPresenceStore(new FakeClock());
  const first = await store.updatePresence("c", { add: [entry("a", { u: 1 }), entry("b", { u: 1 })], remove: [], ttl: 30 });
  assert.deepEqual(first, { expired: [], restored: ["a", "b"] });
  const again = await store.updatePresence("c", { add: [entry("a", { u: 1 }), entry("c", { u: 2 })], remove: ["b"], ttl: 30 });
  assert.deepEqual(again, { expired: [], restored: ["c"] });
  assert.deepEqual(plain(await store.readPresence("c")), { count: 2, users: [{ u: 1 }, { u: 2 }], expired: [] });
  assert.deepEqual(plain(await store.readPresence("other")), { count: 0, users: [], expired: [] });
});

test("memory store: an entry not rewritten within ttl expires; the first call that sees it reports it, once", async () => {
  const clock = new FakeClock();
  const store = new MemoryPresenceStore(clock);
  await store.updatePresence("c", { add: [entry("a"), entry("b")], remove: [], ttl: 30 });
  await clock.advance(20_000);
  await store.updatePresence("c", { add: [entry("a")], remove: [], ttl: 30 });
  await clock.advance(10_000);
  const write = await store.updatePresence("c", { add: [entry("a")], remove: [], ttl: 30 });
  assert.deepEqual(write.expired, [entry("b")]);
  assert.deepEqual(plain(await store.readPresence("c")), { count: 1, users: [{ id: "a" }], expired: [] });
  await clock.advance(30_000);
  assert.deepEqual(plain(await store.readPresence("c")), { count: 0, users: [], expired: [entry("a")] });
  assert.deepEqual(plain(await store.readPresence("c")), { count: 0, users: [], expired: [] });
});

test("memory store: an expired entry being rewritten by this very write is kept, not reported", async () => {
  const clock = new FakeClock();
  const store = new MemoryPresenceStore(clock);
  await store.updatePresence("c", { add: [entry("a")], remove: [], ttl: 30 });
  await clock.advance(40_000);
  assert.deepEqual(await store.updatePresence("c", { add: [entry("a")], remove: [], ttl: 30 }), { expired: [], restored: [] });
});

test("redis keys: the channel's hash tag, as the history keys", () => {
  assert.deepEqual(presenceKeys("chat.1"), { entries: "shoal:presence:{chat.1}", expiries: "shoal:presence-expiry:{chat.1}" });
  assert.deepEqual(presenceKeys("p:chat.{r1}.x"), {
    entries: "shoal:presence:p:chat.{r1}.x",
    expiries: "shoal:presence-expiry:p:chat.{r1}.x",
  });
  assert.equal(historyKeys("chat.1").stream.replace("history", "presence"), presenceKeys("chat.1").entries);
});

test("write script arguments: batches of PRESENCE_BATCH entries; removals and the purge in the last call", () => {
  assert.deepEqual(presenceUpdateArgs({ add: [], remove: ["x"], ttl: 30 }), [["30000", "0", "1", "x"]]);
  assert.deepEqual(presenceUpdateArgs({ add: [entry("a")], remove: [], ttl: 0.25 }), [["250", "1", "1", "a", '{"id":"a"}']]);
  const many = Array.from({ length: PRESENCE_BATCH + 1 }, (_, i) => entry(`s${i}`));
  const calls = presenceUpdateArgs({ add: many, remove: ["gone"], ttl: 30 });
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[0].slice(0, 3), ["30000", String(PRESENCE_BATCH), "0"]);
  assert.equal(calls[0].length, 3 + 2 * PRESENCE_BATCH);
  assert.deepEqual(calls[1], ["30000", "1", "1", `s${PRESENCE_BATCH}`, `{"id":"s${PRESENCE_BATCH}"}`, "gone"]);
});

test("script replies: parsed and checked; auth fields that are not a JSON object are left out", () => {
  assert.deepEqual(parsePresenceUpdate([[0, "a"], [1, "b", '{"u":1}', "c"]]), { expired: [{ session: "b", user: '{"u":1}' }], restored: ["a", "c"] });
  assert.deepEqual(parsePresenceUpdate([[1, "b", "[1]"]]), { expired: [], restored: [] });
  assert.throws(() => parsePresenceUpdate([[2, "b", "{}"]]), /presence write script/);
  assert.throws(() => parsePresenceUpdate(["OK"]), /presence write script/);
  const alice = '{"name":"alice","user_id":1}';
  assert.deepEqual(plain(parsePresenceRead(["dead", '{"u":9}'], [alice, alice, '{"u":2,"v":{"w":[1]}}'])), {
    count: 3,
    users: [{ name: "alice", user_id: 1 }, { u: 2, v: { w: [1] } }],
    expired: [{ session: "dead", user: '{"u":9}' }],
  });
  // Values Shoal did not write count as sessions, but only objects are users.
  assert.deepEqual(plain(parsePresenceRead(["dead", "[]"], ["not json", "[1]", "{}", 5, "[".repeat(200)])), {
    count: 5,
    users: [{}],
    expired: [],
  });
  assert.deepEqual(plain(parsePresenceRead([], [])), { count: 0, users: [], expired: [] });
  assert.throws(() => parsePresenceRead(["dead"], []), /presence purge script/);
  assert.throws(() => parsePresenceRead([], "OK"), /HVALS/);
  assert.throws(() => parsePresenceRead(null, []), /presence purge script/);
});

test("redis broker: presence goes to the first Redis, on the prefixed channel's keys; purge before the values", async () => {
  const clock = new FakeClock();
  const { links, createLinks } = fakeLinks(clock);
  const config = { ...DEFAULTS.redis, kind: "redis" as const, url: "redis://main", channelPrefix: "p:", alt: { url: "redis://alt", channelPrefix: "q:" } };
  const broker = new RedisBroker(config, { clock, createLinks });
  await broker.start({ onMessage: () => {} });
  const [main, alt] = links;
  const scripts: string[] = [];
  main.script = (script) => {
    scripts.push(script === presenceUpdateScript ? "update" : script === presencePurgeScript ? "purge" : script === presenceValuesScript ? "values" : "other");
    if (script === presenceUpdateScript) return [1, "gone", '{"u":0}', "s1"];
    if (script === presencePurgeScript) return [];
    return ['{"u":1}', '{"u":1}'];
  };
  main.commands.length = 0;
  const update = await broker.updatePresence("chat.1", { add: [entry("s1")], remove: ["s2"], ttl: 30 });
  assert.deepEqual(update, { expired: [{ session: "gone", user: '{"u":0}' }], restored: ["s1"] });
  assert.deepEqual(main.commands, [
    `evalsha ${presenceUpdateScript.sha1} shoal:presence:{p:chat.1} shoal:presence-expiry:{p:chat.1} , 30000 1 1 s1 {"id":"s1"} s2`,
  ]);
  // This fake link cannot send HVALS itself: the values come through a script (node-redis links send HVALS).
  assert.deepEqual(plain(await broker.readPresence("chat.1")), { count: 2, users: [{ u: 1 }], expired: [] });
  assert.deepEqual(scripts, ["update", "purge", "values"]);
  assert.deepEqual(alt.commands.filter((c) => c.startsWith("evalsha")), [], "nothing on the alt Redis");
  await broker.close();
  await assert.rejects(broker.readPresence("chat.1"), /broker closed/);
});
