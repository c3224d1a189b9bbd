// Self-test of the private redis-server fixtures: one server through an outage, and a three-master cluster.
import assert from "node:assert/strict";
import { test } from "node:test";
import { keySlot, RedisCluster, RedisServer } from "./redis_server.ts";

test("a private redis-server answers redis-cli, fails while stopped and comes back empty on the same port", async () => {
  await using redis = await RedisServer.start();
  assert.notEqual(redis.port, 6379, "never the machine's default Redis");
  assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);

  assert.equal(await redis.cli("SET", "greeting", "hello world"), "OK");
  assert.equal(await redis.cli("GET", "greeting"), "hello world");
  assert.equal(await redis.command("GET", "greeting"), "hello world");
  assert.equal(await redis.cli("INCR", "greeting"), "ERR value is not an integer or out of range");
  await assert.rejects(redis.command("INCR", "greeting"), /ERR value is not an integer/);

  await redis.stop();
  assert.equal(redis.running, false);
  await assert.rejects(redis.cli("PING"), /Connection refused/);
  await assert.rejects(redis.command("PING"), /ECONNREFUSED|refused/i);

  await redis.restart();
  assert.equal(redis.running, true);
  assert.equal(await redis.cli("PING"), "PONG");
  assert.equal(await redis.command("GET", "greeting"), null, "no persistence: the restarted server is empty");

  await redis.close();
  await assert.rejects(redis.cli("PING"), /Connection refused/, "close() kills it for good");
});

test("two private servers get different ports and extra arguments reach redis-server", async () => {
  await using a = await RedisServer.start();
  await using b = await RedisServer.start({ args: ["--requirepass", "s3cret"] });
  assert.notEqual(a.port, b.port);
  assert.match(await b.cli("PING"), /NOAUTH/);
  assert.equal(await b.cli("--no-auth-warning", "-a", "s3cret", "PING"), "PONG");
  await assert.rejects(RedisServer.start({ port: a.port }), /Address already in use/, "a fixed port in use fails");
});

test(
  "a cluster of 3 masters is ok, and names three channels that land on three different masters",
  { timeout: 60_000 },
  async () => {
    await using cluster = await RedisCluster.start(3);
    assert.equal(cluster.nodes.length, 3);
    assert.deepEqual(cluster.urls, cluster.nodes.map((n) => `redis://127.0.0.1:${n.port}`));
    for (const node of cluster.nodes) assert.match(await node.cli("CLUSTER", "INFO"), /cluster_state:ok/);

    for (const key of ["a", "shoal-test-0", "user:{42}:inbox", "{}x", "ünïcode"]) {
      assert.equal(keySlot(key), Number(await cluster.nodes[0].cli("CLUSTER", "KEYSLOT", key)), `slot of ${key}`);
    }

    const channels = await cluster.channelsOnDistinctShards(3);
    assert.equal(channels.length, 3);
    const owners = await Promise.all(channels.map((channel) => cluster.slotOwner(channel)));
    assert.equal(new Set(owners).size, 3, `owners ${owners} of ${channels}`);
    assert.deepEqual([...owners].sort(), cluster.nodes.map((n) => n.port).sort());

    // Sharded pub/sub follows the slot: the owner accepts SPUBLISH, another master redirects it.
    const [channel] = channels;
    const owner = cluster.nodes.find((n) => n.port === owners[0])!;
    const other = cluster.nodes.find((n) => n.port !== owners[0])!;
    assert.equal(await owner.cli("SPUBLISH", channel, "hi"), "0");
    assert.match(
      await other.cli("SPUBLISH", channel, "hi"),
      new RegExp(`MOVED ${keySlot(channel)} 127.0.0.1:${owner.port}`),
    );

    // A stopped node keeps its nodes.conf and rejoins with its slots.
    await owner.stop();
    await assert.rejects(owner.cli("PING"), /Connection refused/);
    await owner.restart();
    await cluster.waitUntilOk();
    assert.equal(await cluster.slotOwner(channel), owner.port);
  },
);
