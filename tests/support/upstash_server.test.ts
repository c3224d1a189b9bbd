// Self-test of the Upstash REST fixture with the real @upstash/redis client in front of a private redis-server.
// It also records what that client does when a subscription stream ends: its Subscriber tells no listener (an
// abrupt end is only a console.error), keeps listing the channel, and never re-opens the stream.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Redis } from "@upstash/redis";
import { createClient } from "redis";
import { RedisServer } from "./redis_server.ts";
import { UpstashServer } from "./upstash_server.ts";

const TOKEN = "test-token";

/** The real client, without telemetry headers and retries (a refused connection fails at once). */
function upstashClient(
  server: UpstashServer,
  options: { token?: string; autoPipelining?: boolean; base64?: boolean } = {},
) {
  return new Redis({
    url: server.url,
    token: options.token ?? TOKEN,
    enableTelemetry: false,
    retry: false,
    enableAutoPipelining: options.autoPipelining ?? true,
    responseEncoding: options.base64 === false ? false : "base64",
  });
}

/** A node-redis publisher straight to the Redis behind the REST API. */
async function publisher(redis: RedisServer) {
  const client = createClient({ url: redis.url, RESP: 2, maintNotifications: "disabled" });
  client.on("error", () => {});
  await client.connect();
  return Object.assign(client, { [Symbol.asyncDispose]: () => client.close() });
}

type Listener = (data: unknown) => void;

/**
 * What a Subscriber reported, in order, as `[type, data]`. `next(type)` resolves with the oldest event of that type
 * it has not returned yet, waiting for one if need be.
 */
function record(subscriber: { on(type: never, listener: Listener): void }, types: readonly string[]) {
  const events: [string, unknown][] = [];
  const taken = new Map<string, number>();
  const wake = new Set<() => void>();
  for (const type of types) {
    subscriber.on(type as never, (data: unknown) => {
      events.push([type, data]);
      for (const check of [...wake]) check();
    });
  }
  const next = (type: string, timeoutMs = 5000) =>
    new Promise<unknown>((resolve, reject) => {
      const check = () => {
        const ofType = events.filter(([t]) => t === type);
        const index = taken.get(type) ?? 0;
        if (ofType.length <= index) return;
        taken.set(type, index + 1);
        clearTimeout(timer);
        wake.delete(check);
        resolve(ofType[index][1]);
      };
      const timer = setTimeout(() => {
        wake.delete(check);
        reject(new Error(`no ${type} event within ${timeoutMs} ms; events: ${JSON.stringify(events)}`));
      }, timeoutMs);
      wake.add(check);
      check();
    });
  return { events, next };
}

