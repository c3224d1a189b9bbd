// The example service (examples/service/) beside Shoal on the example's own config: the service as a child process
// (bun run examples/service/main.ts), Shoal on SHOAL_TARGET, real WebSocket clients and the client SDK.
import assert from "node:assert/strict";
import process from "node:process";
import { test } from "node:test";
import { ShoalClient } from "../../client/src/index.ts";
import type { Message, SubscribeReply } from "../../client/src/index.ts";
import { eventually } from "../support/e2e.ts";
import { Example } from "../support/example_app.ts";
import { RedisServer } from "../support/redis_server.ts";
import { type Frame, WsClient } from "../support/ws_client.ts";

/** Subscribe and return the reply, OK or not. */
async function subscribe(client: WsClient, subscription: string): Promise<Frame> {
  client.send({ event: "subscribe", subscription });
  return await client.next(5000);
}

/**
 * Send a chat message to chat.lobby and return the reply to it. With `ownCopy` the sender is subscribed and gets
 * the published message too, before or after the reply (the service publishes before it answers): returned too.
 */
async function say(client: WsClient, data: unknown, ownCopy: boolean): Promise<{ reply: Frame; copy?: Frame }> {
  client.send({ event: "message", subscription: "chat.lobby", data });
  const frames = [await client.next(5000)];
  if (ownCopy) frames.push(await client.next(5000));
  const reply = frames.find((frame) => frame.status !== undefined);
  assert.ok(reply, `no reply among ${JSON.stringify(frames)}`);
  return { reply, copy: frames.find((frame) => frame !== reply) };
}

/** The next frame, which must be a published message of `subscription`. */
async function nextMessage(client: WsClient, subscription: string): Promise<Frame> {
  const frame = await client.next(5000);
  assert.equal(frame.event, "message", JSON.stringify(frame));
  assert.equal(frame.subscription, subscription, JSON.stringify(frame));
  assert.equal(frame.status, undefined, `a reply, not a published message: ${JSON.stringify(frame)}`);
  return frame;
}

test("examples: the service serves the page, the SDK bundle and Shoal's URL; tickets authenticate once", async () => {
  await using example = await Example.start();
  const page = await fetch(new URL("/", example.serviceUrl));
  assert.match(page.headers.get("content-type") ?? "", /text\/html/);
  const html = await page.text();
  for (
    const id of [
      "state",
      "login-form",
      "username",
      "messages",
      "chat-form",
      "chat-text",
      "chat-to",
      "notices",
      "recovery",
    ]
  ) {
    assert.match(html, new RegExp(`id="${id}"`), `the page has #${id}`);
  }
  assert.match(html, /data-state="idle"/);
  const app = await fetch(new URL("/app.js", example.serviceUrl));
  assert.match(await app.text(), /from "\/shoal-client\.js"/);
  const sdk = await fetch(new URL("/shoal-client.js", example.serviceUrl));
  assert.equal(sdk.status, 200);
  assert.match(sdk.headers.get("content-type") ?? "", /javascript/);
  assert.match(await sdk.text(), /ShoalClient/);
  const config = await (await fetch(new URL("/config.json", example.serviceUrl))).json();
  assert.equal(config.shoalUrl, example.shoal.url);

  // A username must be one; a ticket is good for one auth.
  assert.equal((await example.post("/auth/ticket", { username: "no spaces" })).status, 400);
  const ticket = await example.ticket("Alice");
  await using first = await WsClient.connect(example.shoal.url);
  first.send({ event: "auth", ticket });
  assert.deepEqual(await first.next(5000), { event: "auth", status: "ok" });
  await using second = await WsClient.connect(example.shoal.url);
  second.send({ event: "auth", ticket });
  assert.deepEqual(await second.next(5000), { event: "auth", status: "error", error: "Invalid or expired ticket." });

  // Anonymous sessions may not subscribe; alice (the username, lower-cased) has her own topic and no one else's.
  assert.deepEqual(await subscribe(second, "chat.lobby"), {
    event: "subscribe",
    subscription: "chat.lobby",
    status: "error",
    error: "Authentication required.",
  });
  assert.deepEqual(await subscribe(first, "user.bob"), {
    event: "subscribe",
    subscription: "user.bob",
    status: "error",
    error: "Unauthorized.",
  });
  assert.deepEqual(await subscribe(first, "user.alice"), {
    event: "subscribe",
    status: "ok",
    subscription: "user.alice",
  });
  assert.deepEqual(await subscribe(first, "chat.No Such Room"), {
    event: "subscribe",
    subscription: "chat.No Such Room",
    status: "error",
    error: "No such room.",
  });
});

