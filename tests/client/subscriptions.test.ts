// The client SDK's subscriptions: ready and its rejection, re-subscribing after a reconnect with fields and recover,
// dropping delivered offsets, recovered: false, server-initiated unsubscribes (Insufficient state. included),
// unsubscribe; a fake WebSocket and a fake clock.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type Message,
  type ResubscribedEvent,
  ShoalClient,
  type ShoalClientOptions,
  ShoalError,
  type ShoalErrorEvent,
  ShoalRequestError,
  type SubscribeOptions,
} from "../../client/src/index.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { autoAnswer, FakeNetwork, type FakeSocket, tick } from "./fake_socket.ts";

function setup(options: Partial<ShoalClientOptions> = {}) {
  const clock = new FakeClock();
  const net = new FakeNetwork();
  const client = new ShoalClient("ws://shoal.test/", {
    WebSocket: net.WebSocket,
    clock,
    keepAlive: false,
    reconnect: { minDelay: 1, maxDelay: 1 },
    ...options,
  });
  const errors: ShoalErrorEvent[] = [];
  const unsubscribed: unknown[][] = [];
  client.onError((event) => errors.push(event));
  client.onUnsubscribed((...args) => unsubscribed.push(args));
  return { clock, net, client, errors, unsubscribed };
}

/** A subscription's callbacks, recorded. */
function recorder<T = unknown>(extra: Partial<SubscribeOptions<T>> = {}) {
  const messages: Message<T>[] = [];
  const ended: unknown[][] = [];
  const resubscribed: ResubscribedEvent[] = [];
  const options: SubscribeOptions<T> = {
    onMessage: (message) => messages.push(message),
    onUnsubscribed: (error, data) => ended.push([error, data]),
    onResubscribed: (event) => resubscribed.push(event),
    ...extra,
  };
  return { options, messages, ended, resubscribed, data: () => messages.map((m) => m.data) };
}

function message(subscription: string, data: unknown, offset?: number, epoch = "e1") {
  return { event: "message", subscription, data, ...(offset === undefined ? {} : { offset, epoch }), sent_at: "now" };
}

async function reconnect(clock: FakeClock, net: FakeNetwork): Promise<FakeSocket> {
  net.last.serverClose(1006);
  await clock.advance(1000);
  const socket = net.last;
  socket.open();
  await tick();
  return socket;
}

test("subscribe: ready resolves with the OK; messages reach onMessage with their fields; typed data", async () => {
  const { net, client } = setup();
  const r = recorder<{ title: string }>();
  const sub = client.subscribe<{ title: string }>("books.1", { ...r.options, fields: { book_version: 3 } });
  assert.equal(sub.state, "subscribing");
  const socket = net.last;
  socket.open();
  assert.deepEqual(socket.take(), [{ event: "subscribe", subscription: "books.1", book_version: 3 }]);
  const ok = { event: "subscribe", status: "ok", book_version: 3, data: { title: "Dune" }, subscription: "books.1" };
  socket.receive(ok);
  assert.deepEqual(await sub.ready, ok);
  assert.equal(sub.state, "active");
  socket.receive({ ...message("books.1", { title: "Dune 2" }), book_version: 3 });
  assert.equal(r.messages[0].data.title, "Dune 2");
  assert.equal(r.messages[0].book_version, 3);
  socket.receive(message("books.other", 1)); // not ours: ignored
  assert.equal(r.messages.length, 1);
  client.close();
});

test("subscribe: an error reply rejects ready with ShoalError {error, data}; the subscription is over", async () => {
  const { net, client, errors, unsubscribed } = setup();
  const r = recorder();
  const sub = client.subscribe("books.1", r.options);
  net.last.open();
  net.last.receive({ event: "subscribe", status: "error", error: "Unauthorized.", data: { why: "no" }, subscription: "books.1" });
  await assert.rejects(sub.ready, (e: unknown) => {
    assert.ok(e instanceof ShoalError);
    assert.equal(e.error, "Unauthorized.");
    assert.deepEqual(e.data, { why: "no" });
    assert.equal(e.message, "Unauthorized.");
    return true;
  });
  assert.equal(sub.state, "unsubscribed");
  assert.deepEqual([r.ended, errors, unsubscribed], [[], [], []], "ready carries it: no callback, no error event");
  client.subscribe("books.1", r.options); // the name is free again
  assert.throws(() => client.subscribe("books.1", r.options), /already subscribed/);
  assert.throws(() => client.subscribe("books.2", { ...r.options, fields: { recover: 1 } }), TypeError);
  assert.throws(() => client.subscribe("books.3", { ...r.options, fields: { n: 1n } }), TypeError);
  client.close();
});

