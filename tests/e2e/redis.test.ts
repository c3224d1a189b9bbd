// The redis broker end to end: a private redis-server per test, services publishing with redis-cli, real clients,
// outages, the alt Redis, and several Shoal processes on one Redis.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  channels,
  deliveredMessage,
  eventually,
  metricsText,
  publish,
  readyz,
  subscribed,
  waitReady,
} from "../support/e2e.ts";
import { RedisServer } from "../support/redis_server.ts";
import { REPO_ROOT, ShoalProcess, shoalCommand, shoalTarget } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

const OPEN = { open: { requireAuthentication: false } };
const TOKEN = "redis-token";

function redisBroker(url: string, extra: Record<string, unknown> = {}) {
  return { kind: "redis", url, pingInterval: 1, pingTimeout: 1, connectTimeout: 5, maxReconnectDelay: 0.5, ...extra };
}

test("redis: a message PUBLISHed with redis-cli reaches a client, with channelPrefix and db; PUBSUB is empty after", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    broker: redisBroker(`${redis.url}/3`, { channelPrefix: "app:" }),
  });
  const client = await subscribed(shoal, "open.news");
  try {
    assert.deepEqual(await channels(redis), ["app:open.news"]);
    const message = JSON.stringify({ subscription: "open.news", data: { hello: "redis" } });
    assert.equal(await redis.cli("-n", "3", "PUBLISH", "app:open.news", message), "1");
    assert.deepEqual(deliveredMessage(await client.next()), {
      event: "message",
      subscription: "open.news",
      data: { hello: "redis" },
    });
    // Unprefixed and other channels are not this subscription.
    assert.equal(await redis.cli("PUBLISH", "open.news", message), "0");
    await client.expectNothing(200);
  } finally {
    await client.close();
  }
  await eventually(async () => (await channels(redis)).length === 0, "PUBSUB CHANNELS to be empty");
});

test("redis: POST /publish goes through Redis, where every node sees it", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    publish: { token: TOKEN },
    broker: redisBroker(redis.url, { channelPrefix: "p:" }),
  });
  await using client = await subscribed(shoal, "open.a");
  assert.deepEqual(await redis.command("PUBSUB", "NUMSUB", "p:open.a"), ["p:open.a", 1]);
  assert.equal((await publish(shoal, { subscription: "open.a", data: 1 }, { token: TOKEN })).status, 200);
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.a", data: 1 });
});

test("redis: an outage keeps clients connected; readiness goes 503 then 200; channels are re-subscribed", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    broker: redisBroker(redis.url),
    metrics: { prometheus: {} },
  });
  await using before = await subscribed(shoal, "open.before");
  assert.equal(await readyz(shoal), 200);

  await redis.stop();
  await waitReady(shoal, 503);
  await shoal.waitForLog((l) => l.message === "redis connection lost");
  assert.equal((await fetch(`${shoal.httpUrl}/healthz`)).status, 200, "alive while not ready");
  const during = await metricsText(shoal);
  assert.match(during, /^shoal_service_state 0$/m);
  assert.match(during, /^shoal_broker_disconnects_total 1$/m);
  // A client that subscribes during the outage gets its OK; the channel is subscribed once Redis is back.
  await using joined = await subscribed(shoal, "open.during");
  before.send({ event: "ping", data: "still here" });
  assert.deepEqual(await before.next(), { event: "pong", data: "still here" });

  await redis.restart();
  await waitReady(shoal, 200);
  await eventually(async () => (await channels(redis)).length === 2, "both channels re-subscribed");
  assert.deepEqual(await channels(redis), ["open.before", "open.during"]);
  await redis.cli("PUBLISH", "open.before", JSON.stringify({ subscription: "open.before", data: "after" }));
  await redis.cli("PUBLISH", "open.during", JSON.stringify({ subscription: "open.during", data: "after" }));
  assert.deepEqual(deliveredMessage(await before.next()), { event: "message", subscription: "open.before", data: "after" });
  assert.deepEqual(deliveredMessage(await joined.next()), { event: "message", subscription: "open.during", data: "after" });
  assert.ok(shoal.logsWith("redis connected").length >= 1);
  assert.match(await metricsText(shoal), /^shoal_service_state 1$/m);
});

