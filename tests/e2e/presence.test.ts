// Presence (extension E3) end to end: real Shoal processes, real WebSocket clients, a real Redis (one, three nodes
// on it, a sharded cluster) and the Upstash stand-in. Counts and users through connect/disconnect churn, join and
// leave frames across nodes, a node killed with SIGKILL dropping out within 3 refresh intervals, the errors, and
// services without presence unchanged.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SignJWT } from "jose";
import { RedisBroker } from "../../src/broker/redis_broker.ts";
import { parseConfig } from "../../src/config.ts";
import { eventually, metricsText, publish } from "../support/e2e.ts";
import { RedisCluster, RedisServer } from "../support/redis_server.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { UpstashServer } from "../support/upstash_server.ts";
import { type Frame, WsClient } from "../support/ws_client.ts";

const SECRET = "presence-e2e-secret-of-enough-length";
const TOKEN = "presence-token";
/** Short, so that a dead node drops out within 3 × 0.5 s. */
const REFRESH = 0.5;

const services = {
  room: { presence: { joinLeave: true, refreshInterval: REFRESH } },
  quiet: { presence: true },
  plain: { requireAuthentication: false },
};

function config(broker?: Record<string, unknown>): Record<string, unknown> {
  return {
    authentication: { jwt: { algorithms: ["HS256"], secret: SECRET, authFields: ["user_id", "name"] } },
    services,
    publish: { token: TOKEN },
    metrics: { prometheus: {} },
    // Debug lines for thousands of frames slow the servers down for nothing here.
    log: { level: "info", format: "json" },
    ...(broker ? { broker } : {}),
  };
}

function redisBroker(url: string): Record<string, unknown> {
  return { kind: "redis", url, pingInterval: 1, pingTimeout: 1, connectTimeout: 5, maxReconnectDelay: 0.5 };
}

interface User {
  readonly user_id: number;
  readonly name: string;
}

const user = (id: number): User => ({ user_id: id, name: `user ${id}` });

/** A connected, authenticated client that keeps presence notices apart from replies. */
class Member {
  readonly notices: Frame[] = [];
  private constructor(readonly client: WsClient, readonly user: User) {}

