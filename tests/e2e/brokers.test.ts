// The redis-cluster and upstash brokers end to end: a private 3-node Redis Cluster, and the real @upstash/redis
// protocol served by tests/support/upstash_server.ts in front of a private redis-server.
import assert from "node:assert/strict";
import process from "node:process";
import { test } from "node:test";
import { deliveredMessage, eventually, publish, readyz, shardChannels, subscribed } from "../support/e2e.ts";
import { RedisCluster, RedisServer } from "../support/redis_server.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { UpstashServer } from "../support/upstash_server.ts";
import { WsClient } from "../support/ws_client.ts";

const OPEN = { open: { requireAuthentication: false } };
const TOKEN = "brokers-token";
const TIMING = { pingInterval: 1, pingTimeout: 1, connectTimeout: 10, maxReconnectDelay: 0.5 };

/** How `eventually` waits in this file: up to 10 s, polling every 25 ms. */
const WAIT = { ms: 10_000, every: 25 };
/** As `WAIT`, for recoveries that take reconnects: up to 20 s. */
const LONG_WAIT = { ms: 20_000, every: 25 };

test("redis-cluster sharded: channels on three shards, SPUBLISH delivers, PUBSUB SHARDCHANNELS empty after", async () => {
  await using cluster = await RedisCluster.start(3);
  const names = await cluster.channelsOnDistinctShards(3, "open.");
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    publish: { token: TOKEN },
    broker: { kind: "redis-cluster", nodes: [cluster.urls[0]], sharded: true, ...TIMING },
  });
  const clients = await Promise.all(names.map((name) => subscribed(shoal, name)));
  try {
    assert.deepEqual(await shardChannels(cluster), [...names].sort());
    // Each channel lives on its own master.
    const owners = await Promise.all(names.map((name) => cluster.slotOwner(name)));
    assert.equal(new Set(owners).size, 3);
    for (const [i, name] of names.entries()) {
      const owner = cluster.nodes.find((node) => node.port === owners[i])!;
      assert.equal(await owner.cli("SPUBLISH", name, JSON.stringify({ subscription: name, data: i })), "1");
    }
    for (const [i, client] of clients.entries()) {
      assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: names[i], data: i });
    }
    // POST /publish uses SPUBLISH too.
    assert.equal((await publish(shoal, { subscription: names[2], data: "api" }, { token: TOKEN })).status, 200);
    assert.deepEqual(deliveredMessage(await clients[2].next()), { event: "message", subscription: names[2], data: "api" });
  } finally {
    for (const client of clients) await client.close();
  }
  await eventually(async () => (await shardChannels(cluster)).length === 0, "PUBSUB SHARDCHANNELS to be empty", WAIT);
});

test("redis-cluster sharded: a node restart is survived; its channel is re-subscribed and delivers again", async () => {
  await using cluster = await RedisCluster.start(3);
  const [name] = await cluster.channelsOnDistinctShards(1, "open.");
  const ownerPort = await cluster.slotOwner(name);
  const node = cluster.nodes.find((n) => n.port === ownerPort)!;
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    broker: { kind: "redis-cluster", nodes: cluster.urls, sharded: true, ...TIMING },
  });
  await using client = await subscribed(shoal, name);
  await node.stop();
  await eventually(async () => await readyz(shoal) === 503, "readyz 503 while a node is down", WAIT);
  await node.restart();
  await cluster.waitUntilOk();
  await eventually(async () => await readyz(shoal) === 200, "readyz 200 after the node is back", LONG_WAIT);
  await eventually(async () => (await shardChannels(cluster)).includes(name), "the channel re-subscribed", LONG_WAIT);
  assert.equal(await node.cli("SPUBLISH", name, JSON.stringify({ subscription: name, data: "back" })), "1");
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: name, data: "back" });
});

test("redis-cluster classic: SUBSCRIBE through the cluster; PUBLISH on any node delivers", async () => {
  await using cluster = await RedisCluster.start(3);
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    broker: { kind: "redis-cluster", nodes: cluster.urls, sharded: false, ...TIMING },
  });
  const client = await subscribed(shoal, "open.classic");
  try {
    for (const [i, node] of cluster.nodes.entries()) {
      await node.cli("PUBLISH", "open.classic", JSON.stringify({ subscription: "open.classic", data: i }));
      assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.classic", data: i });
    }
  } finally {
    await client.close();
  }
  await eventually(
    async () => {
      for (const node of cluster.nodes) if ((await node.command("PUBSUB", "CHANNELS") as string[]).length) return false;
      return true;
    },
    "PUBSUB CHANNELS empty on every node",
    WAIT,
  );
});