test("examples: snapshot on subscribe, chat through on_message, whispers and notices reach only their user", async () => {
  await using example = await Example.start();
  assert.equal((await example.post("/api/announce", { room: "lobby", text: "welcome, everyone" })).status, 200);

  // alice has two connections: one in the lobby (A1), one watching her notices only (A2).
  await using a1 = await example.login("alice");
  await using a2 = await example.login("alice");
  await using bob = await example.login("bob");
  await using carol = await example.login("carol");
  for (const [client, user] of [[a2, "alice"], [a1, "alice"], [bob, "bob"]] as const) {
    assert.equal((await subscribe(client, `user.${user}`)).status, "ok");
  }

  // before_subscribe's snapshot comes in the OK, with the history's position.
  const ok = await subscribe(a1, "chat.lobby");
  assert.equal(ok.status, "ok", JSON.stringify(ok));
  assert.equal(ok.offset, 1);
  assert.equal(typeof ok.epoch, "string");
  const snapshot = (ok.data as { messages: Frame[] }).messages;
  assert.deepEqual(snapshot.map((m) => [m.from, m.text]), [[null, "welcome, everyone"]]);

  // on_subscribe's welcome goes to user.alice with session_id: A1 gets it, her other connection does not.
  const welcome = await nextMessage(a1, "user.alice");
  assert.deepEqual(welcome.data, { text: "Welcome to #lobby, alice. Here now: alice." });
  await a2.expectNothing(300);

  assert.equal((await subscribe(bob, "chat.lobby")).status, "ok");
  assert.deepEqual((await nextMessage(bob, "user.bob")).data, {
    text: "Welcome to #lobby, bob. Here now: alice, bob.",
  });
  assert.equal((await subscribe(carol, "chat.lobby")).status, "ok");

  // A chat message: on_message stores and publishes it; the sender gets the reply with its id, everyone the message.
  const hi = await say(a1, { text: "  hi all " }, true);
  assert.deepEqual(Object.keys(hi.reply).sort(), ["data", "event", "status", "subscription"]);
  assert.equal(hi.reply.status, "ok", JSON.stringify(hi.reply));
  const id = (hi.reply.data as { id: string }).id;
  for (const message of [hi.copy!, await nextMessage(bob, "chat.lobby"), await nextMessage(carol, "chat.lobby")]) {
    assert.equal(message.offset, 2, JSON.stringify(message));
    const { at, ...data } = message.data as Frame;
    assert.deepEqual(data, { id, room: "lobby", from: "alice", text: "hi all" });
    assert.ok(Math.abs(Date.parse(at as string) - Date.now()) < 60_000, `at: ${at}`);
  }

  // A whisper: two copies, each with the filter field user_id: alice and bob get it, carol does not.
  const psst = await say(bob, { text: "psst", to: "Alice" }, true);
  assert.equal(psst.reply.status, "ok", JSON.stringify(psst.reply));
  const forAlice = await nextMessage(a1, "chat.lobby");
  assert.deepEqual([forAlice.offset, psst.copy!.offset], [3, 4]); // alice's copy is published first
  for (const frame of [forAlice, psst.copy!]) {
    const { from, to, text } = frame.data as Frame;
    assert.deepEqual([from, to, text], ["bob", "alice", "psst"]);
  }
  await carol.expectNothing(300);

  // The service's own refusals come back as the reply's error.
  assert.deepEqual((await say(carol, { text: "   " }, false)).reply, {
    event: "message",
    subscription: "chat.lobby",
    status: "error",
    error: "Say something.",
  });
  assert.equal((await say(carol, { text: "me", to: "carol" }, false)).reply.error, "Whisper to someone else.");
  assert.equal((await say(carol, "just text", false)).reply.error, 'Send {"text": …, "to": …}.');

  // Snapshots hold what each user may see: carol's has no whisper, bob's has it.
  await carol.close();
  await using carol2 = await example.login("carol");
  const carolSnapshot = ((await subscribe(carol2, "chat.lobby")).data as { messages: Frame[] }).messages;
  assert.deepEqual(carolSnapshot.map((m) => m.text), ["welcome, everyone", "hi all"]);
  await using bob2 = await example.login("bob");
  const bobSnapshot = ((await subscribe(bob2, "chat.lobby")).data as { messages: Frame[] }).messages;
  assert.deepEqual(bobSnapshot.map((m) => m.text), ["welcome, everyone", "hi all", "psst"]);

  // Leaving: before_unsubscribe allows it, on_unsubscribe takes alice out of the room's members.
  a1.send({ event: "unsubscribe", subscription: "chat.lobby" });
  assert.deepEqual(await a1.next(5000), { event: "unsubscribe", status: "ok", subscription: "chat.lobby" });
  await eventually(() => example.service.output.includes("POST /shoal/chat/on_unsubscribe 200"), "on_unsubscribe");
  assert.match(example.service.output, /POST \/shoal\/chat\/before_unsubscribe 200/);
  await using a3 = await example.login("alice");
  assert.equal((await subscribe(a3, "user.alice")).status, "ok");
  assert.equal((await subscribe(a3, "chat.lobby")).status, "ok");
  assert.deepEqual((await nextMessage(a3, "user.alice")).data, {
    text: "Welcome to #lobby, alice. Here now: alice, bob, carol.", // alice is here again through a3 only
  });
  await a1.expectNothing(200);
});

