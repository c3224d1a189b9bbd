// History and recovery (extension E1) in the Redis-backed brokers, against real servers: a private redis-server (with
// an `alt`), a 3-node Redis Cluster (sharded and not) and the Upstash stand-in. The brokers are driven directly, so
// these tests do not depend on SHOAL_TARGET; they run with the e2e suites because they need redis-server.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { Broker, BrokerMessage, HistoryOptions } from "../../src/broker/broker.ts";
import { HISTORY_PUBLISH_SCRIPT, historyKeys, sharesChannelSlot } from "../../src/broker/history_script.ts";
import { MemoryBroker } from "../../src/broker/memory_broker.ts";
import { RedisBroker } from "../../src/broker/redis_broker.ts";
import { UpstashBroker } from "../../src/broker/upstash_broker.ts";
import { DEFAULTS, type RedisBrokerConfig, type RedisClusterBrokerConfig } from "../../src/config.ts";
import { historyEnvelope } from "../../src/protocol/broker_message.ts";
import { eventually } from "../support/e2e.ts";
import { keySlot, RedisCluster, RedisServer } from "../support/redis_server.ts";
import { REPO_ROOT } from "../support/shoal_process.ts";
import { UpstashServer } from "../support/upstash_server.ts";

const SCRIPT_FILE = join(REPO_ROOT, "scripts", "shoal_history_publish.lua");
const HISTORY: HistoryOptions = { size: 10, ttl: 60 };
const WAIT = { ms: 10_000, every: 20 };
const TIMING = { pingInterval: 1, pingTimeout: 1, connectTimeout: 10, maxReconnectDelay: 0.5 };

/** A started broker and what it received, with a wait for the n-th message. */
async function started<B extends Broker>(broker: B) {
  const received: BrokerMessage[] = [];
  await broker.start({ onMessage: (message) => received.push(message) });
  return {
    broker,
    received,
    payloads: (channel: string) => received.filter((m) => m.channel === channel).map((m) => m.payload),
    waitFor: (count: number, what = `${count} message(s)`) => eventually(() => received.length >= count, what, WAIT),
    [Symbol.asyncDispose]: () => broker.close(),
  };
}

function redisConfig(url: string, extra: Partial<RedisBrokerConfig> = {}): RedisBrokerConfig {
  return { ...DEFAULTS.redis, ...TIMING, kind: "redis", url, channelPrefix: "p:", ...extra };
}

function clusterConfig(urls: string[], sharded: boolean): RedisClusterBrokerConfig {
  return { ...DEFAULTS.redis, ...TIMING, kind: "redis-cluster", nodes: urls, sharded, channelPrefix: "p:" };
}

function message(subscription: string, data: unknown): string {
  return JSON.stringify({ subscription, data });
}

/** Exactly `top` messages … down to 1, as `history(since)` returns the newest `size` of them after `since`. */
function expectedEntries(payloads: string[], since: number, size: number) {
  const top = payloads.length;
  const from = Math.max(since + 1, top - size + 1, 1);
  return payloads.slice(from - 1).map((payload, i) => ({ offset: from + i, payload }));
}

test("history keys: the channel's hash tag, or the channel wrapped in one; the script file is the constant", () => {
  assert.equal(readFileSync(SCRIPT_FILE, "utf8"), HISTORY_PUBLISH_SCRIPT);
  assert.deepEqual(historyKeys("p:chat.1"), {
    stream: "shoal:history:{p:chat.1}",
    meta: "shoal:history-meta:{p:chat.1}",
    idempotency: "shoal:history-idem:{p:chat.1}",
  });
  assert.equal(historyKeys("p:{room}.1").stream, "shoal:history:p:{room}.1");
  // `{}` is no hash tag (Redis hashes the whole name): wrapped.
  assert.equal(historyKeys("p:{}.1").stream, "shoal:history:{p:{}.1}");
  assert.equal(historyKeys("p:a{b").meta, "shoal:history-meta:{p:a{b}");
  for (const channel of ["p:chat.1", "p:{room}.1", "p:{x}}", "p:a{b", "{a}", "p:é.☃", "x"]) {
    assert.ok(sharesChannelSlot(channel), channel);
    for (const key of Object.values(historyKeys(channel))) assert.equal(keySlot(key), keySlot(channel), `${key}`);
  }
  // A "}" without a hash tag (Redis looks no further than the first "{"): wrapping would cut the tag at that "}".
  for (const channel of ["p:a}b", "p:}{", "p:{}}", "p:{}{x}", ""]) {
    assert.equal(sharesChannelSlot(channel), false, channel);
  }
});