test("subscribe: a ready nobody awaits never becomes an unhandled rejection", async () => {
  const { net, client } = setup();
  client.subscribe("books.1", { onMessage() {} });
  net.last.open();
  net.last.receive({ event: "subscribe", status: "error", error: "Invalid service.", subscription: "books.1" });
  await tick(); // Bun exits and Deno fails the test on an unhandled rejection
  client.close();
});

test("reconnect: every subscription is re-subscribed with its fields and recover {offset, epoch}; delivered offsets are dropped", async () => {
  const { clock, net, client } = setup();
  const history = recorder();
  const plain = recorder();
  const sub = client.subscribe("chat.room", { ...history.options, fields: { lang: "en" } });
  client.subscribe("books.1", plain.options);
  let socket = net.last;
  socket.open();
  socket.take();
  socket.receive({ event: "subscribe", status: "ok", lang: "en", subscription: "chat.room", offset: 5, epoch: "e1" });
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.1" });
  socket.receive(message("chat.room", "m6", 6));
  socket.receive(message("chat.room", "m6 again", 6)); // a duplicate on the live stream
  socket.receive(message("chat.room", "m7", 7));
  socket.receive(message("books.1", "b1"));
  assert.deepEqual(sub.position, { offset: 7, epoch: "e1" });

  socket = await reconnect(clock, net);
  assert.deepEqual(socket.take(), [
    { event: "subscribe", subscription: "chat.room", lang: "en", recover: { offset: 7, epoch: "e1" } },
    { event: "subscribe", subscription: "books.1" },
  ]);
  assert.equal(sub.state, "subscribing");
  socket.receive({ event: "subscribe", status: "ok", lang: "en", subscription: "chat.room", offset: 9, epoch: "e1", recovered: true });
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.1" });
  for (const offset of [6, 7, 8, 9, 8, 10]) socket.receive(message("chat.room", `m${offset}`, offset));
  socket.receive(message("books.1", "b2"));
  assert.deepEqual(history.data(), ["m6", "m7", "m8", "m9", "m10"]);
  assert.deepEqual(plain.data(), ["b1", "b2"]);
  assert.deepEqual(history.resubscribed.map((e) => e.recovered), [true]);
  assert.deepEqual(plain.resubscribed.map((e) => e.recovered), [false], "no history: messages may have been missed");
  assert.deepEqual(sub.position, { offset: 10, epoch: "e1" });
  client.close();
});

test("reconnect: recovered false (a new epoch) tells onResubscribed, and the stream goes on from the OK's position", async () => {
  const { clock, net, client } = setup();
  const r = recorder();
  const sub = client.subscribe("chat.room", r.options);
  let socket = net.last;
  socket.open();
  socket.receive({ event: "subscribe", status: "ok", subscription: "chat.room", offset: 3, epoch: "e1" });
  socket.receive(message("chat.room", "old 4", 4));
  socket = await reconnect(clock, net);
  assert.deepEqual(socket.take()[0].recover, { offset: 4, epoch: "e1" });
  const ok = { event: "subscribe", status: "ok", subscription: "chat.room", offset: 2, epoch: "e2", recovered: false };
  socket.receive(ok);
  assert.deepEqual(r.resubscribed, [{ recovered: false, reply: ok }]);
  assert.deepEqual(sub.position, { offset: 2, epoch: "e2" });
  socket.receive(message("chat.room", "new 3", 3, "e2"));
  socket.receive(message("chat.room", "new 2", 2, "e2")); // at the OK's position: delivered already
  assert.deepEqual(r.data(), ["old 4", "new 3"]);
  client.close();
});

