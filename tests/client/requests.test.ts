// The client SDK's send and ping: replies matched in request order, the sync event that settles a message Shoal
// does not answer, what a pong proves (nothing about order), waiting for a connection, drops and aborts. The last
// tests run the client against Shoal's real core (tests/support/harness.ts) through the fake socket.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ShoalClient, type ShoalClientOptions, ShoalError, ShoalRequestError } from "../../client/src/index.ts";
import { SYNC_EVENT } from "../../client/src/client.ts";
import { FakeClock, gate } from "../support/fake_clock.ts";
import { Harness } from "../support/harness.ts";
import { autoAnswer, bridge, FakeNetwork, type FakeSocket, tick } from "./fake_socket.ts";

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
  return { clock, net, client };
}

/** Open the socket with `books.1` subscribed and the frames so far taken. */
async function connected(net: FakeNetwork, client: ShoalClient): Promise<FakeSocket> {
  client.subscribe("books.1", { onMessage() {} });
  const socket = net.last;
  socket.open();
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.1" });
  await tick();
  socket.take();
  return socket;
}

const SYNC = { event: SYNC_EVENT };
const SYNC_REPLY = { event: SYNC_EVENT, status: "error", error: "Event not found." };

test("send: resolves with the service's reply, typed; an error reply rejects with ShoalError", async () => {
  const { net, client } = setup();
  const socket = await connected(net, client);
  const answered = client.send<{ saved: boolean }>("books.1", { title: "Dune" });
  await tick();
  assert.deepEqual(socket.take(), [{ event: "message", subscription: "books.1", data: { title: "Dune" } }, SYNC]);
  const reply = { event: "message", status: "ok", data: { saved: true }, subscription: "books.1" };
  socket.receive(reply);
  const got = await answered;
  assert.equal(got?.data?.saved, true);
  socket.receive(SYNC_REPLY); // the sync's own answer settles nothing else
  const refused = client.send("books.1", 2);
  await tick();
  socket.receive({ event: "message", status: "error", error: "Subscription does not exist.", subscription: "books.1" });
  await assert.rejects(refused, (e: unknown) => e instanceof ShoalError && e.error === "Subscription does not exist.");
  client.close();
});

test("send: a message Shoal does not answer resolves undefined when the sync's reply arrives, not on a pong", async () => {
  const { net, client } = setup();
  const socket = await connected(net, client);
  let settled: unknown = "pending";
  const sending = client.send("books.1", "hi").then((r) => (settled = r));
  const pinging = client.ping();
  await tick();
  assert.deepEqual(socket.take().map((f) => f.event), ["message", "ping", SYNC_EVENT]);
  // Ping is answered out of turn (decision 12): its pong may overtake the message still waiting on a service.
  socket.receive({ event: "pong", data: "p1" });
  await pinging;
  await tick();
  assert.equal(settled, "pending", "a pong proves nothing about the message");
  socket.receive(SYNC_REPLY);
  await sending;
  assert.equal(settled, undefined);
  client.close();
});

test("send: a burst shares one sync; two messages of one name get a sync between them so replies cannot be mixed up", async () => {
  const { net, client } = setup();
  const socket = await connected(net, client);
  client.subscribe("books.2", { onMessage() {} });
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.2" });
  socket.take();
  const first = client.send("books.1", 1);
  const other = client.send("books.2", 2);
  const second = client.send("books.1", 3);
  await tick();
  assert.deepEqual(socket.take().map((f) => f.event === "message" ? `${f.subscription}:${f.data}` : f.event), [
    "books.1:1",
    "books.2:2",
    SYNC_EVENT,
    "books.1:3",
    SYNC_EVENT,
  ]);
  // Only the second books.1 message is answered: the first sync's reply settles 1 and 2 as unanswered.
  socket.receive(SYNC_REPLY);
  socket.receive({ event: "message", status: "ok", data: "for 3", subscription: "books.1" });
  socket.receive(SYNC_REPLY);
  assert.deepEqual(await Promise.all([first, other]), [undefined, undefined]);
  assert.equal((await second)?.data, "for 3");
  client.close();
});

test("send: expectReply sends no sync and waits for the reply; a later request's reply settles an unanswered one", async () => {
  const { net, client } = setup();
  const socket = await connected(net, client);
  const answered = client.send("books.1", 1, { expectReply: true });
  await tick();
  assert.deepEqual(socket.take(), [{ event: "message", subscription: "books.1", data: 1 }]);
  socket.receive({ event: "message", status: "ok", data: "yes", subscription: "books.1" });
  assert.equal((await answered)?.data, "yes");
  const silent = client.send("books.1", 2, { expectReply: true });
  const sub = client.subscribe("books.9", { onMessage() {} });
  socket.receive({ event: "subscribe", status: "ok", subscription: "books.9" });
  await sub.ready;
  assert.equal(await silent, undefined, "the subscribe OK behind it shows it was processed without a reply");
  client.close();
});