test("redis: offsets 1..n in one epoch, MAXLEN keeps size, history(since) is exact, subscribers get the envelope", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await started(new RedisBroker(redisConfig(redis.url)));
  const { broker } = shoal;
  await broker.subscribe("chat.1");
  const payloads = Array.from({ length: 25 }, (_, i) => message("chat.1", i + 1));
  const appended = [];
  for (const payload of payloads) appended.push(await broker.append("chat.1", payload, HISTORY));
  const epoch = appended[0].epoch;
  assert.match(epoch, /^[0-9a-z]+$/);
  assert.deepEqual(appended, payloads.map((_, i) => ({ offset: i + 1, epoch, duplicate: false })));
  await shoal.waitFor(25);
  assert.deepEqual(shoal.payloads("chat.1"), payloads.map((p, i) => historyEnvelope(i + 1, epoch, p)));
  // The live text is exactly the envelope of the original payload.
  assert.equal(shoal.received[0].payload, `{"offset":1,"epoch":"${epoch}","message":${payloads[0]}}`);

  const keys = historyKeys("p:chat.1");
  assert.equal(await redis.command("XLEN", keys.stream), HISTORY.size);
  assert.deepEqual(await redis.command("HGETALL", keys.meta), ["epoch", epoch, "top", "25"]);
  assert.ok(Number(await redis.command("PTTL", keys.stream)) > 59_000);
  assert.ok(Number(await redis.command("PTTL", keys.meta)) > 59_000);

  assert.deepEqual(await broker.history("chat.1", HISTORY), { epoch, top: 25, entries: [] });
  for (const since of [0, 5, 15, 16, 20, 24, 25, 30]) {
    const state = await broker.history("chat.1", HISTORY, since);
    assert.deepEqual(
      state,
      { epoch, top: 25, entries: expectedEntries(payloads, since, HISTORY.size) },
      `since ${since}`,
    );
  }
  // A smaller size (a config change) never returns more than size, and trims at the next append.
  assert.deepEqual((await broker.history("chat.1", { size: 3, ttl: 60 }, 0)).entries.map((e) => e.offset), [
    23,
    24,
    25,
  ]);
  assert.equal((await broker.append("chat.1", message("chat.1", 26), { size: 3, ttl: 60 })).offset, 26);
  assert.equal(await redis.command("XLEN", keys.stream), 3);
  // A plain PUBLISH is delivered as is and not stored.
  await redis.command("PUBLISH", "p:chat.1", message("chat.1", "plain"));
  await shoal.waitFor(27);
  assert.equal(shoal.received[26].payload, message("chat.1", "plain"));
  assert.equal((await broker.history("chat.1", HISTORY)).top, 26);
});

test("redis: a new epoch without old entries after FLUSHALL, after the TTL, and over a stray stream", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await started(new RedisBroker(redisConfig(redis.url)));
  const { broker } = shoal;
  const short = { size: 10, ttl: 1 };

  // A read creates the epoch of a history that has none; the first append uses it.
  const fresh = await broker.history("a.1", short, 0);
  assert.deepEqual(fresh.top, 0);
  assert.deepEqual(fresh.entries, []);
  assert.deepEqual(await broker.append("a.1", message("a.1", 1), short), {
    offset: 1,
    epoch: fresh.epoch,
    duplicate: false,
  });
  await broker.append("a.1", message("a.1", 2), short);

  await redis.command("FLUSHALL");
  const flushed = await broker.history("a.1", short, 0);
  assert.notEqual(flushed.epoch, fresh.epoch);
  assert.deepEqual({ ...flushed, epoch: "" }, { epoch: "", top: 0, entries: [] });
  const after = await broker.append("a.1", message("a.1", "new"), short);
  assert.deepEqual(after, { offset: 1, epoch: flushed.epoch, duplicate: false });
  assert.deepEqual((await broker.history("a.1", short, 0)).entries, [{ offset: 1, payload: message("a.1", "new") }]);

  // ttl 1 s: everything expires a second after the last append.
  const keys = historyKeys("p:a.1");
  await eventually(
    async () => await redis.command("EXISTS", keys.stream, keys.meta) === 0,
    "the history to expire",
    WAIT,
  );
  const expired = await broker.history("a.1", short, 0);
  assert.notEqual(expired.epoch, flushed.epoch);
  assert.equal(expired.top, 0);
  assert.deepEqual(expired.entries, []);
  // The epoch a read created expires too when nothing is appended.
  assert.ok(Number(await redis.command("PTTL", keys.meta)) <= 1000);

  // A stream left without its metadata (e.g. evicted) is dropped, never shown under a new epoch.
  await redis.command("DEL", keys.meta);
  await redis.command("XADD", keys.stream, "7-0", "message", message("a.1", "stray"));
  const appended = await broker.append("a.1", message("a.1", "clean"), short);
  assert.equal(appended.offset, 1);
  assert.deepEqual((await broker.history("a.1", short, 0)).entries, [{ offset: 1, payload: message("a.1", "clean") }]);
  await redis.command("DEL", keys.meta);
  await redis.command("XADD", keys.stream, "8-0", "message", message("a.1", "stray"));
  assert.deepEqual({ ...(await broker.history("a.1", short, 0)), epoch: "" }, { epoch: "", top: 0, entries: [] });
  assert.equal(await redis.command("EXISTS", keys.stream), 0);
});