/** Capture console.error while the returned handle lives (the client's only report of a failed stream read). */
function captureConsoleError() {
  const original = console.error;
  const lines: string[] = [];
  let notify: (() => void) | undefined;
  console.error = (...args: unknown[]) => {
    lines.push(args.map(String).join(" "));
    notify?.();
  };
  return {
    lines,
    /** Resolve once a captured line matches `pattern`. */
    waitFor: (pattern: RegExp, timeoutMs = 5000) =>
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no console.error matching ${pattern}: ${JSON.stringify(lines)}`)),
          timeoutMs,
        );
        notify = () => {
          const line = lines.find((l) => pattern.test(l));
          if (line) (clearTimeout(timer), resolve(line));
        };
        notify();
      }),
    [Symbol.dispose]: () => void (console.error = original),
  };
}

test("the real client's commands, pipelines and transactions work, in both response encodings", async () => {
  await using redis = await RedisServer.start();
  await using server = await UpstashServer.start({ redisUrl: redis.url, token: TOKEN });
  assert.equal(server.token, TOKEN);
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);

  for (
    const options of [{ autoPipelining: true }, { autoPipelining: false }, { autoPipelining: false, base64: false }]
  ) {
    const client = upstashClient(server, options);
    const what = JSON.stringify(options);
    assert.equal(await client.set("greeting", "héllo ☃, world"), "OK", what);
    assert.equal(await client.get("greeting"), "héllo ☃, world", what);
    assert.equal(await client.set("doc", { n: 1, tags: ["a"] }), "OK", what);
    assert.deepEqual(await client.get("doc"), { n: 1, tags: ["a"] }, what);
    assert.equal(await client.get("missing"), null, what);
    assert.equal(await client.ping(), "PONG", what);
    await assert.rejects(client.incr("greeting"), /ERR value is not an integer/, what);
  }
  assert.equal(await redis.cli("GET", "greeting"), "héllo ☃, world", "the values are in the real Redis");

  const client = upstashClient(server, { autoPipelining: false });
  const pipeline = client.pipeline().set("word", "OK").get("word").incr("count").mget("word", "missing").hset("h", {
    f: "v",
  }).hgetall("h");
  assert.deepEqual(await pipeline.exec(), ["OK", "OK", 1, ["OK", null], 1, { f: "v" }]);

  const transaction = client.multi().set("n", 1).incr("n").get("n");
  assert.deepEqual(await transaction.exec(), ["OK", 2, 2]);
  await assert.rejects(client.multi().set("n", 1).lpush("n", "x").exec(), /Command 2 \[ lpush \] failed: WRONGTYPE/);

  assert.deepEqual(server.commands.slice(-2), [["set", "n", "1"], ["lpush", "n", "x"]], "commands are recorded as run");
});

test("the wire format: POST / answers {result} (base64 on request), errors with 400, path commands, 401 on a bad token", async () => {
  await using redis = await RedisServer.start();
  await using server = await UpstashServer.start({ redisUrl: redis.url, token: TOKEN });
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(server.url + path, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: response.status, type: response.headers.get("content-type"), body: await response.json() };
  };

  assert.deepEqual(await post("/", ["SET", "k", "vä"]), {
    status: 200,
    type: "application/json",
    body: { result: "OK" },
  });
  assert.deepEqual((await post("/", ["GET", "k"])).body, { result: "vä" });
  assert.deepEqual((await post("/", ["GET", "k"], { "upstash-encoding": "base64" })).body, { result: "dsOk" });
  assert.deepEqual((await post("/", ["MGET", "k", "nope"], { "upstash-encoding": "base64" })).body, {
    result: ["dsOk", null],
  });
  assert.deepEqual(
    (await post("/", ["SET", "k", 5], { "upstash-encoding": "base64" })).body,
    { result: "OK" },
    "top-level OK stays",
  );
  assert.deepEqual((await post("/", ["INCR", "k"], { "upstash-encoding": "base64" })).body, { result: 6 });
  assert.deepEqual(await post("/", ["LPUSH", "k", "x"]), {
    status: 400,
    type: "application/json",
    body: { error: "WRONGTYPE Operation against a key holding the wrong kind of value" },
  });
  assert.equal((await post("/", ["SUBSCRIBE", "x"])).status, 400, "pub/sub only through the streaming endpoints");
  assert.equal((await post("/", "not json")).status, 400);

  assert.deepEqual(await post("/pipeline", [["SET", "a", "1"], ["INCR", "k"], ["LPUSH", "k", "x"]]), {
    status: 200,
    type: "application/json",
    body: [{ result: "OK" }, { result: 7 }, {
      error: "WRONGTYPE Operation against a key holding the wrong kind of value",
    }],
  });
  assert.deepEqual((await post("/multi-exec", [["INCR", "a"], ["GET", "a"]])).body, [{ result: 2 }, { result: "2" }]);
  assert.equal(
    (await post("/multi-exec", [["INCR", "a"], ["NOSUCHCOMMAND"]])).status,
    400,
    "a discarded transaction is one error",
  );

  assert.deepEqual((await post("/set/path%2Fkey/from-path", "")).body, { result: "OK" });
  assert.deepEqual((await post("/get/path%2Fkey", "")).body, { result: "from-path" });
  assert.deepEqual((await post("/set/body-key", "the body")).body, { result: "OK" });
  assert.equal(await redis.cli("GET", "body-key"), "the body");

  assert.deepEqual(await post("/", ["GET", "k"], { authorization: "Bearer wrong" }), {
    status: 401,
    type: "application/json",
    body: { error: "Unauthorized" },
  });
  const byQuery = await fetch(`${server.url}/get/k?_token=${TOKEN}`);
  assert.deepEqual(await byQuery.json(), { result: "7" });

  // The event stream, read raw: the channel may come URL-encoded; a payload's line breaks start new data: lines.
  const unauthorized = await fetch(`${server.url}/subscribe/x`, {
    method: "POST",
    headers: { authorization: "Bearer wrong" },
    body: "[]",
  });
  assert.deepEqual([unauthorized.status, await unauthorized.json()], [401, { error: "Unauthorized" }]);
  const stream = await fetch(`${server.url}/subscribe/${encodeURIComponent("room/1")}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, accept: "text/event-stream", "upstash-encoding": "base64" },
    body: "[]",
  });
  assert.equal(stream.status, 200);
  assert.equal(stream.headers.get("content-type"), "text/event-stream");
  const events = textUntil(stream.body!);
  assert.equal(await events.until("\n\n"), "data: subscribe,room/1,1\n\n");
  assert.equal(await redis.cli("PUBLISH", "room/1", "plain, not base64"), "1");
  assert.equal(await events.until("\n\n"), "data: message,room/1,plain, not base64\n\n");
  assert.equal(await redis.cli("PUBLISH", "room/1", "two\nlines"), "1");
  assert.equal(await events.until("\n\n"), "data: message,room/1,two\ndata: lines\n\n");
  await events.cancel();
  await server.waitForStreams(0);

  const stranger = upstashClient(server, { token: "wrong" });
  await assert.rejects(stranger.get("k"), (error: Error) => {
    assert.equal(error.name, "UpstashError");
    assert.match(error.message, /^Unauthorized, command was: \[\["get","k"\]\]$/);
    return true;
  });
});

