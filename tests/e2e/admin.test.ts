// The admin API (extension E4) end to end: real Shoal processes on the memory broker (one node) and on one Redis
// (two and three nodes), real WebSocket clients, a real HTTP service for tickets and unsubscribe callbacks.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deliveredMessage, eventually, metricsText, readAnswer, type HttpAnswer } from "../support/e2e.ts";
import { RedisServer } from "../support/redis_server.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

const ADMIN = "admin-secret_token";
/** Seconds between node reports: short, so that a dead node is forgotten within the test. */
const INTERVAL = 0.5;

/** A request to the admin API: `token: null` sends no Authorization header, `authorization` sets it verbatim. */
async function admin(
  shoal: ShoalProcess,
  path: string,
  options: { body?: unknown; method?: string; token?: string | null; authorization?: string } = {},
): Promise<HttpAnswer> {
  const headers: Record<string, string> = {};
  if (options.authorization !== undefined) headers.authorization = options.authorization;
  else if (options.token !== null) headers.authorization = `Bearer ${options.token ?? ADMIN}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${shoal.httpUrl}${path}`, {
    method: options.method ?? (options.body === undefined ? "GET" : "POST"),
    headers,
    body: options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body),
    signal: AbortSignal.timeout(5000),
  });
  return readAnswer(response);
}

type NodeInfo = { id: string; runtime: string; version: string; uptime: number; connections: number; subscriptions: number; channels: number };

async function nodes(shoal: ShoalProcess): Promise<NodeInfo[]> {
  const answer = await admin(shoal, "/admin/info");
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return (answer.body as { nodes: NodeInfo[] }).nodes;
}

async function channelCounts(shoal: ShoalProcess, prefix?: string): Promise<unknown> {
  const answer = await admin(shoal, `/admin/channels${prefix === undefined ? "" : `?prefix=${encodeURIComponent(prefix)}`}`);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return (answer.body as { channels: unknown }).channels;
}

/** A test service answering tickets with `user_id` and every unsubscribe callback with ok. */
async function service(): Promise<TestService> {
  const svc = await TestService.start();
  svc.on("/before_unsubscribe", { status: "ok" }).on("/on_unsubscribe", { status: "ok" });
  return svc;
}

function config(svc: TestService, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    authentication: { ticket: { validationUrl: svc.url("/ticket"), authFields: ["user_id", "team"] } },
    services: {
      chat: {
        requireAuthentication: false,
        beforeUnsubscribe: svc.url("/before_unsubscribe"),
        onUnsubscribe: svc.url("/on_unsubscribe"),
      },
      news: { requireAuthentication: false },
      room: { requireAuthentication: false, presence: true },
    },
    admin: { token: ADMIN, reportInterval: INTERVAL },
    ...extra,
  };
}

function redisBroker(url: string) {
  return { kind: "redis", url, channelPrefix: "adm:", pingInterval: 1, pingTimeout: 1, connectTimeout: 5, maxReconnectDelay: 0.5 };
}

/** A connected client, authenticated as `user` (when given) and subscribed to `subscriptions`; its session id. */
async function client(
  shoal: ShoalProcess,
  svc: TestService,
  options: { user?: Record<string, unknown>; subscriptions?: string[] } = {},
): Promise<{ ws: WsClient; session: string }> {
  const before = shoal.logsWith("new session").length;
  const ws = await WsClient.connect(shoal.url);
  await shoal.waitForLog(() => shoal.logsWith("new session").length > before, 5000, "no new session logged");
  const session = shoal.logsWith("new session")[before].session as string;
  if (options.user) {
    svc.on("/ticket", { status: "ok", ...options.user });
    ws.send({ event: "auth", ticket: "t" });
    assert.deepEqual(await ws.next(), { event: "auth", status: "ok" });
  }
  for (const subscription of options.subscriptions ?? []) {
    ws.send({ event: "subscribe", subscription });
    assert.deepEqual(await ws.next(), { event: "subscribe", status: "ok", subscription });
  }
  return { ws, session };
}

/** The subscription names posted to a callback path, in order. */
function callbacks(svc: TestService, path: string): string[] {
  return svc.bodies(path).map((b) => (b as { subscription: string }).subscription);
}

