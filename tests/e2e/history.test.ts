// History and recovery (extension E1) end to end: the real server, real clients, real Redis; several nodes; the
// service-side Lua script through redis-cli; publishing that goes on while a client recovers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { eventually, metricsText, publish, readyz, waitReady } from "../support/e2e.ts";
import { RedisCluster, RedisServer } from "../support/redis_server.ts";
import { UpstashServer } from "../support/upstash_server.ts";
import { REPO_ROOT, ShoalProcess } from "../support/shoal_process.ts";
import { type Frame, WsClient } from "../support/ws_client.ts";
import { join } from "node:path";
import { historyKeys } from "../../src/broker/history_script.ts";

const TOKEN = "history-token";
const services = (size = 1000, ttl = 300) => ({
  h: { requireAuthentication: false, history: { size, ttl } },
  plain: { requireAuthentication: false },
});

function redisBroker(url: string) {
  return { kind: "redis", url, pingInterval: 1, pingTimeout: 1, connectTimeout: 5, maxReconnectDelay: 0.5 };
}

/** Subscribe (with `recover` when given) and return the OK. */
async function subscribe(client: WsClient, subscription: string, recover?: { offset: number; epoch: string }): Promise<Frame> {
  client.send({ event: "subscribe", subscription, ...(recover ? { recover } : {}) });
  const ok = await client.next(5000);
  assert.equal(ok.status, "ok", JSON.stringify(ok));
  return ok;
}

/** Read message frames until `count` have come (failing on anything else); their offsets and data. */
async function take(client: WsClient, count: number, timeoutMs = 10_000): Promise<Frame[]> {
  const frames: Frame[] = [];
  while (frames.length < count) {
    const frame = await client.next(timeoutMs);
    assert.equal(frame.event, "message", JSON.stringify(frame));
    frames.push(frame);
  }
  return frames;
}

/** Every offset from `from` to `to` exactly once, in order. */
function assertContiguous(frames: Frame[], from: number, to: number, epoch: string): void {
  assert.equal(frames.length, to - from + 1, `${frames.length} frames for offsets ${from}..${to}`);
  frames.forEach((frame, i) => {
    assert.equal(frame.offset, from + i, `frame ${i}: ${JSON.stringify(frame)}`);
    assert.equal(frame.epoch, epoch);
  });
}

test("history (memory): /publish appends and answers positions; an idempotency key appends once; recovery replays", async () => {
  await using shoal = await ShoalProcess.start({ services: services(), publish: { token: TOKEN }, metrics: { prometheus: {} } });
  await using client = await WsClient.connect(shoal.url);
  const ok = await subscribe(client, "h.a");
  assert.equal(ok.offset, 0);
  const epoch = ok.epoch as string;

  const answer = await publish(shoal, [
    { subscription: "h.a", data: 1, idempotency_key: "k1" },
    { subscription: "plain.a", data: "plain" },
  ], { token: TOKEN });
  assert.deepEqual(answer.body, { status: "ok", published: 2, positions: [{ offset: 1, epoch }, null] });
  const retry = await publish(shoal, { subscription: "h.a", data: 1, idempotency_key: "k1" }, { token: TOKEN });
  assert.deepEqual(retry.body, { status: "ok", published: 1, positions: [{ offset: 1, epoch, duplicate: true }] });
  const [first] = await take(client, 1);
  assert.deepEqual([first.data, first.offset, first.epoch, "idempotency_key" in first], [1, 1, epoch, false]);
  await client.expectNothing(200); // the retry published nothing

  const bad = await publish(shoal, { subscription: "h.a", data: 1, idempotency_key: 7 }, { token: TOKEN });
  assert.equal(bad.status, 400);
  assert.deepEqual((bad.body as { problems?: unknown }).problems, ["idempotency_key must be a string of 1 to 256 characters"]);

  await client.close();
  for (let i = 2; i <= 20; i++) await publish(shoal, { subscription: "h.a", data: i }, { token: TOKEN });
  await using back = await WsClient.connect(shoal.url);
  const recovered = await subscribe(back, "h.a", { offset: 1, epoch });
  assert.deepEqual(recovered, { event: "subscribe", status: "ok", subscription: "h.a", offset: 20, epoch, recovered: true });
  assertContiguous(await take(back, 19), 2, 20, epoch);
  const metrics = await metricsText(shoal);
  assert.match(metrics, /shoal_recoveries_total\{result="recovered"\} 1/);
  assert.match(metrics, /shoal_history_replayed_messages_total 19/);
  assert.match(metrics, /shoal_history_append_duration_seconds_count 21/, "20 appends and the retry");
});