test("redis: a silent (half-open) Redis is detected by the ping health check and the connection replaced", async () => {
  await using redis = await RedisServer.start();
  await using shoal = await ShoalProcess.start({ services: OPEN, broker: redisBroker(redis.url) });
  await using client = await subscribed(shoal, "open.a");
  const pid = Number(/process_id:(\d+)/.exec(await redis.cli("INFO", "server"))![1]);
  process.kill(pid, "SIGSTOP");
  try {
    // pingInterval 1 s + pingTimeout 1 s without a byte from Redis: the connection is dropped.
    await waitReady(shoal, 503, 8000);
  } finally {
    process.kill(pid, "SIGCONT");
  }
  await waitReady(shoal, 200);
  await eventually(async () => (await channels(redis)).length === 1, "the channel re-subscribed");
  await redis.cli("PUBLISH", "open.a", JSON.stringify({ subscription: "open.a", data: "resumed" }));
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.a", data: "resumed" });
});

test("redis: onConnectionLoss \"shutdown\" closes every client with 1000, runs the callbacks and exits 0", async () => {
  await using service = await TestService.start();
  service.on("/on_unsubscribe", { status: "ok" });
  await using redis = await RedisServer.start();
  await using shoal = await ShoalProcess.start({
    services: { open: { requireAuthentication: false, onUnsubscribe: service.url("/on_unsubscribe") } },
    broker: redisBroker(redis.url, { onConnectionLoss: "shutdown" }),
  });
  await using client = await subscribed(shoal, "open.a");
  await redis.stop();
  assert.equal(await client.waitClosed(10_000), 1000);
  assert.deepEqual((await shoal.exited).code, 0);
  assert.deepEqual(service.bodies("/on_unsubscribe"), [{ subscription: "open.a" }]);
});