test("admin: off without admin.token (404, and /admin paths stay WebSocket endpoints); on, every failure of the token is 401", async () => {
  await using off = await ShoalProcess.start({ services: { news: { requireAuthentication: false } } });
  for (const [path, method] of [["/admin/info", "GET"], ["/admin/disconnect", "POST"], ["/admin", "GET"]] as const) {
    const answer = await admin(off, path, { method });
    assert.equal(answer.status, 404);
    assert.match(answer.contentType ?? "", /application\/json/);
    assert.deepEqual(answer.body, { status: "error", error: "The admin API is disabled: set admin.token in the config." });
  }
  await using ws = await WsClient.connect(`${off.url}admin/info`);
  ws.send({ event: "ping", data: "still a WebSocket endpoint" });
  assert.deepEqual(await ws.next(), { event: "pong", data: "still a WebSocket endpoint" });
  assert.deepEqual(off.logsWith("shoal ready")[0].endpoints, ["/healthz", "/readyz"]);

  await using svc = await service();
  await using on = await ShoalProcess.start(config(svc));
  assert.deepEqual(on.logsWith("shoal ready")[0].endpoints, ["/healthz", "/readyz", "/admin"]);
  const refusals: [Parameters<typeof admin>[2], string][] = [
    [{ token: null }, "Missing bearer token."],
    [{ token: "wrong" }, "Invalid bearer token."],
    [{ token: `${ADMIN}x` }, "Invalid bearer token."],
    [{ authorization: `Basic ${btoa(`admin:${ADMIN}`)}` }, "Invalid Authorization header."],
    [{ authorization: "Bearer two words" }, "Invalid Authorization header."],
  ];
  for (const path of ["/admin/info", "/admin/channels", "/admin/nothing"]) {
    for (const [options, error] of refusals) {
      const answer = await admin(on, path, options);
      assert.equal(answer.status, 401, `${path} ${JSON.stringify(options)}`);
      assert.deepEqual(answer.body, { status: "error", error });
    }
  }
  for (const path of ["/admin/disconnect", "/admin/unsubscribe", "/admin/publish"]) {
    const answer = await admin(on, path, { body: { session: "x" }, token: "wrong" });
    assert.equal(answer.status, 401, path);
  }
  // The right token: an unknown path is 404, a known one with the wrong method 405.
  const unknown = await admin(on, "/admin/nothing");
  assert.equal(unknown.status, 404);
  assert.match((unknown.body as { error: string }).error, /^No such admin endpoint/);
  const wrongMethod = await admin(on, "/admin/disconnect");
  assert.deepEqual([wrongMethod.status, wrongMethod.body], [405, { status: "error", error: "Method not allowed: use POST." }]);
});