test("recover: false never sends recover; a Position recovers from there on the first subscribe", async () => {
  const { clock, net, client } = setup();
  const off = client.subscribe("chat.a", { onMessage() {}, recover: false });
  const from = client.subscribe("chat.b", { onMessage() {}, recover: { offset: 40, epoch: "saved" } });
  let socket = net.last;
  socket.open();
  assert.deepEqual(socket.take(), [
    { event: "subscribe", subscription: "chat.a" },
    { event: "subscribe", subscription: "chat.b", recover: { offset: 40, epoch: "saved" } },
  ]);
  socket.receive({ event: "subscribe", status: "ok", subscription: "chat.a", offset: 1, epoch: "e" });
  const ok = { event: "subscribe", status: "ok", subscription: "chat.b", offset: 42, epoch: "saved", recovered: true };
  socket.receive(ok);
  assert.deepEqual(await from.ready, ok);
  assert.deepEqual(from.position, { offset: 40, epoch: "saved" }, "41 and 42 follow");
  socket = await reconnect(clock, net);
  assert.deepEqual(socket.take()[0], { event: "subscribe", subscription: "chat.a" });
  assert.equal(off.state, "subscribing");
  client.close();
});

test("re-subscribe failure after a reconnect: onUnsubscribed, the client's onUnsubscribed and an error event; not retried", async () => {
  const { clock, net, client, errors, unsubscribed } = setup();
  const r = recorder();
  const sub = client.subscribe("books.1", r.options);
  let socket = net.last;
  socket.open();
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.1" });
  socket = await reconnect(clock, net);
  socket.take();
  socket.receive({ event: "subscribe", status: "error", error: "Unauthorized.", data: { retry: false }, subscription: "books.1" });
  assert.deepEqual(r.ended, [["Unauthorized.", { retry: false }]]);
  assert.deepEqual(unsubscribed, [["books.1", "Unauthorized.", { retry: false }]]);
  assert.deepEqual(errors.map((e) => [e.kind, e.subscription, e.error]), [["subscribe", "books.1", "Unauthorized."]]);
  assert.equal(sub.state, "unsubscribed");
  socket = await reconnect(clock, net);
  assert.deepEqual(socket.take(), [], "an ended subscription is not re-subscribed");
  client.close();
});

test("re-subscribe refused with Service unavailable. (or Rate limit exceeded.): tried again with backoff, reported each time", async () => {
  const { clock, net, client, errors, unsubscribed } = setup({ reconnect: { minDelay: 1, maxDelay: 8 } });
  clock.randoms = Array(10).fill(1 - 1e-9);
  const r = recorder();
  const sub = client.subscribe("chat.room", r.options);
  const socket = net.last;
  socket.open();
  socket.take();
  socket.receive({ event: "subscribe", status: "ok", subscription: "chat.room", offset: 0, epoch: "e1" });
  socket.receive(message("chat.room", 1, 1));
  socket.receive({ event: "unsubscribe", subscription: "chat.room", error: "Insufficient state." });
  const again = { event: "subscribe", subscription: "chat.room", recover: { offset: 1, epoch: "e1" } };
  assert.deepEqual(socket.take(), [again]);
  socket.receive({ event: "subscribe", status: "error", error: "Service unavailable.", subscription: "chat.room" });
  assert.equal(sub.state, "subscribing");
  await clock.advance(1999);
  assert.deepEqual(socket.take(), []);
  await clock.advance(1);
  assert.deepEqual(socket.take(), [again], "after the backoff");
  socket.receive({ event: "subscribe", status: "error", error: "Rate limit exceeded.", subscription: "chat.room" });
  await clock.advance(4000);
  assert.deepEqual(socket.take(), [again]);
  socket.receive({ event: "subscribe", status: "ok", subscription: "chat.room", offset: 2, epoch: "e1", recovered: true });
  socket.receive(message("chat.room", 2, 2));
  assert.deepEqual(r.data(), [1, 2]);
  assert.deepEqual(r.resubscribed.map((e) => e.recovered), [true]);
  assert.deepEqual([r.ended, unsubscribed], [[], []]);
  assert.deepEqual(errors.map((e) => [e.kind, e.error]), [["subscribe", "Service unavailable."], ["subscribe", "Rate limit exceeded."]]);
  assert.match(errors[0].message, /trying again in 2000 ms/);
  socket.receive({ event: "unsubscribe", subscription: "chat.room", error: "Insufficient state." });
  socket.receive({ event: "subscribe", status: "error", error: "Service unavailable.", subscription: "chat.room" });
  assert.ok(clock.pending > 0, "a retry waits");
  client.close();
  assert.equal(clock.pending, 0, "close() clears it");
});