  static async connect(shoal: ShoalProcess, who: User): Promise<Member> {
    const client = await WsClient.connect(shoal.url);
    const member = new Member(client, who);
    const token = await new SignJWT({ ...who }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("10m")
      .sign(new TextEncoder().encode(SECRET));
    assert.deepEqual(await member.request({ event: "auth", method: "jwt", token }), { event: "auth", status: "ok" });
    return member;
  }

  /** Send an event and return its reply; notices arriving meanwhile are kept. */
  async request(event: Record<string, unknown>): Promise<Frame> {
    this.client.send(event);
    for (;;) {
      const frame = await this.client.next(10_000);
      if (frame.event === "join" || frame.event === "leave") this.notices.push(frame);
      else return frame;
    }
  }

  async subscribe(subscription: string): Promise<void> {
    const ok = await this.request({ event: "subscribe", subscription });
    assert.deepEqual(ok, { event: "subscribe", status: "ok", subscription });
  }

  async presence(subscription: string): Promise<{ count: number; users: User[] }> {
    const reply = await this.request({ event: "presence", subscription });
    assert.equal(reply.status, "ok", JSON.stringify(reply));
    assert.deepEqual(Object.keys(reply), ["event", "subscription", "status", "data"]);
    const data = reply.data as { count: number; users: User[] };
    return { count: data.count, users: sorted(data.users) };
  }

  /** Wait until `count` notices have come (beyond those already kept), and take them all. */
  async takeNotices(count: number, timeoutMs = 5000): Promise<Frame[]> {
    const end = Date.now() + timeoutMs;
    while (this.notices.length < count) {
      const frame = await this.client.next(Math.max(1, end - Date.now()));
      assert.ok(frame.event === "join" || frame.event === "leave", `a notice, got ${JSON.stringify(frame)}`);
      this.notices.push(frame);
    }
    return this.notices.splice(0);
  }

  close(): Promise<number | undefined> {
    return this.client.close();
  }
}

const sorted = (users: readonly User[]) => [...users].sort((a, b) => a.user_id - b.user_id);
/** Each distinct user of these members once, sorted. */
const usersOf = (members: readonly Member[]) => sorted([...new Map(members.map((m) => [m.user.user_id, m.user])).values()]);
const noticeKey = (f: Frame) => `${f.event}:${(f.data as User).user_id}`;

/** A deterministic sequence in [0, 1). */
function random(seed: number): () => number {
  let state = seed;
  return () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

test("presence (memory): counts and users through connect/disconnect churn; notices; errors; metrics", async () => {
  await using shoal = await ShoalProcess.start(config());
  const watcher = await Member.connect(shoal, user(0));
  await watcher.subscribe("room.1");
  const members: Member[] = [];
  const next = random(7);
  let id = 1;
  try {
    for (let round = 0; round < 4; round++) {
      const joined: Member[] = [];
      for (let i = 0; i < 8; i++) {
        // 5 users spread over the sessions: several sessions per user.
        const member = await Member.connect(shoal, user(1 + Math.floor(next() * 5)));
        await member.subscribe("room.1");
        joined.push(member);
        id++;
      }
      members.push(...joined);
      const leaving = members.filter(() => next() < 0.4);
      await Promise.all(leaving.map((m) => m.close()));
      for (const m of leaving) members.splice(members.indexOf(m), 1);
      const expected = [...joined.map((m) => `join:${m.user.user_id}`), ...leaving.map((m) => `leave:${m.user.user_id}`)];
      const notices = await watcher.takeNotices(expected.length);
      assert.deepEqual(notices.map(noticeKey).sort(), expected.sort(), `round ${round}`);
      assert.ok(notices.every((f) => f.subscription === "room.1" && Object.keys(f).join() === "event,subscription,data"));
      const everyone = [watcher, ...members];
      assert.deepEqual(await watcher.presence("room.1"), { count: everyone.length, users: usersOf(everyone) }, `round ${round}`);
    }
    // Every member sees the same.
    for (const member of members.slice(0, 3)) {
      assert.deepEqual(await member.presence("room.1"), { count: members.length + 1, users: usersOf([watcher, ...members]) });
    }
    // An unsubscribe leaves at once; the session is no longer subscribed.
    const [first] = members;
    assert.deepEqual(await first.request({ event: "unsubscribe", subscription: "room.1" }), {
      event: "unsubscribe",
      status: "ok",
      subscription: "room.1",
    });
    assert.deepEqual((await watcher.takeNotices(1)).map(noticeKey), [`leave:${first.user.user_id}`]);
    assert.equal((await watcher.presence("room.1")).count, members.length);
    assert.deepEqual(await first.request({ event: "presence", subscription: "room.1" }), {
      event: "presence",
      status: "error",
      error: "Not subscribed.",
      subscription: "room.1",
    });
    assert.deepEqual(await first.request({ event: "presence", subscription: "plain.1" }), {
      event: "presence",
      status: "error",
      error: "Presence not enabled.",
      subscription: "plain.1",
    });
    assert.deepEqual(await first.request({ event: "presence", subscription: "nope.1" }), {
      event: "presence",
      status: "error",
      error: "Invalid service.",
      subscription: "nope.1",
    });
    assert.deepEqual(await first.request({ event: "presence" }), { event: "presence", status: "error", error: "Invalid subscription format." });
    const metrics = await metricsText(shoal);
    assert.match(metrics, new RegExp(`shoal_presence_queries_total\\{source="event"\\} ${4 + 3 + 1}\\b`));
    assert.match(metrics, /shoal_presence_queries_total\{source="api"\} 0/);
    assert.match(metrics, /shoal_event_success_counter\{event="presence",status="error"\} 4/);
  } finally {
    await Promise.all([watcher, ...members].map((m) => m.close()));
  }
});

test("presence (memory): presence: true has no notices; a service without presence sees exactly what it saw before", async () => {
  await using shoal = await ShoalProcess.start(config());
  const a = await Member.connect(shoal, user(1));
  const b = await Member.connect(shoal, user(2));
  await using plain = await WsClient.connect(shoal.url);
  try {
    await a.subscribe("quiet.1");
    await b.subscribe("quiet.1");
    plain.send({ event: "subscribe", subscription: "plain.1" });
    assert.deepEqual(await plain.next(), { event: "subscribe", status: "ok", subscription: "plain.1" });
    assert.deepEqual(await a.presence("quiet.1"), { count: 2, users: [user(1), user(2)] });
    await b.close();
    await eventually(async () => (await a.presence("quiet.1")).count === 1, "b gone");
    await publish(shoal, [{ subscription: "plain.1", data: "x" }, { subscription: "quiet.1", data: "y" }], { token: TOKEN });
    const message = await plain.next();
    assert.deepEqual([message.event, message.data], ["message", "x"]);
    const quiet = await a.client.next();
    assert.deepEqual([quiet.event, quiet.data], ["message", "y"]);
    assert.deepEqual(a.notices, []);
    await a.client.expectNothing(300);
    await plain.expectNothing(300);
  } finally {
    await a.close();
  }
});

test("presence (redis, two nodes): every node counts every node's sessions; notices cross nodes", async () => {
  await using redis = await RedisServer.start();
  await using one = await ShoalProcess.start(config(redisBroker(redis.url)));
  await using two = await ShoalProcess.start(config(redisBroker(redis.url)));
  const a = await Member.connect(one, user(1));
  const b = await Member.connect(two, user(2));
  const members: Member[] = [];
  try {
    await a.subscribe("room.x");
    await b.subscribe("room.x");
    assert.deepEqual((await a.takeNotices(1)).map(noticeKey), ["join:2"]);
    for (let i = 0; i < 10; i++) {
      const member = await Member.connect(i % 2 ? one : two, user(3 + (i % 4)));
      await member.subscribe("room.x");
      members.push(member);
    }
    const everyone = [a, b, ...members];
    const expected = { count: everyone.length, users: usersOf(everyone) };
    assert.deepEqual(await a.presence("room.x"), expected);
    assert.deepEqual(await b.presence("room.x"), expected);
    assert.equal((await a.takeNotices(10)).length, 10);
    assert.equal((await b.takeNotices(10)).length, 10);
    // Leaving on one node is seen on the other, at once (no expiry involved).
    await Promise.all(members.slice(0, 5).map((m) => m.close()));
    assert.deepEqual((await b.takeNotices(5)).map((f) => f.event), Array(5).fill("leave"));
    const rest = [a, b, ...members.slice(5)];
    assert.deepEqual(await a.presence("room.x"), { count: rest.length, users: usersOf(rest) });
    assert.deepEqual(await b.presence("room.x"), { count: rest.length, users: usersOf(rest) });
    // Redis holds the entries under the channel's hash tag.
    assert.equal(await redis.command("HLEN", "shoal:presence:{room.x}"), rest.length);
    assert.equal(await redis.command("ZCARD", "shoal:presence-expiry:{room.x}"), rest.length);
  } finally {
    await Promise.all([a, b, ...members].map((m) => m.close()));
  }
  await eventually(async () => (await redis.command("EXISTS", "shoal:presence:{room.x}")) === 0, "entries removed on leave");
});

test("presence (redis, three nodes): a node killed with SIGKILL drops out within 3 refresh intervals, with leaves", async () => {
  await using redis = await RedisServer.start();
  await using one = await ShoalProcess.start(config(redisBroker(redis.url)));
  await using two = await ShoalProcess.start(config(redisBroker(redis.url)));
  const three = await ShoalProcess.start(config(redisBroker(redis.url)));
  const watchers = [await Member.connect(one, user(1)), await Member.connect(two, user(2))];
  const doomed: Member[] = [];
  try {
    for (const watcher of watchers) await watcher.subscribe("room.k");
    for (let i = 0; i < 6; i++) {
      const member = await Member.connect(three, user(10 + i));
      await member.subscribe("room.k");
      doomed.push(member);
    }
    await watchers[0].takeNotices(7);
    await watchers[1].takeNotices(6);
    assert.equal((await watchers[0].presence("room.k")).count, 8);
    // Let the dying node refresh at least once, so this measures expiry rather than the first write.
    await new Promise((resolve) => setTimeout(resolve, REFRESH * 1000 * 1.2));
    await three.kill(); // SIGKILL: no cleanup
    const killed = Date.now();
    let gone = 0;
    await eventually(async () => {
      const { count } = await watchers[0].presence("room.k");
      gone = Date.now() - killed;
      return count === 2;
    }, "the dead node's sessions to drop out", { ms: 10_000, every: 50 });
    assert.ok(gone <= 3 * REFRESH * 1000 + 500, `dropped out ${gone} ms after the kill`);
    assert.deepEqual(await watchers[1].presence("room.k"), { count: 2, users: [user(1), user(2)] });
    // Each of its sessions gets one leave on every live node, from whichever node purged it.
    for (const watcher of watchers) {
      const leaves = await watcher.takeNotices(6, 3 * REFRESH * 1000 + 3000);
      assert.deepEqual(leaves.map(noticeKey).sort(), doomed.map((m) => `leave:${m.user.user_id}`).sort());
    }
    await watchers[0].client.expectNothing(REFRESH * 1000 * 2);
  } finally {
    await three.kill();
    await Promise.all([...watchers, ...doomed].map((m) => m.close()));
  }
});

test("presence (redis): a node that stops gracefully removes its entries at once, with leaves", async () => {
  await using redis = await RedisServer.start();
  await using one = await ShoalProcess.start(config(redisBroker(redis.url)));
  const two = await ShoalProcess.start(config(redisBroker(redis.url)));
  const watcher = await Member.connect(one, user(1));
  const leaving = await Member.connect(two, user(2));
  try {
    await watcher.subscribe("room.g");
    await leaving.subscribe("room.g");
    await watcher.takeNotices(1);
    const stopped = Date.now();
    assert.equal(await two.stop("SIGTERM"), 0);
    assert.deepEqual((await watcher.takeNotices(1)).map(noticeKey), ["leave:2"]);
    assert.ok(Date.now() - stopped < 3 * REFRESH * 1000, "before any expiry");
    assert.deepEqual(await watcher.presence("room.g"), { count: 1, users: [user(1)] });
  } finally {
    await two.kill();
    await Promise.all([watcher, leaving].map((m) => m.close()));
  }
});

test("presence (redis-cluster, sharded): keys on the channel's slot; two nodes agree", async () => {
  await using cluster = await RedisCluster.start(3);
  const broker = { kind: "redis-cluster", nodes: cluster.urls, sharded: true, pingInterval: 1, pingTimeout: 1, connectTimeout: 10, maxReconnectDelay: 0.5 };
  await using one = await ShoalProcess.start(config(broker));
  await using two = await ShoalProcess.start(config(broker));
  const a = await Member.connect(one, user(1));
  const b = await Member.connect(two, user(2));
  try {
    for (const name of ["room.c1", "room.{tag}.c2"]) {
      await a.subscribe(name);
      await b.subscribe(name);
      assert.deepEqual((await a.takeNotices(1)).map(noticeKey), ["join:2"]);
      assert.deepEqual(await a.presence(name), { count: 2, users: [user(1), user(2)] });
      assert.deepEqual(await b.presence(name), { count: 2, users: [user(1), user(2)] });
      await b.request({ event: "unsubscribe", subscription: name });
      assert.deepEqual((await a.takeNotices(1)).map(noticeKey), ["leave:2"]);
    }
  } finally {
    await Promise.all([a, b].map((m) => m.close()));
  }
});

test("presence (upstash): the same scripts over REST; notices through its streams", async () => {
  await using redis = await RedisServer.start();
  await using upstash = await UpstashServer.start({ redisUrl: redis.url, token: "up-token" });
  const broker = { kind: "upstash", url: upstash.url, token: "up-token", connectTimeout: 5, maxReconnectDelay: 0.5 };
  await using shoal = await ShoalProcess.start(config(broker));
  const a = await Member.connect(shoal, user(1));
  const b = await Member.connect(shoal, user(2));
  try {
    await a.subscribe("room.u");
    await b.subscribe("room.u");
    assert.deepEqual((await a.takeNotices(1)).map(noticeKey), ["join:2"]);
    assert.deepEqual(await b.presence("room.u"), { count: 2, users: [user(1), user(2)] });
    assert.equal(await redis.command("HLEN", "shoal:presence:{room.u}"), 2);
    await b.close();
    assert.deepEqual((await a.takeNotices(1)).map(noticeKey), ["leave:2"]);
    assert.deepEqual(await a.presence("room.u"), { count: 1, users: [user(1)] });
  } finally {
    await Promise.all([a, b].map((m) => m.close()));
  }
});

test("presence store (redis): the scripts expire, purge once, batch and count as the memory store does", async () => {
  await using redis = await RedisServer.start();
  const broker = new RedisBroker(parseConfig({ broker: redisBroker(redis.url) }).broker as never);
  await broker.start({ onMessage: () => {} });
  try {
    const entry = (session: string, u: unknown) => ({ session, user: JSON.stringify(u) });
    const many = Array.from({ length: 2500 }, (_, i) => entry(`s${i}`, { u: i % 3 }));
    const first = await broker.updatePresence("c.1", { add: many, remove: [], ttl: 0.3 });
    assert.deepEqual(first.expired, []);
    assert.equal(first.restored.length, 2500, "every entry was new");
    const read = await broker.readPresence("c.1");
    const us = (users: readonly { fields: Readonly<Record<string, unknown>> }[]) => users.map((u) => u.fields.u).sort();
    assert.deepEqual([read.count, us(read.users)], [2500, [0, 1, 2]]);
    const again = await broker.updatePresence("c.1", { add: many.slice(0, 10), remove: ["s10", "s11"], ttl: 0.3 });
    assert.deepEqual(again, { expired: [], restored: [] });
    assert.equal((await broker.readPresence("c.1")).count, 2498);
    await new Promise((resolve) => setTimeout(resolve, 400));
    const keep = await broker.updatePresence("c.1", { add: [entry("s0", { u: 0 })], remove: [], ttl: 5 });
    assert.equal(keep.expired.length, 2497, "all but the one rewritten now");
    assert.deepEqual(keep.restored, []);
    assert.deepEqual(await broker.readPresence("c.1"), { count: 1, users: [{ text: '{"u":0}', fields: { u: 0 } }], expired: [] });
    assert.ok(Number(await redis.command("PTTL", "shoal:presence:{c.1}")) > 1000);
    await broker.updatePresence("c.1", { add: [], remove: ["s0"], ttl: 5 });
    assert.equal(await redis.command("EXISTS", "shoal:presence:{c.1}", "shoal:presence-expiry:{c.1}"), 0);
  } finally {
    await broker.close();
  }
});
