// The client SDK (client/src, extension E6) against the real server (SHOAL_TARGET=deno|bun|binary), running inside
// the test process on its global WebSocket: subscribe and receive, ticket and JWT auth through real services, a
// server restart in the middle of a history stream, a Redis outage, and close() leaving nothing behind.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import {
  type ConnectionState,
  type Message,
  type ResubscribedEvent,
  ShoalClient,
  ShoalError,
  type ShoalErrorEvent,
} from "../../client/src/index.ts";
import { eventually, metricsText, publish } from "../support/e2e.ts";
import { freePort, RedisServer } from "../support/redis_server.ts";
import { REPO_ROOT, ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { historyKeys } from "../../src/broker/history_script.ts";

const TOKEN = "client-token";
const HISTORY = { requireAuthentication: false, history: { size: 10_000, ttl: 300 } };
const FAST = { minDelay: 0.05, maxDelay: 0.5 };

function redisBroker(url: string) {
  return { kind: "redis", url, pingInterval: 1, pingTimeout: 1, connectTimeout: 5, maxReconnectDelay: 0.5 };
}

/** A client with its states, errors and cleanup; `close()` it (or `await using`). */
function connect(url: string, options: ConstructorParameters<typeof ShoalClient>[1] = {}) {
  const client = new ShoalClient(url, { reconnect: FAST, ...options });
  const states: ConnectionState[] = [];
  const closeCodes: number[] = [];
  const errors: ShoalErrorEvent[] = [];
  client.onStateChange((state, info) => {
    states.push(state);
    if (info) closeCodes.push(info.code);
  });
  client.onError((event) => errors.push(event));
  return { client, states, closeCodes, errors, [Symbol.dispose]: () => client.close() };
}

/** Messages and re-subscribes of one subscription. */
function stream() {
  const messages: Message<number>[] = [];
  const resubscribed: ResubscribedEvent[] = [];
  return {
    messages,
    resubscribed,
    onMessage: (message: Message<number>) => messages.push(message),
    onResubscribed: (event: ResubscribedEvent) => resubscribed.push(event),
  };
}

/** Every message once, in order: data 1..count and offsets `first`.. without a gap, in one epoch. */
function assertExactlyOnce(messages: Message<number>[], count: number, first = 1): void {
  const data = messages.map((m) => m.data);
  assert.deepEqual(data.slice(0, count), Array.from({ length: count }, (_, i) => i + 1), "data 1..N once, in order");
  const offsets = messages.map((m) => m.offset);
  assert.deepEqual(offsets, Array.from({ length: messages.length }, (_, i) => first + i), "offsets without gap or repeat");
  assert.equal(new Set(messages.map((m) => m.epoch)).size, 1, "one epoch");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("client e2e: subscribe and receive; send gets the service's reply, or settles without one; ping; unsubscribe", async () => {
  await using service = await TestService.start();
  service.on("/on_message", { status: "ok", data: { echo: "pong" } });
  await using shoal = await ShoalProcess.start({
    services: {
      chat: { requireAuthentication: false, onMessage: service.url("/on_message"), extraFields: ["lang"] },
      h: HISTORY,
      quiet: { requireAuthentication: false },
    },
    publish: { token: TOKEN },
  });
  using c = connect(shoal.url);
  const chat = stream();
  const sub = c.client.subscribe<number>("chat.room", { ...chat, fields: { lang: "en" } });
  assert.deepEqual(await sub.ready, { event: "subscribe", status: "ok", lang: "en", subscription: "chat.room" });
  const history = stream();
  const ok = await c.client.subscribe<number>("h.a", history).ready;
  assert.deepEqual([ok.offset, typeof ok.epoch], [0, "string"]);
  for (let i = 1; i <= 5; i++) {
    assert.equal((await publish(shoal, [{ subscription: "chat.room", data: i }, { subscription: "h.a", data: i }], { token: TOKEN })).status, 200);
  }
  await eventually(() => chat.messages.length === 5 && history.messages.length === 5, "10 messages");
  assert.deepEqual(chat.messages.map((m) => [m.data, m.lang]), [[1, "en"], [2, "en"], [3, "en"], [4, "en"], [5, "en"]]);
  assertExactlyOnce(history.messages, 5);

  const reply = await c.client.send<{ echo: string }>("chat.room", { text: "hi" });
  assert.equal(reply?.data?.echo, "pong");
  assert.deepEqual(service.bodies("/on_message"), [{ subscription: "chat.room", lang: "en", data: { text: "hi" } }]);
  await c.client.subscribe("quiet.a", { onMessage() {} }).ready;
  assert.equal(await c.client.send("quiet.a", "no on_message"), undefined, "processed without a reply");
  await assert.rejects(c.client.send("quiet.b", 1), (e: unknown) => e instanceof ShoalError && e.error === "Subscription does not exist.");
  await assert.rejects(
    c.client.subscribe("nope.a", { onMessage() {} }).ready,
    (e: unknown) => e instanceof ShoalError && e.error === "Invalid service.",
  );
  assert.ok((await c.client.ping()) >= 0);
  assert.equal((await sub.unsubscribe())?.status, "ok");
  await publish(shoal, { subscription: "chat.room", data: 6 }, { token: TOKEN });
  await sleep(200);
  assert.equal(chat.messages.length, 5, "nothing after the unsubscribe");
  assert.deepEqual(c.states, ["connected"]);
  assert.deepEqual(c.errors, []);
});

test("client e2e: ticket auth through the service, a fresh ticket on every reconnect, before the re-subscribes", async () => {
  await using service = await TestService.start();
  service.on("/auth", { status: "ok", user: "u1" });
  service.on("/authorize", { status: "ok" });
  const port = await freePort();
  const config = {
    ws: { port },
    authentication: { ticket: { validationUrl: service.url("/auth"), authFields: ["user"] } },
    services: { books: { authorizer: service.url("/authorize") } }, // requireAuthentication by default
  };
  let first: ShoalProcess | undefined = await ShoalProcess.start(config);
  let tickets = 0;
  using c = connect(first.url, { auth: () => Promise.resolve({ ticket: `ticket-${++tickets}` }) });
  try {
    const books = stream();
    await c.client.subscribe<number>("books.1", books).ready;
    assert.deepEqual(service.bodies("/auth"), [{ ticket: "ticket-1" }]);
    assert.deepEqual(service.bodies("/authorize"), [{ subscription: "books.1", user: "u1" }]);

    await first.stop(); // SIGTERM: every WebSocket closed with 1000
    first = undefined;
    await using second = await ShoalProcess.start(config);
    await eventually(() => books.resubscribed.length === 1, "re-subscribed on the new server", { ms: 20_000 });
    assert.deepEqual(service.bodies("/auth"), [{ ticket: "ticket-1" }, { ticket: "ticket-2" }]);
    assert.deepEqual(service.bodies("/authorize").at(-1), { subscription: "books.1", user: "u1" }, "authenticated first");
    assert.equal(books.resubscribed[0].recovered, false, "no history: the app is told it may have missed messages");
    assert.equal(c.closeCodes[0], 1000);
    assert.equal(c.client.state, "connected");
    assert.equal(second.port, port);
  } finally {
    await first?.kill();
  }
});

test("client e2e: JWT auth from the provider (E2)", async () => {
  const secret = "a-test-secret-of-at-least-32-bytes!!";
  await using shoal = await ShoalProcess.start({
    authentication: { jwt: { algorithms: ["HS256"], secret, authFields: ["sub"] } },
    services: { books: {} },
  });
  using c = connect(shoal.url, { auth: () => ({ token: jwt({ sub: "u7", exp: Math.floor(Date.now() / 1000) + 60 }, secret) }) });
  await c.client.subscribe("books.1", { onMessage() {} }).ready;
  assert.deepEqual(c.errors, []);
});

test("client e2e (redis, history): a server restart in the middle of a stream: every message once and in order", async () => {
  await using redis = await RedisServer.start();
  const port = await freePort();
  const config = { services: { h: HISTORY }, publish: { token: TOKEN }, broker: redisBroker(redis.url) };
  let node: ShoalProcess | undefined = await ShoalProcess.start({ ...config, ws: { port } });
  await using publisher = await ShoalProcess.start(config); // a second node on the same Redis keeps appending
  using c = connect(node.url);
  const h = stream();
  try {
    await c.client.subscribe<number>("h.stream", h).ready;
    const total = 400;
    let published = 0;
    const publishing = (async () => {
      while (published < total) {
        const answer = await publish(publisher, { subscription: "h.stream", data: published + 1 }, { token: TOKEN });
        assert.equal(answer.status, 200);
        published++;
        await sleep(5);
      }
    })();
    await eventually(() => h.messages.length >= 100, "100 messages before the restart", { ms: 20_000 });
    await node.stop();
    node = undefined;
    const before = h.messages.length;
    node = await ShoalProcess.start({ ...config, ws: { port } });
    await publishing;
    await eventually(() => h.messages.length >= total, `${total} messages`, { ms: 30_000 });
    await sleep(200);
    assertExactlyOnce(h.messages, total);
    assert.ok(before < total, "the restart came in the middle of the stream");
    assert.deepEqual(h.resubscribed.map((e) => e.recovered), [true], "recovered from the history");
    assert.equal(c.closeCodes[0], 1000, "the shutdown's close");
  } finally {
    await node?.kill();
  }
});

test("client e2e (redis, history): a Redis outage while a service publishes: no duplicate, no hole", async () => {
  // The service appends with the history script straight to Redis (as the README shows); Redis keeps its data
  // across the restart (AOF, fsync always), as a production Redis would, so the history's epoch survives. What
  // Shoal's subscriber missed while it reconnected shows as a skipped offset: Shoal ends the subscription with
  // `Insufficient state.` and the client recovers it; or nothing was missed and the stream just goes on.
  await using redis = await RedisServer.start({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
  await using shoal = await ShoalProcess.start({
    services: { h: HISTORY },
    broker: redisBroker(redis.url),
    metrics: { prometheus: {} },
  });
  using c = connect(shoal.url);
  const h = stream();
  const sub = c.client.subscribe<number>("h.outage", h);
  await sub.ready;
  const keys = historyKeys("h.outage");
  const script = join(REPO_ROOT, "scripts", "shoal_history_publish.lua");
  /** Append `data` until Redis takes it; the idempotency key keeps a retried append single. */
  const publishOnce = async (data: number) => {
    const message = JSON.stringify({ subscription: "h.outage", data });
    for (;;) {
      const args = [keys.stream, keys.meta, keys.idempotency, ",", "h.outage", message, "10000", "300000", "PUBLISH", `k${data}`];
      // redis-cli exits 0 on an error reply (LOADING, right after the restart): only an offset means appended.
      const output = await redis.cli("--eval", script, ...args).catch(() => "");
      if (/^\d+\n/.test(output)) return;
      await sleep(20);
    }
  };
  const total = 150;
  let published = 0;
  const publishing = (async () => {
    while (published < total) await publishOnce(++published);
  })();
  await eventually(() => h.messages.length >= 40, "40 messages before the outage", { ms: 20_000 });
  await redis.stop();
  await sleep(1000);
  await redis.restart();
  await publishing;
  // A message lost live is noticed at the next one (the offset skips): publish more until all have come.
  let extra = total;
  while (h.messages.length < total) {
    await publishOnce(++extra);
    await sleep(200);
    assert.ok(
      extra < total + 100,
      `only ${h.messages.length} of ${total} messages arrived (subscription ${sub.state}); errors ` +
        `${JSON.stringify(c.errors)}\n${shoal.logs.filter((l) => l.level !== "DEBUG").map((l) => JSON.stringify(l)).join("\n")}`,
    );
  }
  await sleep(200);
  assertExactlyOnce(h.messages, total);
  assert.ok(h.resubscribed.every((e) => e.recovered), `every re-subscribe recovered: ${JSON.stringify(h.resubscribed)}`);
  const metrics = await metricsText(shoal);
  const holes = Number(/shoal_history_insufficient_state_total (\d+)/.exec(metrics)?.[1] ?? 0);
  assert.equal(h.resubscribed.length, holes, "one recovery per Insufficient state.");
  assert.deepEqual(c.states, ["connected"], "clients stay connected while Shoal reconnects to Redis");
  assert.match(metrics, /shoal_connection_count 1\b/);
});

test("client e2e: close() leaves nothing running: a process that used the client exits by itself", async () => {
  await using shoal = await ShoalProcess.start({ services: { h: HISTORY }, publish: { token: TOKEN }, metrics: { prometheus: {} } });
  const dir = mkdtempSync(join(tmpdir(), "shoal-client-"));
  try {
    const script = join(dir, "use_client.ts");
    writeFileSync(
      script,
      `import { ShoalClient } from ${JSON.stringify(join(REPO_ROOT, "client", "src", "index.ts"))};
const client = new ShoalClient(${JSON.stringify(shoal.url)}, { keepAlive: { interval: 1, timeout: 1 } });
const sub = client.subscribe("h.x", { onMessage() {} });
await sub.ready;
await client.ping();
await client.send("h.x", 1);
const pending = client.send("h.x", 2).catch((e) => e.reason);
client.close();
console.log("closed", await pending);
`,
    );
    const runtime = "Deno" in globalThis ? [process.execPath, "run", "-A", script] : [process.execPath, "run", script];
    const child = spawn(runtime[0], runtime.slice(1), { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const exit = await Promise.race([
      new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code))),
      sleep(10_000).then(() => "still running" as const),
    ]);
    if (exit === "still running") child.kill("SIGKILL");
    assert.equal(exit, 0, `the process should exit by itself once the client is closed:\n${output}`);
    assert.match(output, /closed closed/);
    await eventually(async () => /shoal_connection_count 0\b/.test(await metricsText(shoal)), "the server saw the close");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** An HS256 JWT (compact JWS). */
function jwt(claims: Record<string, unknown>, secret: string): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}