test("a message published with node-redis reaches the real client's subscribe and psubscribe streams", async () => {
  await using redis = await RedisServer.start();
  await using server = await UpstashServer.start({ redisUrl: redis.url, token: TOKEN });
  await using pub = await publisher(redis);
  const client = upstashClient(server);

  const subscriber = client.subscribe(["news", "chat room"]);
  const seen = record(subscriber, ["subscribe", "message", "error"]);
  await server.waitForStreams(2);
  assert.deepEqual(server.channels.sort(), ["chat room", "news"]);
  assert.deepEqual(server.streams.map((s) => s.kind), ["subscribe", "subscribe"]);
  assert.equal(server.streamsOpened, 2);
  assert.deepEqual([await seen.next("subscribe"), await seen.next("subscribe")], [1, 1], "subscribe,<channel>,1 each");

  assert.equal(await pub.publish("news", JSON.stringify({ headline: "hi, there" })), 1);
  assert.deepEqual(await seen.next("message"), { channel: "news", message: { headline: "hi, there" } });
  assert.equal(await pub.publish("chat room", "plain text, with commas"), 1);
  assert.deepEqual(await seen.next("message"), { channel: "chat room", message: "plain text, with commas" });

  // The client does not URL-encode the channel in the path; the server decodes it either way.
  const patterns = client.psubscribe(["user.*"]);
  const patternSeen = record(patterns, ["psubscribe", "pmessage"]);
  await server.waitForStreams(3);
  assert.equal(await patternSeen.next("psubscribe"), 1);
  assert.deepEqual(server.streams.at(-1), { kind: "psubscribe", channel: "user.*" });
  await pub.publish("user.42", '"quoted"');
  assert.deepEqual(await patternSeen.next("pmessage"), { pattern: "user.*", channel: "user.42", message: "quoted" });

  await subscriber.unsubscribe();
  await patterns.unsubscribe();
  await server.waitForStreams(0);
  assert.deepEqual(seen.events.filter(([type]) => type === "error"), []);
});