test("redis: an idempotency key appends and publishes once while its message is stored", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await started(new RedisBroker(redisConfig(redis.url)));
  const { broker } = shoal;
  await broker.subscribe("idem.1");
  const options = { size: 3, ttl: 60 };
  const first = await broker.append("idem.1", message("idem.1", "once"), { ...options, idempotencyKey: "k1" });
  const again = await broker.append("idem.1", message("idem.1", "twice"), { ...options, idempotencyKey: "k1" });
  assert.deepEqual(first, { offset: 1, epoch: first.epoch, duplicate: false });
  assert.deepEqual(again, { offset: 1, epoch: first.epoch, duplicate: true });
  // The same key on another channel is another key.
  assert.equal(
    (await broker.append("idem.2", message("idem.2", 1), { ...options, idempotencyKey: "k1" })).duplicate,
    false,
  );
  await broker.append("idem.1", message("idem.1", "marker"), options);
  await shoal.waitFor(2);
  await broker.publish("idem.1", message("idem.1", "end"));
  await shoal.waitFor(3);
  assert.deepEqual(shoal.payloads("idem.1"), [
    historyEnvelope(1, first.epoch, message("idem.1", "once")),
    historyEnvelope(2, first.epoch, message("idem.1", "marker")),
    message("idem.1", "end"),
  ]);
  assert.deepEqual((await broker.history("idem.1", options, 0)).entries.map((e) => e.payload), [
    message("idem.1", "once"),
    message("idem.1", "marker"),
  ]);
  // Trimmed out of the history (size 3), the key is forgotten: as the memory broker does.
  await broker.append("idem.1", message("idem.1", 3), options);
  assert.equal(
    (await broker.append("idem.1", message("idem.1", "k1 dup"), { ...options, idempotencyKey: "k1" })).duplicate,
    true,
  );
  await broker.append("idem.1", message("idem.1", 4), options);
  const reused = await broker.append("idem.1", message("idem.1", "k1 again"), { ...options, idempotencyKey: "k1" });
  assert.deepEqual(reused, { offset: 5, epoch: first.epoch, duplicate: false });
  assert.deepEqual(await redis.command("HGETALL", historyKeys("p:idem.1").idempotency), ["k1", "5"]);
});

test("redis: the memory broker's semantics, operation for operation (appends, idempotency keys, reads)", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await started(new RedisBroker(redisConfig(redis.url)));
  await using memory = await started(new MemoryBroker());
  const options = { size: 7, ttl: 60 };
  // A fixed pseudo-random sequence: appends with no key or one of four (so keys repeat, inside and outside the
  // window), and reads from anywhere around the window.
  let seed = 42;
  const next = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const outcomes: { redis: unknown[]; memory: unknown[] } = { redis: [], memory: [] };
  for (let i = 0; i < 400; i++) {
    const channel = `diff.${next(2)}`;
    if (next(3) > 0) {
      const key = next(3) === 0 ? undefined : `k${next(4)}`;
      const payload = message(channel, i);
      const run = (broker: Broker) => broker.append(channel, payload, { ...options, idempotencyKey: key });
      const [a, b] = [await run(shoal.broker), await run(memory.broker)];
      outcomes.redis.push({ offset: a.offset, duplicate: a.duplicate });
      outcomes.memory.push({ offset: b.offset, duplicate: b.duplicate });
    } else {
      const top = (await memory.broker.history(channel, options)).top;
      const since = next(3) === 0 ? undefined : next(top + 3);
      const [a, b] = [
        await shoal.broker.history(channel, options, since),
        await memory.broker.history(channel, options, since),
      ];
      outcomes.redis.push({ top: a.top, entries: a.entries, since });
      outcomes.memory.push({ top: b.top, entries: b.entries, since });
    }
  }
  assert.deepEqual(outcomes.redis, outcomes.memory);
  assert.ok(outcomes.memory.some((o) => (o as { duplicate?: boolean }).duplicate === true));
});