test("redis: start-up fails fast with exit 1 when Redis is unreachable, naming the scrubbed URL", async () => {
  await using redis = await RedisServer.start();
  const url = `redis://user:hunter2@127.0.0.1:${redis.port}/0`;
  await redis.stop();
  const dir = mkdtempSync(join(tmpdir(), "shoal-redis-down-"));
  try {
    const config = join(dir, "config.ts");
    const broker = redisBroker(url, { connectTimeout: 1 });
    writeFileSync(config, `export default ${JSON.stringify({ ws: { port: 0 }, log: { format: "json" }, broker })};\n`);
    const { cmd, args } = shoalCommand(shoalTarget(), ["-c", config]);
    const started = Date.now();
    const run = spawnSync(cmd, args, { cwd: REPO_ROOT, encoding: "utf8", timeout: 20_000 });
    assert.equal(run.status, 1, `exit code; output: ${run.stdout}${run.stderr}`);
    assert.ok(Date.now() - started < 10_000, "it gave up within the connect timeout, not later");
    assert.match(run.stdout, /cannot connect to Redis at redis:\/\/\*+:\*+@127\.0\.0\.1:\d+\/0/);
    assert.equal(`${run.stdout}${run.stderr}`.includes("hunter2"), false, "the password is scrubbed");
    assert.equal(run.stdout.includes("shoal ready"), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("redis: a wrong password, a missing password or a database Redis lacks fails start-up at once with Redis's words", async () => {
  await using redis = await RedisServer.start({ args: ["--requirepass", "sekret"] });
  const dir = mkdtempSync(join(tmpdir(), "shoal-redis-auth-"));
  try {
    const cases = [
      [`redis://:wrong@127.0.0.1:${redis.port}/0`, /WRONGPASS invalid username-password pair/],
      [`redis://127.0.0.1:${redis.port}/0`, /NOAUTH Authentication required/],
      [`redis://:sekret@127.0.0.1:${redis.port}/99`, /ERR DB index is out of range/],
    ] as const;
    for (const [url, cause] of cases) {
      const config = join(dir, "config.ts");
      // A long connect timeout: the answer must come from Redis's refusal, not from waiting it out.
      const broker = redisBroker(url, { connectTimeout: 30 });
      writeFileSync(config, `export default ${JSON.stringify({ ws: { port: 0 }, log: { format: "json" }, broker })};\n`);
      const { cmd, args } = shoalCommand(shoalTarget(), ["-c", config]);
      const started = Date.now();
      const run = spawnSync(cmd, args, { cwd: REPO_ROOT, encoding: "utf8", timeout: 40_000 });
      const output = `${run.stdout}${run.stderr}`;
      assert.equal(run.status, 1, `${url}: exit code; output: ${output}`);
      assert.ok(Date.now() - started < 10_000, `${url}: reported at once, not after the 30 s connect timeout`);
      assert.match(run.stdout, cause);
      assert.match(run.stdout, /could not connect to the broker/);
      assert.equal(output.includes("sekret") || output.includes(":wrong@"), false, "passwords are scrubbed");
      assert.equal(output.includes("shoal ready"), false);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("redis: with alt, every channel is subscribed on both servers with their prefixes; either delivers", async () => {
  await using main = await RedisServer.start();
  await using alt = await RedisServer.start();
  await using shoal = await ShoalProcess.start({
    services: OPEN,
    broker: redisBroker(main.url, { channelPrefix: "m:", alt: { url: alt.url, channelPrefix: "a:" } }),
  });
  await using client = await subscribed(shoal, "open.x");
  assert.deepEqual(await channels(main), ["m:open.x"]);
  assert.deepEqual(await channels(alt), ["a:open.x"]);
  await main.cli("PUBLISH", "m:open.x", JSON.stringify({ subscription: "open.x", data: "main" }));
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.x", data: "main" });
  await alt.cli("PUBLISH", "a:open.x", JSON.stringify({ subscription: "open.x", data: "alt" }));
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.x", data: "alt" });
  // Published to both with an order: delivered once.
  const ordered = JSON.stringify({ subscription: "open.x", data: "both", options: { order: 1 } });
  await main.cli("PUBLISH", "m:open.x", ordered);
  await alt.cli("PUBLISH", "a:open.x", ordered);
  assert.deepEqual(deliveredMessage(await client.next()), { event: "message", subscription: "open.x", data: "both" });
  await client.expectNothing(300);
});

test("redis: three Shoal processes on one Redis deliver each message exactly once to every subscriber", async () => {
  await using redis = await RedisServer.start();
  const nodes = await Promise.all([1, 2, 3].map(() => ShoalProcess.start({ services: OPEN, broker: redisBroker(redis.url) })));
  const clients: WsClient[] = [];
  try {
    for (const node of nodes) for (let i = 0; i < 2; i++) clients.push(await subscribed(node, "open.fan"));
    clients.push(await subscribed(nodes[0], "open.other"));
    assert.deepEqual(await redis.command("PUBSUB", "NUMSUB", "open.fan"), ["open.fan", 3], "one SUBSCRIBE per node");
    for (let n = 1; n <= 5; n++) {
      await redis.cli("PUBLISH", "open.fan", JSON.stringify({ subscription: "open.fan", data: n }));
    }
    for (const client of clients.slice(0, 6)) {
      const got = [];
      for (let n = 1; n <= 5; n++) got.push((await client.next()).data);
      assert.deepEqual(got, [1, 2, 3, 4, 5]);
      await client.expectNothing(0);
    }
    await clients[6].expectNothing(200);
    for (const client of clients) await client.expectNothing(0);
  } finally {
    for (const client of clients) await client.close();
    await Promise.all(nodes.map((node) => node.kill()));
  }
});