test("send: waits for the connection (sent after auth and the re-subscribes); a drop after sending rejects 'disconnected'", async () => {
  const { clock, net, client } = setup({ auth: () => ({ ticket: "t" }) });
  client.subscribe("books.1", { onMessage() {} });
  const early = client.send("books.1", "queued");
  let socket = net.last;
  autoAnswer(socket);
  socket.open();
  await tick();
  assert.deepEqual(socket.frames.map((f) => f.event), ["auth", "subscribe", "message", SYNC_EVENT]);
  assert.equal(await early, undefined);
  socket.onSend = undefined;
  const lost = client.send("books.1", "in flight");
  await tick();
  socket.serverClose(1006);
  await assert.rejects(lost, (e: unknown) => e instanceof ShoalRequestError && e.reason === "disconnected");
  const later = client.send("books.1", "while away");
  await clock.advance(1000);
  socket = net.last;
  autoAnswer(socket);
  socket.open();
  await tick();
  assert.deepEqual(socket.frames.map((f) => f.data ?? f.event), ["auth", "subscribe", "while away", SYNC_EVENT]);
  assert.equal(await later, undefined);
  client.close();
});

test("send: an AbortSignal drops a queued send unsent, and abandons the wait of a sent one", async () => {
  const { net, client } = setup();
  const controller = new AbortController();
  const queued = client.send("books.1", "never", { signal: controller.signal });
  controller.abort(new Error("gave up"));
  await assert.rejects(queued, /gave up/);
  await assert.rejects(client.send("books.1", 1, { signal: AbortSignal.abort(new Error("already")) }), /already/);
  const socket = await connected(net, client);
  assert.deepEqual(socket.take(), [], "the aborted send never went out");
  const second = new AbortController();
  const sent = client.send("books.1", "sent", { signal: second.signal });
  await tick();
  second.abort(new Error("stop waiting"));
  await assert.rejects(sent, /stop waiting/);
  socket.receive({ event: "message", status: "ok", data: "late", subscription: "books.1" }); // still matched, ignored
  const next = client.send("books.1", "next", { expectReply: true });
  socket.receive({ event: "message", status: "ok", data: "for next", subscription: "books.1" });
  assert.equal((await next)?.data, "for next");
  await assert.rejects(client.send("books.1", 10n), TypeError, "data that is not JSON rejects");
  client.close();
});

test("ping: resolves with the round trip on the client's clock; waits for an open socket; rejects on a drop", async () => {
  const { clock, net, client } = setup();
  const early = client.ping();
  const socket = net.last;
  await clock.advance(500);
  socket.open();
  assert.deepEqual(socket.take(), [{ event: "ping", data: "p1" }]);
  await clock.advance(42);
  socket.receive({ event: "pong", data: "p1" });
  assert.equal(await early, 42);
  const lost = client.ping();
  socket.serverClose(1006);
  await assert.rejects(lost, (e: unknown) => e instanceof ShoalRequestError && e.reason === "disconnected");
  const controller = new AbortController();
  const aborted = client.ping({ signal: controller.signal });
  controller.abort(new Error("enough"));
  await assert.rejects(aborted, /enough/);
  client.close();
});

// --- against Shoal's real core ---------------------------------------------------------------------------------

const ON_MSG = "http://svc.test/on_message";

test("send against the real core: a silent on_message resolves only once processed, even though the pong overtakes it", async () => {
  const harness = await new Harness({
    services: { chat: { requireAuthentication: false, onMessage: ON_MSG }, open: { requireAuthentication: false } },
  }).start();
  const held = gate();
  harness.services.on(ON_MSG, { after: held, reply: { status: "ok" } }, { status: "ok", data: { echo: true } });
  const { net, client } = setup();
  const sub = client.subscribe("chat.1", { onMessage() {} });
  bridge(net.last, harness);
  await sub.ready;
  let settled: unknown = "pending";
  const silent = client.send("chat.1", "held").then((r) => (settled = r));
  assert.equal(typeof await client.ping(), "number", "the pong came while on_message was held");
  await harness.settled();
  await tick();
  assert.equal(settled, "pending");
  held.open();
  await harness.settled();
  await silent;
  assert.equal(settled, undefined, "processed without a reply");
  const answered = await client.send("chat.1", "again");
  assert.deepEqual(answered, { event: "message", status: "ok", data: { echo: true }, subscription: "chat.1" });
  await assert.rejects(client.send("open.1", 1), (e: unknown) => e instanceof ShoalError && e.error === "Subscription does not exist.");
  client.close();
});

test("send against the real core: a rate-limited sync still settles in its turn", async () => {
  const harness = await new Harness({
    services: { open: { requireAuthentication: false } },
    limits: { eventsPerSecond: 1, eventsBurst: 2 },
  }).start();
  const { net, client } = setup();
  const sub = client.subscribe("open.1", { onMessage() {} });
  bridge(net.last, harness);
  await sub.ready; // one token
  const results = await Promise.allSettled([client.send("open.1", 1), client.send("open.1", 2)]);
  // The first takes the last token and goes unanswered (no on_message); the sync between them and the second are
  // refused with `Rate limit exceeded.`, answered in their turn, so nothing is left waiting.
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected"]);
  assert.equal((results[1] as PromiseRejectedResult).reason.error, "Rate limit exceeded.");
  client.close();
});