test("upstash: publish through the REST API reaches clients; a dropped event stream is re-opened", async () => {
  await using redis = await RedisServer.start();
  await using upstash = await UpstashServer.start({ redisUrl: redis.url, token: "up-token" });
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    publish: { token: TOKEN },
    broker: { kind: "upstash", url: upstash.url, token: "up-token", channelPrefix: "u:", maxReconnectDelay: 0.5 },
  });
  await using client = await subscribed(shoal, "open.up");
  assert.deepEqual(upstash.channels, ["u:open.up"]);
  // A service publishing to Redis directly, and POST /publish through Upstash's REST API.
  await redis.cli("PUBLISH", "u:open.up", JSON.stringify({ subscription: "open.up", data: "direct" }));
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.up", data: "direct" });
  assert.equal((await publish(shoal, { subscription: "open.up", data: "rest, with commas" }, { token: TOKEN })).status, 200);
  assert.deepEqual(deliveredMessage(await client.next()), {
    event: "message",
    subscription: "open.up",
    data: "rest, with commas",
  });

  for (const graceful of [false, true]) {
    const opened = upstash.streamsOpened;
    assert.equal(upstash.dropStreams({ graceful }), 1);
    await eventually(() => upstash.streamsOpened > opened && upstash.openStreams === 1, "the stream re-opened", WAIT);
    await eventually(async () => await readyz(shoal) === 200, "ready again", WAIT);
    await redis.cli("PUBLISH", "u:open.up", JSON.stringify({ subscription: "open.up", data: `after ${graceful}` }));
    assert.deepEqual(deliveredMessage(await client.next()), {
      event: "message",
      subscription: "open.up",
      data: `after ${graceful}`,
    });
  }
  await client.close();
  await eventually(() => upstash.openStreams === 0, "the stream closed after the last client left", WAIT);
});

test("upstash: a wrong token fails start-up; an unreachable stream makes readiness false until it is back", async () => {
  await using redis = await RedisServer.start();
  await using upstash = await UpstashServer.start({ redisUrl: redis.url, token: "right" });
  await assert.rejects(
    ShoalProcess.start({ services: OPEN, broker: { kind: "upstash", url: upstash.url, token: "wrong", connectTimeout: 2 } }),
    /cannot connect to Upstash at http:\/\/127\.0\.0\.1:\d+/,
  );
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    broker: { kind: "upstash", url: upstash.url, token: "right", maxReconnectDelay: 0.5 },
  });
  await using client = await subscribed(shoal, "open.r");
  await redis.stop(); // the REST server stays up but cannot subscribe: streams fail
  upstash.dropStreams();
  await eventually(async () => await readyz(shoal) === 503, "readyz 503 while the stream cannot be re-opened", WAIT);
  await redis.restart();
  await eventually(async () => await readyz(shoal) === 200, "readyz 200 after recovery", LONG_WAIT);
  await redis.cli("PUBLISH", "open.r", JSON.stringify({ subscription: "open.r", data: "recovered" }));
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.r", data: "recovered" });
});