test("admin (memory broker, one node): info, channels, disconnect by auth and by session, unsubscribe, publish, metrics", async () => {
  await using svc = await service();
  await using shoal = await ShoalProcess.start(config(svc, { metrics: { prometheus: {} } }));
  const alice = await client(shoal, svc, { user: { user_id: 1, team: "red" }, subscriptions: ["chat.a", "chat.b"] });
  const aliceAgain = await client(shoal, svc, { user: { user_id: 1.0, team: "red" }, subscriptions: ["chat.a"] });
  const bob = await client(shoal, svc, { user: { user_id: 2, team: "red" }, subscriptions: ["chat.a", "news.1"] });
  const anonymous = await client(shoal, svc, { subscriptions: ["news.1"] });

  const [self] = await nodes(shoal);
  assert.equal((await nodes(shoal)).length, 1);
  assert.match(self.runtime, shoal.target === "deno" ? /^deno \d/ : /^bun \d/);
  assert.equal(self.version, "0.1.0");
  assert.ok(Number.isInteger(self.uptime) && self.uptime >= 0);
  assert.deepEqual(
    { connections: self.connections, subscriptions: self.subscriptions, channels: self.channels },
    { connections: 4, subscriptions: 6, channels: 3 },
  );
  assert.ok(alice.session.startsWith(`${self.id}-`), "a session id starts with its node's id");
  assert.deepEqual(await channelCounts(shoal), [
    { subscription: "chat.a", subscribers: 3 },
    { subscription: "chat.b", subscribers: 1 },
    { subscription: "news.1", subscribers: 2 },
  ]);
  assert.deepEqual(await channelCounts(shoal, "chat.b"), [{ subscription: "chat.b", subscribers: 1 }]);
  assert.deepEqual(await channelCounts(shoal, "x"), []);

  // Unsubscribe Bob from chat.a: his revocation frame, the callbacks, nobody else touched.
  assert.deepEqual((await admin(shoal, "/admin/unsubscribe", { body: { auth: { user_id: 2 }, subscription: "chat.a" } })).body, {
    status: "ok",
  });
  assert.deepEqual(await bob.ws.next(), { event: "unsubscribe", subscription: "chat.a", error: "Unsubscribed." });
  assert.deepEqual(callbacks(svc, "/on_unsubscribe"), ["chat.a"]);
  assert.equal((svc.bodies("/on_unsubscribe")[0] as { user_id: unknown }).user_id, 2);

  // Disconnect Alice (both her sessions, 1 == 1.0): callbacks first, then 4000 "disconnected".
  assert.deepEqual((await admin(shoal, "/admin/disconnect", { body: { auth: { user_id: 1, team: "red" } } })).body, {
    status: "ok",
  });
  assert.equal(await alice.ws.waitClosed(), 4000);
  assert.equal(alice.ws.closeReason, "disconnected");
  assert.ok(callbacks(svc, "/on_unsubscribe").includes("chat.b"), "her on_unsubscribe came before her close");
  assert.equal(await aliceAgain.ws.waitClosed(), 4000);
  const names = callbacks(svc, "/on_unsubscribe").slice(1).sort();
  assert.deepEqual(names, ["chat.a", "chat.a", "chat.b"], "every unsubscribe callback ran before the close");
  assert.deepEqual(callbacks(svc, "/before_unsubscribe").slice(1).sort(), ["chat.a", "chat.a", "chat.b"]);

  // Publish under the admin token, as POST /publish (which is off here): Bob and the anonymous client get it.
  const published = await admin(shoal, "/admin/publish", { body: { subscription: "news.1", data: "hello" } });
  assert.deepEqual([published.status, published.body], [200, { status: "ok", published: 1 }]);
  for (const c of [bob, anonymous]) {
    assert.deepEqual(deliveredMessage(await c.ws.next()), { event: "message", subscription: "news.1", data: "hello" });
  }
  assert.equal((await admin(shoal, "/admin/publish", { body: { data: 1 } })).status, 400);
  assert.equal((await admin(shoal, "/publish", { body: { subscription: "news.1", data: 1 } })).status, 404);

  // Disconnect by session id.
  assert.equal((await admin(shoal, "/admin/disconnect", { body: { session: anonymous.session } })).status, 200);
  assert.equal(await anonymous.ws.waitClosed(), 4000);
  assert.equal(bob.ws.closeCode, undefined);
  await eventually(async () => (await nodes(shoal))[0].connections === 1, "one connection left");

  const metrics = await metricsText(shoal);
  for (const [command, n] of [["info", 3], ["channels", 3], ["disconnect", 2], ["unsubscribe", 1], ["publish", 2], ["presence", 0]] as const) {
    const count = Number(metrics.match(new RegExp(`^shoal_admin_commands_total\\{command="${command}"\\} (\\d+)$`, "m"))?.[1]);
    assert.ok(count >= n, `${command}: ${count} < ${n}`);
  }
  assert.match(metrics, /^shoal_admin_commands_total\{command="disconnect"\} 2$/m);
  await bob.ws.close();
});

test("admin: bad command bodies are 400 with a reason, a large one 413; the control channel cannot be published to", async () => {
  await using svc = await service();
  await using shoal = await ShoalProcess.start(config(svc, { publish: { token: "pub" } }));
  const cases: [unknown, string][] = [
    ["not json", "Body must be a JSON object."],
    [[1], "Body must be a JSON object."],
    [{}, "Give either auth or session."],
    [{ auth: { user_id: 1 }, session: "x" }, "Give either auth or session."],
    [{ auth: {} }, "auth must be an object of at least one auth field."],
    [{ auth: [1] }, "auth must be an object of at least one auth field."],
    [{ session: 5 }, "session must be a session id (a non-empty string, as on the session's log lines)."],
    [{ session: "" }, "session must be a session id (a non-empty string, as on the session's log lines)."],
  ];
  for (const [body, error] of cases) {
    for (const path of ["/admin/disconnect", "/admin/unsubscribe"]) {
      const answer = await admin(shoal, path, { body });
      assert.deepEqual([answer.status, answer.body], [400, { status: "error", error }], `${path} ${JSON.stringify(body)}`);
    }
  }
  for (const subscription of [undefined, "", 7, "x".repeat(1025)]) {
    const answer = await admin(shoal, "/admin/unsubscribe", { body: { session: "x", subscription } });
    assert.equal(answer.status, 400);
    assert.match((answer.body as { error: string }).error, /^subscription must be a subscription name/);
  }
  const deep = await admin(shoal, "/admin/disconnect", { body: "[".repeat(200) + "]".repeat(200) });
  assert.deepEqual(deep.body, { status: "error", error: "Body must not be JSON nested deeper than 128 levels." });
  const large = await admin(shoal, "/admin/disconnect", { body: { session: "x".repeat(70_000) } });
  assert.deepEqual([large.status, large.body], [413, { status: "error", error: "Body larger than 65536 bytes." }]);
  // A message for Shoal's own control channel is refused by both publish endpoints.
  for (const [path, token] of [["/publish", "pub"], ["/admin/publish", ADMIN]] as const) {
    const answer = await admin(shoal, path, { body: { subscription: "__shoal_control", data: 1 }, token });
    assert.equal(answer.status, 400, path);
    assert.deepEqual((answer.body as { problems: string[] }).problems, ["subscription must not be Shoal's control channel"]);
  }
  // A client cannot subscribe to it either.
  await using ws = await WsClient.connect(shoal.url);
  ws.send({ event: "subscribe", subscription: "__shoal_control" });
  assert.deepEqual(await ws.next(), {
    event: "subscribe",
    subscription: "__shoal_control",
    status: "error",
    error: "Invalid subscription format.",
  });
});