test("history (memory): a restarted server is a new epoch: recovered false, no replay", async () => {
  const config = { services: services(), publish: { token: TOKEN } };
  let epoch: string;
  {
    await using shoal = await ShoalProcess.start(config);
    await using client = await WsClient.connect(shoal.url);
    epoch = (await subscribe(client, "h.a")).epoch as string;
    await publish(shoal, { subscription: "h.a", data: 1 }, { token: TOKEN });
    await take(client, 1);
  }
  await using shoal = await ShoalProcess.start(config);
  await using client = await WsClient.connect(shoal.url);
  const ok = await subscribe(client, "h.a", { offset: 1, epoch });
  assert.equal(ok.recovered, false);
  assert.notEqual(ok.epoch, epoch);
  await client.expectNothing(200);
});

test("history (redis, two nodes): 500 messages via /publish and via the script reach a client that recovers on the other node", async () => {
  await using redis = await RedisServer.start();
  const url = `redis://127.0.0.1:${redis.port}/0`;
  const config = { services: services(), publish: { token: TOKEN }, broker: redisBroker(url) };
  await using a = await ShoalProcess.start(config);
  await using b = await ShoalProcess.start(config);
  await using client = await WsClient.connect(a.url);
  const ok = await subscribe(client, "h.a");
  const epoch = ok.epoch as string;
  await client.close();

  const script = join(REPO_ROOT, "scripts", "shoal_history_publish.lua");
  for (let i = 1; i <= 500; i++) {
    const message = JSON.stringify({ subscription: "h.a", data: i });
    if (i % 2 === 1) {
      const answer = await publish(a, JSON.parse(message), { token: TOKEN });
      assert.equal(answer.status, 200);
    } else {
      const keys = historyKeys("h.a");
      await redis.cli("--eval", script, keys.stream, keys.meta, keys.idempotency, ",", "h.a", message, "1000", "300000", "PUBLISH");
    }
  }
  await using back = await WsClient.connect(b.url);
  const recovered = await subscribe(back, "h.a", { offset: 0, epoch });
  assert.deepEqual([recovered.recovered, recovered.offset, recovered.epoch], [true, 500, epoch]);
  const frames = await take(back, 500);
  assertContiguous(frames, 1, 500, epoch);
  assert.deepEqual(frames.map((f) => f.data), Array.from({ length: 500 }, (_, i) => i + 1));
  await publish(b, { subscription: "h.a", data: "live" }, { token: TOKEN });
  const [live] = await take(back, 1);
  assert.deepEqual([live.data, live.offset], ["live", 501]);
});