test("server-initiated unsubscribe: onUnsubscribed(error, data), events, and the subscription is over", async () => {
  const { clock, net, client, errors, unsubscribed } = setup();
  const r = recorder();
  const sub = client.subscribe("books.1", r.options);
  let socket = net.last;
  socket.open();
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.1" });
  socket.receive({ event: "unsubscribe", subscription: "books.1", data: { by: "renewal" }, error: "Unauthorized." });
  assert.deepEqual(r.ended, [["Unauthorized.", { by: "renewal" }]]);
  assert.deepEqual(unsubscribed, [["books.1", "Unauthorized.", { by: "renewal" }]]);
  assert.deepEqual(errors.map((e) => e.kind), ["unsubscribed"]);
  assert.equal(sub.state, "unsubscribed");
  socket.receive(message("books.1", "late")); // none should come; if one does, nobody holds it
  assert.deepEqual(r.messages, []);
  assert.equal(await sub.unsubscribe(), undefined);
  socket = await reconnect(clock, net);
  assert.deepEqual(socket.take(), []);
  client.close();
});

test("Insufficient state.: re-subscribed at once with recover from the last offset; the gap is filled once, in order", async () => {
  const { net, client, errors } = setup();
  const r = recorder();
  const sub = client.subscribe("chat.room", r.options);
  const socket = net.last;
  socket.open();
  socket.take();
  socket.receive({ event: "subscribe", status: "ok", subscription: "chat.room", offset: 0, epoch: "e1" });
  socket.receive(message("chat.room", 1, 1));
  socket.receive(message("chat.room", 2, 2));
  socket.receive({ event: "unsubscribe", subscription: "chat.room", error: "Insufficient state." });
  assert.deepEqual(socket.take(), [{ event: "subscribe", subscription: "chat.room", recover: { offset: 2, epoch: "e1" } }]);
  assert.equal(sub.state, "subscribing");
  socket.receive({ event: "subscribe", status: "ok", subscription: "chat.room", offset: 5, epoch: "e1", recovered: true });
  for (const offset of [3, 4, 5, 6]) socket.receive(message("chat.room", offset, offset));
  assert.deepEqual(r.data(), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(r.ended, [], "transparent to onUnsubscribed");
  assert.deepEqual(r.resubscribed.map((e) => e.recovered), [true]);
  assert.deepEqual(errors, []);
  client.close();
});

test("unsubscribe: resolves with the OK; messages before it are still delivered; a refusal keeps the subscription", async () => {
  const { net, client } = setup();
  const r = recorder();
  const sub = client.subscribe("books.1", r.options);
  const socket = net.last;
  socket.open();
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.1" });
  socket.take();
  const refused = sub.unsubscribe();
  assert.equal(sub.unsubscribe(), refused, "the same promise while leaving");
  assert.equal(sub.state, "unsubscribing");
  assert.deepEqual(socket.take(), [{ event: "unsubscribe", subscription: "books.1" }]);
  socket.receive(message("books.1", "before the answer"));
  socket.receive({ event: "unsubscribe", status: "error", error: "Not now.", subscription: "books.1" });
  await assert.rejects(refused, (e: unknown) => e instanceof ShoalError && e.error === "Not now.");
  assert.equal(sub.state, "active");
  socket.receive(message("books.1", "still subscribed"));
  const leaving = sub.unsubscribe();
  const ok = { event: "unsubscribe", status: "ok", subscription: "books.1" };
  socket.receive(ok);
  assert.deepEqual(await leaving, ok);
  assert.equal(sub.state, "unsubscribed");
  assert.deepEqual(r.data(), ["before the answer", "still subscribed"]);
  assert.deepEqual(r.ended, []);
  client.close();
});

test("unsubscribe: while disconnected it is local (nothing sent, not re-subscribed); before the OK, ready rejects", async () => {
  const { clock, net, client } = setup();
  const a = client.subscribe("books.1", { onMessage() {} });
  assert.equal(await a.unsubscribe(), undefined);
  await assert.rejects(a.ready, (e: unknown) => e instanceof ShoalRequestError && e.reason === "unsubscribed");
  const b = client.subscribe("books.2", { onMessage() {} });
  let socket = net.last;
  socket.open();
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.2" });
  socket.serverClose(1006);
  assert.equal(await b.unsubscribe(), undefined);
  await clock.advance(1000);
  socket = net.last;
  socket.open();
  assert.deepEqual(socket.take(), []);
  client.close();
});

test("unsubscribe racing a revocation: resolves quietly; racing its own subscribe: the OK resolves ready first", async () => {
  const { net, client, unsubscribed } = setup();
  const r = recorder();
  const sub = client.subscribe("books.1", r.options);
  const socket = net.last;
  autoAnswer(socket);
  socket.open();
  const leaving = sub.unsubscribe(); // sent right behind the subscribe
  assert.deepEqual((await sub.ready).status, "ok");
  assert.equal((await leaving)?.status, "ok");
  socket.onSend = undefined;
  const other = client.subscribe("books.2", r.options);
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.2" });
  await other.ready;
  const going = other.unsubscribe();
  socket.receive({ event: "unsubscribe", subscription: "books.2", error: "Unauthorized." });
  socket.receive({ event: "unsubscribe", status: "error", error: "Subscription does not exist.", subscription: "books.2" });
  assert.equal(await going, undefined);
  assert.deepEqual([r.ended, unsubscribed], [[], []], "the application was leaving anyway");
  client.close();
});

test("subscribe signal: aborting unsubscribes; an aborted signal never subscribes", async () => {
  const { net, client } = setup();
  const socket = net.last;
  autoAnswer(socket);
  socket.open();
  const controller = new AbortController();
  const sub = client.subscribe("books.1", { onMessage() {}, signal: controller.signal });
  await sub.ready;
  controller.abort();
  await tick();
  assert.equal(sub.state, "unsubscribed");
  assert.deepEqual(socket.frames.map((f) => f.event), ["subscribe", "unsubscribe"]);
  const never = client.subscribe("books.2", { onMessage() {}, signal: AbortSignal.abort(new Error("stop")) });
  await assert.rejects(never.ready, /stop/);
  assert.equal(socket.frames.length, 2);
  client.close();
});

test("a subscribe Shoal answers with no OK (a filtered before_subscribe answer): ready rejects no-reply once a later reply shows it", async () => {
  const { net, client } = setup();
  const sub = client.subscribe("books.1", { onMessage() {} });
  const socket = net.last;
  socket.open();
  client.subscribe("books.2", { onMessage() {} });
  socket.take();
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.2" });
  await assert.rejects(sub.ready, (e: unknown) => e instanceof ShoalRequestError && e.reason === "no-reply");
  assert.deepEqual(socket.take(), [{ event: "unsubscribe", subscription: "books.1" }], "taken back on the server");
  client.close();
});

test("a callback that throws is reported and delivery goes on", async () => {
  const { net, client, errors } = setup();
  const seen: unknown[] = [];
  client.subscribe("books.1", {
    onMessage(m) {
      seen.push(m.data);
      if (m.data === 1) throw new Error("app bug");
    },
  });
  const socket = net.last;
  socket.open();
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.1" });
  socket.receive(message("books.1", 1));
  socket.receive(message("books.1", 2));
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(errors.map((e) => [e.kind, e.subscription, (e.error as Error).message]), [["callback", "books.1", "app bug"]]);
  socket.receive("not json");
  socket.receive({ event: "subscribe", status: "ok", subscription: "never.asked" });
  assert.deepEqual(errors.slice(1).map((e) => e.kind), ["protocol", "protocol"]);
  client.close();
});