test("admin (redis, two nodes): a command given to one node acts on both; callbacks run before the close", async () => {
  await using redis = await RedisServer.start();
  await using svc = await service();
  await using a = await ShoalProcess.start(config(svc, { broker: redisBroker(redis.url) }));
  await using b = await ShoalProcess.start(config(svc, { broker: redisBroker(redis.url) }));
  const onA = await client(a, svc, { user: { user_id: 1, team: "red" }, subscriptions: ["chat.a"] });
  const onB = await client(b, svc, { user: { user_id: 1, team: "blue" }, subscriptions: ["chat.a", "chat.b"] });
  const other = await client(b, svc, { user: { user_id: 2, team: "red" }, subscriptions: ["chat.a"] });
  const anon = await client(a, svc, { subscriptions: ["chat.b"] });

  // Given to a: the session on b loses chat.b with the notice; the callbacks ran.
  const unsubscribed = await admin(a, "/admin/unsubscribe", { body: { session: onB.session, subscription: "chat.b" } });
  assert.deepEqual(unsubscribed.body, { status: "ok" });
  assert.deepEqual(await onB.ws.next(), { event: "unsubscribe", subscription: "chat.b", error: "Unsubscribed." });
  assert.deepEqual(callbacks(svc, "/before_unsubscribe"), ["chat.b"]);
  assert.deepEqual(callbacks(svc, "/on_unsubscribe"), ["chat.b"]);

  // Given to b: user 1's sessions on both nodes close with 4000 after their callbacks; the others stay.
  assert.deepEqual((await admin(b, "/admin/disconnect", { body: { auth: { user_id: 1 } } })).body, { status: "ok" });
  const told = (team: string) =>
    (svc.bodies("/on_unsubscribe") as { subscription: string; team?: string }[]).some((b) => b.team === team && b.subscription === "chat.a");
  const closes = await Promise.all([[onA, "red"], [onB, "blue"]] as const).then((pairs) =>
    Promise.all(pairs.map(async ([c, team]) => {
      const code = await c.ws.waitClosed(5000);
      // Each node closes its session once that session's callbacks are done.
      return { code, reason: c.ws.closeReason, toldFirst: told(team) };
    }))
  );
  assert.deepEqual(closes, [
    { code: 4000, reason: "disconnected", toldFirst: true },
    { code: 4000, reason: "disconnected", toldFirst: true },
  ]);
  assert.deepEqual(callbacks(svc, "/on_unsubscribe").slice(1).sort(), ["chat.a", "chat.a"]);

  // By session id, to the node that does not hold it.
  assert.equal((await admin(b, "/admin/disconnect", { body: { session: anon.session } })).status, 200);
  assert.equal(await anon.ws.waitClosed(5000), 4000);
  other.ws.send({ event: "ping" });
  assert.deepEqual(await other.ws.next(), { event: "pong", data: null });
  await other.ws.close();
});