test("dropStreams ends the client's streams: its Subscriber tells no listener, keeps the channel and never re-opens", async () => {
  await using redis = await RedisServer.start();
  await using server = await UpstashServer.start({ redisUrl: redis.url, token: TOKEN });
  await using pub = await publisher(redis);
  const client = upstashClient(server);

  {
    // Abrupt: the connection is cut mid-stream. The client's reader fails and only console.errors it.
    using consoleError = captureConsoleError();
    const subscriber = client.subscribe("news");
    const seen = record(subscriber, ["subscribe", "message", "error", "unsubscribe"]);
    await seen.next("subscribe");
    await pub.publish("news", "before");
    assert.deepEqual(await seen.next("message"), { channel: "news", message: "before" });

    assert.equal(server.dropStreams(), 1);
    assert.equal(server.openStreams, 0);
    assert.match(await consoleError.waitFor(/Stream reading error/), /^Stream reading error: TypeError: /);
    await pub.publish("news", "after");
    assert.equal(await client.ping(), "PONG", "a round trip after the publish");
    assert.deepEqual(seen.events.map(([type]) => type), ["subscribe", "message"], "no error, no unsubscribe");
    assert.deepEqual(subscriber.getSubscribedChannels(), ["news"], "the client still lists the channel");
    assert.equal(server.streamsOpened, 1, "and did not re-open the stream");
    await subscriber.unsubscribe();
  }
  {
    // Graceful: the response ends properly. The reader stops without a word.
    using consoleError = captureConsoleError();
    const subscriber = client.subscribe("chat");
    const seen = record(subscriber, ["subscribe", "message", "error", "unsubscribe"]);
    await seen.next("subscribe");
    assert.equal(server.dropStreams({ graceful: true }), 1);
    await pub.publish("chat", "after");
    assert.equal(await client.ping(), "PONG");
    assert.deepEqual(seen.events.map(([type]) => type), ["subscribe"]);
    assert.deepEqual(subscriber.getSubscribedChannels(), ["chat"]);
    assert.deepEqual(consoleError.lines, []);
    assert.equal(server.streamsOpened, 2);
    await subscriber.unsubscribe();
  }
  assert.equal(server.openStreams, 0);
});

test(
  "a Redis outage cuts the streams and fails commands; after a restart the API serves again",
  { timeout: 30_000 },
  async () => {
    await using redis = await RedisServer.start();
    await using server = await UpstashServer.start({ redisUrl: redis.url, token: TOKEN });
    const client = upstashClient(server);
    using _ = captureConsoleError();
    const subscriber = client.subscribe("news");
    const seen = record(subscriber, ["subscribe", "error"]);
    await seen.next("subscribe");

    await redis.stop();
    await server.waitForStreams(0);
    await assert.rejects(client.get("k"), /Command failed: /);
    const failed = client.subscribe("later");
    const failedSeen = record(failed, ["error"]);
    assert.match(String((await failedSeen.next("error")) as Error), /subscribe failed/);

    await redis.restart();
    await waitUntil(async () => (await client.set("k", "v").catch(() => undefined)) === "OK", "the API serves again");
    assert.equal(await client.get("k"), "v");
    assert.deepEqual(seen.events.map(([type]) => type), ["subscribe"], "the client never heard of the cut");
    await subscriber.unsubscribe();
    await failed.unsubscribe();
  },
);

/** Read a text stream piecewise: `until(end)` resolves with the text up to and including the next `end`. */
function textUntil(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  return {
    async until(end: string): Promise<string> {
      while (!buffer.includes(end)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${JSON.stringify(end)}; got ${JSON.stringify(buffer)}`);
        buffer += decoder.decode(value, { stream: true });
      }
      const at = buffer.indexOf(end) + end.length;
      const text = buffer.slice(0, at);
      buffer = buffer.slice(at);
      return text;
    },
    cancel: () => reader.cancel(),
  };
}

async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