test("history (redis, two nodes): publishing at ~1,000 msg/s goes on during the recovery: every offset exactly once", async () => {
  await using redis = await RedisServer.start();
  const url = `redis://127.0.0.1:${redis.port}/0`;
  const config = { services: services(5000), publish: { token: TOKEN }, broker: redisBroker(url) };
  await using a = await ShoalProcess.start(config);
  await using b = await ShoalProcess.start(config);
  await using client = await WsClient.connect(a.url);
  const epoch = (await subscribe(client, "h.a")).epoch as string;
  let published = 0;
  let stop = false;
  // ~1,000 msg/s: batches of 10 every 10 ms, through node A.
  const publisher = (async () => {
    while (!stop) {
      const batch = Array.from({ length: 10 }, () => ({ subscription: "h.a", data: ++published }));
      const answer = await publish(a, batch, { token: TOKEN });
      assert.equal(answer.status, 200);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  const before = await take(client, 300);
  const last = before.at(-1)!.offset as number;
  await client.close(); // the network drops while publishing goes on
  await new Promise((resolve) => setTimeout(resolve, 500));
  await using back = await WsClient.connect(b.url);
  const ok = await subscribe(back, "h.a", { offset: last, epoch });
  assert.equal(ok.recovered, true);
  // Everything after `last`: the replay, then the live stream, without a gap or a duplicate across the seam.
  const after = await take(back, 1000);
  stop = true;
  await publisher;
  assertContiguous([...before, ...after], 1, last + 1000, epoch);
});

test("history (redis): Redis restarted without persistence → a new epoch, recovered false; the TTL expires a history", async () => {
  await using redis = await RedisServer.start();
  const url = `redis://127.0.0.1:${redis.port}/0`;
  await using shoal = await ShoalProcess.start({ services: services(100, 1), publish: { token: TOKEN }, broker: redisBroker(url) });
  await using client = await WsClient.connect(shoal.url);
  const { epoch } = await subscribe(client, "h.a");
  await publish(shoal, { subscription: "h.a", data: 1 }, { token: TOKEN });
  await take(client, 1);
  await client.close();

  // Redis restarts without persistence (the test servers run with --save "" and no AOF): the history is gone.
  await redis.stop();
  await redis.restart();
  await waitReady(shoal, 200);
  await using back = await WsClient.connect(shoal.url);
  const ok = await subscribe(back, "h.a", { offset: 1, epoch: epoch as string });
  assert.deepEqual([ok.recovered, ok.offset], [false, 0]);
  assert.notEqual(ok.epoch, epoch);
  await back.close();

  await publish(shoal, { subscription: "h.a", data: 2 }, { token: TOKEN });
  await new Promise((resolve) => setTimeout(resolve, 1500)); // ttl 1 s
  await using late = await WsClient.connect(shoal.url);
  const expired = await subscribe(late, "h.a", { offset: 0, epoch: ok.epoch as string });
  assert.equal(expired.recovered, false);
  assert.notEqual(expired.epoch, ok.epoch);
});


test("history (redis-cluster, sharded, two nodes): keys on the channel's slot; recovery on the other node; a node restart that lost the history ends the subscription, and recovery says false", async () => {
  await using cluster = await RedisCluster.start(3);
  const [name] = await cluster.channelsOnDistinctShards(1, "h.");
  const broker = { kind: "redis-cluster", nodes: cluster.urls, sharded: true, pingInterval: 1, pingTimeout: 1, connectTimeout: 10, maxReconnectDelay: 0.5 };
  const config = { services: services(), publish: { token: TOKEN }, broker };
  await using a = await ShoalProcess.start(config);
  await using b = await ShoalProcess.start(config);
  await using first = await WsClient.connect(a.url);
  const epoch = (await subscribe(first, name)).epoch as string;
  await first.close();
  for (let i = 1; i <= 100; i++) assert.equal((await publish(a, { subscription: name, data: i }, { token: TOKEN })).status, 200);
  const keys = historyKeys(name);
  const slot = await cluster.nodes[0].cli("CLUSTER", "KEYSLOT", name);
  for (const key of [keys.stream, keys.meta, keys.idempotency]) assert.equal(await cluster.nodes[0].cli("CLUSTER", "KEYSLOT", key), slot);

  await using client = await WsClient.connect(b.url);
  const ok = await subscribe(client, name, { offset: 0, epoch });
  assert.deepEqual([ok.recovered, ok.offset], [true, 100]);
  assertContiguous(await take(client, 100), 1, 100, epoch);

  // The shard owning the slot restarts without persistence: the history is gone, and the next append begins a
  // new epoch, which the subscribed client cannot follow.
  const ownerPort = await cluster.slotOwner(name);
  const node = cluster.nodes.find((n) => n.port === ownerPort)!;
  await node.stop();
  await node.restart();
  await cluster.waitUntilOk();
  await eventually(async () => (await readyz(a)) === 200 && (await readyz(b)) === 200, "both nodes ready again", { ms: 20_000, every: 50 });
  await eventually(async () => (await publish(a, { subscription: name, data: "after" }, { token: TOKEN })).status === 200, "a publish after the restart", { ms: 10_000, every: 100 });
  assert.deepEqual(await client.next(10_000), { event: "unsubscribe", subscription: name, error: "Insufficient state." });
  const again = await subscribe(client, name, { offset: 100, epoch });
  assert.equal(again.recovered, false);
  assert.notEqual(again.epoch, epoch);
});

test("history (upstash): appends and reads go through the REST API; a client recovers what it missed", async () => {
  await using redis = await RedisServer.start();
  await using upstash = await UpstashServer.start({ redisUrl: redis.url, token: "up-token" });
  await using shoal = await ShoalProcess.start({
    services: services(),
    publish: { token: TOKEN },
    broker: { kind: "upstash", url: upstash.url, token: "up-token", channelPrefix: "u:", maxReconnectDelay: 0.5 },
  });
  await using client = await WsClient.connect(shoal.url);
  const epoch = (await subscribe(client, "h.up")).epoch as string;
  await publish(shoal, { subscription: "h.up", data: 1 }, { token: TOKEN });
  const [live] = await take(client, 1);
  assert.deepEqual([live.offset, live.epoch], [1, epoch]);
  await client.close();
  for (let i = 2; i <= 30; i++) await publish(shoal, { subscription: "h.up", data: i }, { token: TOKEN });
  await using back = await WsClient.connect(shoal.url);
  const ok = await subscribe(back, "h.up", { offset: 1, epoch });
  assert.deepEqual([ok.recovered, ok.offset], [true, 30]);
  assertContiguous(await take(back, 29), 2, 30, epoch);
});

test("history: a SocketShark client on a service without history sees exactly SocketShark's frames, recover or not", async () => {
  await using shoal = await ShoalProcess.start({ services: services(), publish: { token: TOKEN } });
  await using client = await WsClient.connect(shoal.url);
  client.send({ event: "subscribe", subscription: "plain.a" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "plain.a" });
  client.send({ event: "subscribe", subscription: "plain.b", recover: { offset: 1, epoch: "x" } });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "plain.b" });
  const answer = await publish(shoal, { subscription: "plain.a", data: 1 }, { token: TOKEN });
  assert.deepEqual(answer.body, { status: "ok", published: 1 }, "no positions for a service without history");
  const frame = await client.next();
  assert.deepEqual(Object.keys(frame).sort(), ["data", "event", "queue_size", "received_at", "sent_at", "subscription"]);
});

test("history: the publish API refuses what a history could not deliver; the script takes an empty idempotency key as none", async () => {
  await using redis = await RedisServer.start();
  const url = `redis://127.0.0.1:${redis.port}/0`;
  await using shoal = await ShoalProcess.start({ services: services(), publish: { token: TOKEN }, broker: redisBroker(url) });
  let deep: unknown = 1;
  for (let i = 0; i < 127; i++) deep = [deep]; // with the message object: 128 levels, 129 in the envelope
  const tooDeep = await publish(shoal, { subscription: "h.a", data: deep }, { token: TOKEN });
  assert.equal(tooDeep.status, 400);
  assert.deepEqual((tooDeep.body as { problems?: unknown }).problems, ["a history message must not be nested deeper than 127 levels"]);
  const plainDeep = await publish(shoal, { subscription: "plain.a", data: deep }, { token: TOKEN });
  assert.equal(plainDeep.status, 200, "a service without history keeps SocketShark's 128");
  const lone = await publish(shoal, '{"subscription":"h.\\ud800","data":1}', { token: TOKEN });
  assert.equal(lone.status, 400);
  assert.deepEqual((lone.body as { problems?: unknown }).problems, ["subscription must be well-formed text (no lone surrogates)"]);

  const keys = historyKeys("h.b");
  const script = join(REPO_ROOT, "scripts", "shoal_history_publish.lua");
  const answers: string[] = [];
  for (let i = 1; i <= 3; i++) {
    const message = JSON.stringify({ subscription: "h.b", data: i });
    answers.push(await redis.cli("--eval", script, keys.stream, keys.meta, keys.idempotency, ",", "h.b", message, "100", "60000", "PUBLISH", ""));
  }
  assert.deepEqual(answers.map((a) => a.split("\n")[0]), ["1", "2", "3"], "no key: three appends");
});