test("redis: 20 concurrent publishers × 50 appends give offsets 1..1000, no gap, no duplicate, in order live", async () => {
  await using redis = await RedisServer.start();
  await using subscriber = await started(new RedisBroker(redisConfig(redis.url)));
  await subscriber.broker.subscribe("busy.1");
  const options = { size: 100, ttl: 60 };
  const publishers = await Promise.all(
    Array.from({ length: 20 }, () => started(new RedisBroker(redisConfig(redis.url)))),
  );
  const byOffset = new Map<number, string>();
  try {
    const results = await Promise.all(publishers.map(async ({ broker }, p) => {
      const mine = [];
      for (let i = 0; i < 50; i++) {
        const payload = message("busy.1", `${p}/${i}`);
        const appended = await broker.append("busy.1", payload, options);
        byOffset.set(appended.offset, payload);
        mine.push(appended);
      }
      return mine;
    }));
    const all = results.flat();
    assert.equal(new Set(all.map((a) => a.epoch)).size, 1);
    assert.deepEqual(all.map((a) => a.offset).sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i + 1));
    // Each publisher saw its own appends in increasing order.
    for (const mine of results) assert.ok(mine.every((a, i) => i === 0 || a.offset > mine[i - 1].offset));
    const epoch = all[0].epoch;
    await subscriber.waitFor(1000);
    const live = subscriber.payloads("busy.1");
    assert.deepEqual(live, Array.from({ length: 1000 }, (_, i) => historyEnvelope(i + 1, epoch, byOffset.get(i + 1)!)));
    const state = await subscriber.broker.history("busy.1", options, 0);
    assert.equal(state.top, 1000);
    assert.deepEqual(
      state.entries,
      Array.from({ length: 100 }, (_, i) => ({ offset: 901 + i, payload: byOffset.get(901 + i)! })),
    );
  } finally {
    await Promise.all(publishers.map((p) => p.broker.close()));
  }
});