test("admin (redis, two nodes): presence of a subscription counts its sessions on every node", async () => {
  await using redis = await RedisServer.start();
  await using svc = await service();
  await using a = await ShoalProcess.start(config(svc, { broker: redisBroker(redis.url) }));
  await using b = await ShoalProcess.start(config(svc, { broker: redisBroker(redis.url) }));
  const clients = [
    await client(a, svc, { user: { user_id: 1, team: "red" }, subscriptions: ["room.1"] }),
    await client(b, svc, { user: { user_id: 1, team: "red" }, subscriptions: ["room.1"] }),
    await client(b, svc, { user: { user_id: 2, team: "blue" }, subscriptions: ["room.1", "room.2"] }),
  ];
  const answer = await admin(a, "/admin/presence?subscription=room.1");
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const { status, data } = answer.body as { status: string; data: { count: number; users: { user_id: number }[] } };
  assert.equal(status, "ok");
  assert.equal(data.count, 3);
  assert.deepEqual(data.users.map((u) => u.user_id).sort(), [1, 2], "each distinct user once");
  assert.deepEqual((await admin(b, "/admin/presence?subscription=room.9")).body, { status: "ok", data: { count: 0, users: [] } });
  const notEnabled = await admin(a, "/admin/presence?subscription=chat.1");
  assert.deepEqual([notEnabled.status, notEnabled.body], [400, { status: "error", error: "Presence not enabled." }]);
  const missing = await admin(a, "/admin/presence");
  assert.equal(missing.status, 400);
  assert.match((missing.body as { error: string }).error, /^subscription must be a subscription name/);
  for (const { ws } of clients) await ws.close(1000, 500);
});

test("admin (redis, three nodes): info and channels add up; a killed node drops out after three intervals, a stopped one at once", async () => {
  await using redis = await RedisServer.start();
  await using svc = await service();
  const interval = 1;
  const conf = config(svc, { broker: redisBroker(redis.url), admin: { token: ADMIN, reportInterval: interval } });
  await using a = await ShoalProcess.start(conf);
  await using b = await ShoalProcess.start(conf);
  await using c = await ShoalProcess.start(conf);
  const clients = [
    await client(a, svc, { subscriptions: ["chat.x"] }),
    await client(a, svc, { subscriptions: ["chat.x", "news.1"] }),
    await client(b, svc, { subscriptions: ["chat.x", "chat.y"] }),
    await client(c, svc, { subscriptions: ["news.1"] }),
    await client(c, svc),
  ];
  const want = [
    { subscription: "chat.x", subscribers: 3 },
    { subscription: "chat.y", subscribers: 1 },
    { subscription: "news.1", subscribers: 2 },
  ];
  // Every node sees the same sums once the latest reports are in (at most an interval).
  for (const shoal of [a, b, c]) {
    await eventually(async () => JSON.stringify(await channelCounts(shoal)) === JSON.stringify(want), `channels on ${shoal.port}`, {
      ms: 5000,
      every: 100,
    });
    assert.deepEqual(await channelCounts(shoal, "chat."), want.slice(0, 2));
  }
  const info = await nodes(b);
  assert.equal(info.length, 3);
  assert.deepEqual(info.map((n) => n.id), [...info.map((n) => n.id)].sort(), "by id");
  const byConnections = info.map((n) => [n.connections, n.subscriptions, n.channels]).sort();
  assert.deepEqual(byConnections, [[1, 2, 2], [2, 1, 1], [2, 3, 2]]);
  const sum = (key: "connections" | "subscriptions") => info.reduce((n, node) => n + node[key], 0);
  assert.deepEqual([sum("connections"), sum("subscriptions")], [5, 6]);

  // Killed (no goodbye): still listed right after, gone after three intervals without a report.
  const cId = (await nodes(c)).find((n) => n.connections === 2 && n.subscriptions === 1)!.id;
  const killedAt = Date.now();
  await c.kill();
  assert.ok((await nodes(a)).some((n) => n.id === cId), "still listed just after it died");
  await eventually(async () => !(await nodes(a)).some((n) => n.id === cId), "the dead node to drop out", { ms: 3 * interval * 1000 + 3000, every: 50 });
  const gone = Date.now() - killedAt;
  // Its last report came at most an interval before it died: forgotten 2 to 3 intervals after.
  assert.ok(gone >= 2 * interval * 1000 - 200, `forgotten after ${gone} ms, before three intervals`);
  assert.deepEqual(await channelCounts(a, "news."), [{ subscription: "news.1", subscribers: 1 }]);

  // Stopped (SIGTERM): it says goodbye, and is forgotten well within an interval.
  const bId = (await nodes(b)).find((n) => n.connections === 1)!.id;
  const stoppedAt = Date.now();
  const stopping = b.stop();
  await eventually(async () => !(await nodes(a)).some((n) => n.id === bId), "the stopped node to drop out", { ms: 3000, every: 20 });
  const forgotten = Date.now() - stoppedAt;
  assert.ok(forgotten < 2 * interval * 1000 - 200, `forgotten after ${forgotten} ms: on its goodbye, not by expiry`);
  assert.equal(await stopping, 0);
  assert.deepEqual((await nodes(a)).length, 1);
  for (const { ws } of clients) await ws.close(1000, 500);
});