test("upstash: 300 channels share a bounded number of streams; auth and POST /publish still answer at once", async () => {
  await using redis = await RedisServer.start();
  await using upstash = await UpstashServer.start({ redisUrl: redis.url, token: "up-token" });
  await using tickets = await TestService.start();
  tickets.on("/auth", { status: "ok", user: "u1" });
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    authentication: { ticket: { validationUrl: tickets.url("/auth"), authFields: ["user"] } },
    publish: { token: TOKEN },
    http: { timeout: 30, tries: 1 },
    broker: { kind: "upstash", url: upstash.url, token: "up-token", channelPrefix: "u:", maxReconnectDelay: 0.5 },
    log: { level: "info", format: "json" },
  });
  // 300 ordinary channels, and one whose name holds the commas of Upstash's event format.
  const names = [...Array.from({ length: 300 }, (_, i) => `open.c${i}`), "open.a,b"];
  const client = await WsClient.connect(shoal.url);
  try {
    for (const name of names) client.send({ event: "subscribe", subscription: name });
    const replies = new Map<unknown, unknown>();
    for (const _ of names) {
      const frame = await client.next(15_000);
      replies.set(frame.subscription, frame.status);
    }
    assert.deepEqual([...replies.values()].filter((status) => status !== "ok"), []);
    assert.equal(replies.size, names.length);
    // 32 streams of their own plus one shared: far from Bun's 256.
    assert.equal(upstash.openStreams, 33);
    assert.deepEqual(upstash.streams.filter((s) => s.kind === "psubscribe"), [{ kind: "psubscribe", channel: "u:*" }]);

    await using other = await WsClient.connect(shoal.url);
    const started = Date.now();
    other.send({ event: "auth", ticket: "t-1" });
    assert.deepEqual(await other.next(), { event: "auth", status: "ok" });
    assert.ok(Date.now() - started < 2000, `auth took ${Date.now() - started} ms`);

    // Each message arrives once, on its own stream or the shared one, in order.
    for (const name of ["open.c0", "open.c299", "open.a,b", "open.c31", "open.c32"]) {
      const data = `to ${name}, with, commas`;
      const sent = Date.now();
      assert.equal((await publish(shoal, { subscription: name, data }, { token: TOKEN })).status, 200);
      assert.ok(Date.now() - sent < 2000, `POST /publish took ${Date.now() - sent} ms`);
      assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: name, data });
    }
    await redis.cli("PUBLISH", "u:open.unsubscribed", JSON.stringify({ subscription: "open.unsubscribed", data: 0 }));
    await redis.cli("PUBLISH", "u:open.c5", JSON.stringify({ subscription: "open.c5", data: "last" }));
    assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.c5", data: "last" });
  } finally {
    await client.close();
  }
  await eventually(() => upstash.openStreams === 0, "every stream closed after the client left", WAIT);
});

test("upstash: the shared stream is re-opened after a drop, and closes with its last channel", async () => {
  await using redis = await RedisServer.start();
  await using upstash = await UpstashServer.start({ redisUrl: redis.url, token: "up-token" });
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    broker: { kind: "upstash", url: upstash.url, token: "up-token", maxReconnectDelay: 0.5 },
    log: { level: "info", format: "json" },
  });
  const client = await WsClient.connect(shoal.url);
  try {
    const names = Array.from({ length: 34 }, (_, i) => `open.s${i}`);
    for (const name of names) {
      client.send({ event: "subscribe", subscription: name });
      assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: name });
    }
    assert.deepEqual(upstash.streams.filter((s) => s.kind === "psubscribe"), [{ kind: "psubscribe", channel: "*" }]);
    const opened = upstash.streamsOpened;
    upstash.dropStreams();
    await eventually(
      () => upstash.streamsOpened >= opened + 33 && upstash.openStreams === 33,
      "every stream re-opened",
      WAIT,
    );
    await eventually(async () => await readyz(shoal) === 200, "ready again", WAIT);
    await redis.cli("PUBLISH", "open.s33", JSON.stringify({ subscription: "open.s33", data: "shared, again" }));
    assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.s33", data: "shared, again" });
    // The two shared channels leave: the shared stream closes; the 32 others keep theirs.
    for (const name of ["open.s32", "open.s33"]) {
      client.send({ event: "unsubscribe", subscription: name });
      assert.deepEqual(await client.next(), { event: "unsubscribe", status: "ok", subscription: name });
    }
    await eventually(() => upstash.openStreams === 32, "the shared stream closed", WAIT);
    assert.deepEqual(upstash.streams.filter((s) => s.kind === "psubscribe"), []);
  } finally {
    await client.close();
  }
  await eventually(() => upstash.openStreams === 0, "every stream closed after the client left", WAIT);
});

test("upstash: a stream idle for longer than Bun's fetch timeout (~6 min) stays open (SHOAL_SLOW_TESTS=1)", {
  skip: process.env.SHOAL_SLOW_TESTS ? false : "takes 7 minutes; set SHOAL_SLOW_TESTS=1",
  timeout: 600_000,
}, async () => {
  await using redis = await RedisServer.start();
  await using upstash = await UpstashServer.start({ redisUrl: redis.url, token: "up-token" });
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    broker: { kind: "upstash", url: upstash.url, token: "up-token", maxReconnectDelay: 0.5 },
    log: { level: "info", format: "json" },
  });
  await using client = await subscribed(shoal, "open.quiet");
  const end = Date.now() + 400_000;
  while (Date.now() < end) {
    assert.equal(await readyz(shoal), 200, "readyz stayed 200");
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
  assert.equal(upstash.streamsOpened, 1, "the idle stream was never cut and re-opened");
  assert.deepEqual(shoal.logsWith("upstash stream lost"), []);
  await redis.cli("PUBLISH", "open.quiet", JSON.stringify({ subscription: "open.quiet", data: "still here" }));
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.quiet", data: "still here" });
});