test("redis: the shipped script under redis-cli --eval; EVALSHA falls back to EVAL after SCRIPT FLUSH", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await started(new RedisBroker(redisConfig(redis.url, { channelPrefix: "" })));
  const { broker } = shoal;
  await broker.subscribe("cli.1");
  const keys = historyKeys("cli.1");
  const payload = message("cli.1", "from a service");
  const eval_ = (...args: string[]) =>
    redis.cli("--eval", SCRIPT_FILE, keys.stream, keys.meta, keys.idempotency, ",", "cli.1", ...args);
  const out = await eval_(payload, "10", "60000", "PUBLISH");
  const [offset, epoch, duplicate] = out.split("\n");
  assert.deepEqual([offset, duplicate], ["1", "0"]);
  await shoal.waitFor(1);
  assert.equal(shoal.received[0].payload, historyEnvelope(1, epoch, payload));
  assert.deepEqual(await broker.append("cli.1", message("cli.1", 2), HISTORY), { offset: 2, epoch, duplicate: false });
  assert.equal(await eval_(message("cli.1", 3), "10", "60000", "PUBLISH", "key-3"), `3\n${epoch}\n0`);
  assert.equal(await eval_(message("cli.1", 3), "10", "60000", "PUBLISH", "key-3"), `3\n${epoch}\n1`);
  assert.match(await eval_(payload, "0", "60000", "PUBLISH"), /ERR shoal history: size must be an integer >= 1/);
  assert.match(await eval_(payload, "10", "60000", "XPUBLISH"), /must be PUBLISH or SPUBLISH/);
  // Keys not named after the channel, or SPUBLISH to a channel its keys cannot share a slot with: refused unwritten.
  assert.match(
    await redis.cli("--eval", SCRIPT_FILE, "s", "m", "i", ",", "cli.1", payload, "10", "60000", "PUBLISH"),
    /ERR shoal history: the keys of channel cli\.1 are shoal:history:\{cli\.1\}, /,
  );
  const odd = historyKeys("x}y");
  assert.match(
    await redis.cli(
      "--eval",
      SCRIPT_FILE,
      odd.stream,
      odd.meta,
      odd.idempotency,
      ",",
      "x}y",
      payload,
      "10",
      "60000",
      "SPUBLISH",
    ),
    /with SPUBLISH a channel with a "}" needs a hash tag/,
  );
  const stored = [keys.stream, keys.meta, keys.idempotency].sort();
  assert.deepEqual((await redis.command("KEYS", "*") as string[]).slice().sort(), stored);
  assert.deepEqual((await broker.history("cli.1", HISTORY, 1)).entries.map((e) => e.offset), [2, 3]);

  const calls = async () => {
    const stats = String(await redis.command("INFO", "commandstats"));
    const count = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
    return { evalsha: count("evalsha"), eval: count("eval") };
  };
  await redis.command("SCRIPT", "FLUSH");
  await redis.command("CONFIG", "RESETSTAT");
  assert.equal((await broker.append("cli.1", message("cli.1", 4), HISTORY)).offset, 4);
  assert.deepEqual(await calls(), { evalsha: 1, eval: 1 });
  assert.equal((await broker.append("cli.1", message("cli.1", 5), HISTORY)).offset, 5);
  assert.deepEqual(await calls(), { evalsha: 2, eval: 1 });
  assert.equal((await broker.history("cli.1", HISTORY)).top, 5);
  assert.deepEqual(await calls(), { evalsha: 3, eval: 2 });
});

test("redis with alt: appends and reads use the first Redis only", async () => {
  await using main = await RedisServer.start();
  await using alt = await RedisServer.start();
  const config = redisConfig(main.url, { alt: { url: alt.url, channelPrefix: "q:" } });
  await using shoal = await started(new RedisBroker(config));
  await shoal.broker.subscribe("alt.1");
  const appended = await shoal.broker.append("alt.1", message("alt.1", 1), HISTORY);
  await shoal.waitFor(1);
  assert.equal(shoal.received[0].payload, historyEnvelope(1, appended.epoch, message("alt.1", 1)));
  const keys = historyKeys("p:alt.1");
  assert.deepEqual((await main.command("KEYS", "*") as string[]).slice().sort(), [keys.stream, keys.meta].sort());
  assert.deepEqual(await alt.command("KEYS", "*"), []);
  assert.equal((await shoal.broker.history("alt.1", HISTORY)).top, 1);
  assert.deepEqual(await alt.command("KEYS", "*"), []);
});

for (const sharded of [true, false]) {
  test(`redis-cluster ${sharded ? "sharded (SPUBLISH)" : "classic (PUBLISH)"}: keys on the channel's slot, envelope delivered`, async () => {
    await using cluster = await RedisCluster.start(3);
    await using shoal = await started(new RedisBroker(clusterConfig(cluster.urls, sharded)));
    const { broker } = shoal;
    // Subscription names on three different shards (as full channels, prefix included), and a hash-tagged one.
    const names = [...(await cluster.channelsOnDistinctShards(3, "p:room.")).map((c) => c.slice(2)), "{tag}.x"];
    for (const name of names) await broker.subscribe(name);
    const node = (port: number) => cluster.nodes.find((n) => n.port === port)!;
    for (const [i, name] of names.entries()) {
      const channel = `p:${name}`;
      const payloads = [message(name, i), message(name, "second")];
      const first = await broker.append(name, payloads[0], HISTORY);
      assert.deepEqual(await broker.append(name, payloads[1], { ...HISTORY, idempotencyKey: "k" }), {
        offset: 2,
        epoch: first.epoch,
        duplicate: false,
      });
      assert.equal((await broker.append(name, payloads[1], { ...HISTORY, idempotencyKey: "k" })).duplicate, true);
      const keys = historyKeys(channel);
      const owner = node(await cluster.slotOwner(channel));
      const slot = await owner.command("CLUSTER", "KEYSLOT", channel);
      for (const key of Object.values(keys)) assert.equal(await owner.command("CLUSTER", "KEYSLOT", key), slot, key);
      assert.equal(await owner.command("XLEN", keys.stream), 2);
      assert.deepEqual(await broker.history(name, HISTORY, 0), {
        epoch: first.epoch,
        top: 2,
        entries: payloads.map((payload, j) => ({ offset: j + 1, payload })),
      });
      await shoal.waitFor(2 * (i + 1));
      assert.deepEqual(shoal.payloads(name), payloads.map((p, j) => historyEnvelope(j + 1, first.epoch, p)));
    }
    // A "}" without a hash tag: the keys share a slot, but not the channel's. Fine for PUBLISH; refused for SPUBLISH.
    const odd = await cluster.channelsOnDistinctShards(3, "p:odd}");
    const name = odd.find((c) => keySlot(historyKeys(c).stream) !== keySlot(c))!.slice(2);
    if (sharded) {
      await assert.rejects(broker.append(name, message(name, 1), HISTORY), /a "}" needs a hash tag/);
      await assert.rejects(broker.history(name, HISTORY), /a "}" needs a hash tag/);
    } else {
      await broker.subscribe(name);
      const appended = await broker.append(name, message(name, 1), HISTORY);
      await eventually(() => shoal.payloads(name).length === 1, "the envelope", WAIT);
      assert.deepEqual(shoal.payloads(name), [historyEnvelope(1, appended.epoch, message(name, 1))]);
      assert.equal((await broker.history(name, HISTORY, 0)).entries.length, 1);
    }
  });
}