/** A ShoalClient logged in as `username` through the example service, as the page does; collects its messages. */
function sdkClient(example: Example, username: string) {
  const client = new ShoalClient(example.shoal.url, {
    auth: async () => ({ ticket: await example.ticket(username) }),
    reconnect: { minDelay: 0.1, maxDelay: 0.5 },
  });
  const chat: Message[] = [];
  const resubscribed: { recovered: boolean; reply: SubscribeReply }[] = [];
  const notices: Message[] = [];
  // The user topic first, as the page does: joining the lobby publishes a notice on it.
  client.subscribe(`user.${username}`, { onMessage: (message) => void notices.push(message) });
  const chatSubscription = client.subscribe("chat.lobby", {
    onMessage: (message) => void chat.push(message),
    onResubscribed: (event) => void resubscribed.push(event),
  });
  return { client, chat, notices, resubscribed, ready: chatSubscription.ready };
}

const texts = (messages: readonly Message[]) => messages.map((m) => (m.data as { text: string }).text);

test("examples: the SDK chats through the service; after Shoal restarts without Redis it reloads the snapshot", async () => {
  await using example = await Example.start();
  const alice = sdkClient(example, "alice");
  const bob = sdkClient(example, "bob");
  try {
    await Promise.all([alice.ready, bob.ready]);
    const reply = await alice.client.send("chat.lobby", { text: "hello bob" }, { expectReply: true });
    assert.equal(reply?.status, "ok");
    await bob.client.send("chat.lobby", { text: "hi alice", to: "alice" }, { expectReply: true });
    await eventually(() => bob.chat.length === 2 && alice.chat.length === 2, "both messages at both clients");
    assert.deepEqual(texts(bob.chat), ["hello bob", "hi alice"]);
    assert.deepEqual(texts(alice.chat), ["hello bob", "hi alice"]);

    // The memory broker's history dies with Shoal: a new epoch, recovered: false, and the OK's snapshot to show.
    await example.restartShoal();
    await eventually(() => alice.resubscribed.length === 1 && bob.resubscribed.length === 1, "re-subscribed", {
      ms: 15_000,
    });
    const { recovered, reply: ok } = alice.resubscribed[0];
    assert.equal(recovered, false);
    assert.deepEqual((ok.data as { messages: { text: string }[] }).messages.map((m) => m.text), [
      "hello bob",
      "hi alice",
    ]);
    await alice.client.send("chat.lobby", { text: "back" }, { expectReply: true });
    await eventually(() => bob.chat.length === 3, "a message after the restart");
    assert.equal(texts(bob.chat)[2], "back");
  } finally {
    alice.client.close();
    bob.client.close();
  }
});

test("examples: with REDIS_URL the service publishes to Redis; the SDK recovers what was published while Shoal was down", async () => {
  await using redis = await RedisServer.start();
  await using example = await Example.start({ redisUrl: redis.url });
  const alice = sdkClient(example, "alice");
  const carol = sdkClient(example, "carol");
  try {
    await Promise.all([alice.ready, carol.ready]);
    await eventually(() => alice.notices.length === 1, "alice's welcome notice, through Redis");
    assert.match((alice.notices[0].data as { text: string }).text, /^Welcome to #lobby, alice\./);

    assert.equal((await example.post("/api/announce", { room: "lobby", text: "one" })).status, 200);
    await alice.client.send("chat.lobby", { text: "secret", to: "bob" }, { expectReply: true });
    await eventually(() => alice.chat.length === 2 && carol.chat.length === 1, "the first messages");
    assert.deepEqual(alice.chat.map((m) => m.offset), [1, 3]); // 2 is bob's copy of the whisper

    // Shoal is killed; the service goes on publishing into Redis's history; the clients recover it after a restart.
    await example.shoal.kill();
    for (const text of ["two", "three"]) {
      assert.equal((await example.post("/api/announce", { room: "lobby", text })).status, 200);
    }
    await example.restartShoal();
    await eventually(() => alice.resubscribed.length === 1 && carol.resubscribed.length === 1, "re-subscribed", {
      ms: 15_000,
    });
    assert.equal(alice.resubscribed[0].recovered, true);
    await eventually(() => alice.chat.length === 4 && carol.chat.length === 3, "the recovered messages");
    assert.deepEqual(texts(alice.chat), ["one", "secret", "two", "three"]);
    assert.deepEqual(alice.chat.map((m) => m.offset), [1, 3, 4, 5]);
    assert.deepEqual(texts(carol.chat), ["one", "two", "three"]);
  } finally {
    alice.client.close();
    carol.client.close();
  }
});