test("upstash: the same scripts over the REST API; the envelope arrives on the event stream", async () => {
  await using redis = await RedisServer.start();
  await using upstash = await UpstashServer.start({ redisUrl: redis.url, token: "up-token" });
  const config = {
    ...DEFAULTS.redis,
    kind: "upstash" as const,
    url: upstash.url,
    token: "up-token",
    channelPrefix: "u:",
    connectTimeout: 5,
    maxReconnectDelay: 0.5,
  };
  await using shoal = await started(new UpstashBroker(config));
  const { broker } = shoal;
  await broker.subscribe("up.1");
  const fresh = await broker.history("up.1", HISTORY, 0);
  assert.deepEqual({ ...fresh, epoch: "" }, { epoch: "", top: 0, entries: [] });
  const payloads = Array.from({ length: 12 }, (_, i) => message("up.1", `ü ${i + 1}\n"x"`));
  for (const [i, payload] of payloads.entries()) {
    assert.deepEqual(await broker.append("up.1", payload, HISTORY), {
      offset: i + 1,
      epoch: fresh.epoch,
      duplicate: false,
    });
  }
  assert.deepEqual(await broker.append("up.1", payloads[11], { ...HISTORY, idempotencyKey: "k" }), {
    offset: 13,
    epoch: fresh.epoch,
    duplicate: false,
  });
  assert.deepEqual(await broker.append("up.1", payloads[11], { ...HISTORY, idempotencyKey: "k" }), {
    offset: 13,
    epoch: fresh.epoch,
    duplicate: true,
  });
  payloads.push(payloads[11]);
  await shoal.waitFor(13);
  assert.deepEqual(shoal.payloads("up.1"), payloads.map((p, i) => historyEnvelope(i + 1, fresh.epoch, p)));
  assert.deepEqual(await broker.history("up.1", HISTORY, 4), {
    epoch: fresh.epoch,
    top: 13,
    entries: expectedEntries(payloads, 4, HISTORY.size),
  });
  assert.equal(await redis.command("XLEN", historyKeys("u:up.1").stream), HISTORY.size);
  // EVALSHA first; EVAL only when the script is not cached (after SCRIPT FLUSH).
  const names = () => upstash.commands.map((c) => c[0].toUpperCase()).filter((c) => c.startsWith("EVAL"));
  assert.equal(names().filter((c) => c === "EVAL").length, 2);
  await redis.command("SCRIPT", "FLUSH");
  const before = names().length;
  assert.equal((await broker.append("up.1", message("up.1", "after flush"), HISTORY)).offset, 14);
  assert.deepEqual(names().slice(before), ["EVALSHA", "EVAL"]);
  await redis.command("FLUSHALL");
  const flushed = await broker.append("up.1", message("up.1", "new"), HISTORY);
  assert.equal(flushed.offset, 1);
  assert.notEqual(flushed.epoch, fresh.epoch);
});
