// The client SDK's connection: backoff timing and jitter, one socket at a time, authentication on every connect,
// state changes, close codes, dead-connection detection and close(); a fake WebSocket and a fake clock.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type ConnectionState,
  type DisconnectInfo,
  ShoalClient,
  type ShoalClientOptions,
  type ShoalErrorEvent,
  ShoalRequestError,
} from "../../client/src/index.ts";
import { backoffDelay } from "../../client/src/backoff.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { autoAnswer, FakeNetwork, tick } from "./fake_socket.ts";

const ALMOST_ONE = 1 - 1e-9;

function setup(options: Partial<ShoalClientOptions> = {}) {
  const clock = new FakeClock();
  const net = new FakeNetwork();
  const client = new ShoalClient("ws://shoal.test/", { WebSocket: net.WebSocket, clock, keepAlive: false, ...options });
  const states: (ConnectionState | [ConnectionState, DisconnectInfo])[] = [];
  const errors: ShoalErrorEvent[] = [];
  client.onStateChange((state, info) => states.push(info ? [state, info] : state));
  client.onError((event) => errors.push(event));
  return { clock, net, client, states, errors };
}

/** The `retryIn` of every `disconnected` state so far. */
function retries(states: (ConnectionState | [ConnectionState, DisconnectInfo])[]): (number | undefined)[] {
  return states.filter((s): s is [ConnectionState, DisconnectInfo] => Array.isArray(s)).map(([, info]) => info.retryIn);
}

test("client backoff: full jitter between minDelay and min(maxDelay, minDelay × 2^(attempt+1))", () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(20_000, 500 * 2 ** (attempt + 1));
    assert.equal(backoffDelay(attempt, 500, 20_000, () => 0), 500);
    assert.equal(backoffDelay(attempt, 500, 20_000, () => ALMOST_ONE), ceiling);
    for (let i = 0; i < 50; i++) {
      const delay = backoffDelay(attempt, 500, 20_000, Math.random);
      assert.ok(delay >= 500 && delay <= ceiling, `attempt ${attempt}: ${delay} not in [500, ${ceiling}]`);
    }
  }
  assert.equal(backoffDelay(Infinity, 500, 20_000, () => ALMOST_ONE), 20_000);
  assert.equal(backoffDelay(3, 1000, 1000, () => ALMOST_ONE), 1000, "min = max: always that");
});

test("client reconnect: waits exactly the jittered backoff, growing to maxDelay, and never opens early", async () => {
  const { clock, net, client, states } = setup({ reconnect: { minDelay: 0.5, maxDelay: 4 } });
  clock.randoms = [ALMOST_ONE, 0, ALMOST_ONE, ALMOST_ONE, 0.5];
  const expected = [1000, 500, 4000, 4000, 2250];
  for (const [i, delay] of expected.entries()) {
    assert.equal(net.sockets.length, i + 1);
    net.last.serverClose(1006);
    await clock.advance(delay - 1);
    assert.equal(net.sockets.length, i + 1, `attempt ${i}: not before ${delay} ms`);
    await clock.advance(1);
    assert.equal(net.sockets.length, i + 2, `attempt ${i}: at ${delay} ms`);
  }
  assert.deepEqual(retries(states), expected);
  assert.equal(net.maxLive, 1);
  client.close();
});

test("client reconnect: a connection that stayed up for stableAfter starts the backoff again from minDelay", async () => {
  const { clock, net, client, states } = setup({ reconnect: { minDelay: 1, maxDelay: 60, stableAfter: 10 } });
  clock.randoms = Array(10).fill(ALMOST_ONE);
  for (const wait of [2000, 4000, 8000]) {
    net.last.serverClose(1006);
    await clock.advance(wait);
  }
  assert.deepEqual(retries(states), [2000, 4000, 8000]);
  net.last.open();
  await clock.advance(9_999);
  net.last.serverClose(1006); // not yet stable: the backoff goes on growing
  await clock.advance(16_000);
  net.last.open();
  await clock.advance(10_000);
  net.last.serverClose(1006);
  assert.deepEqual(retries(states), [2000, 4000, 8000, 16000, 2000]);
  client.close();
});

test("client: never two sockets: online, visibilitychange and connect() while connecting, connected or waiting", async () => {
  const document = Object.assign(new EventTarget(), { visibilityState: "hidden" });
  (globalThis as { document?: unknown }).document = document;
  try {
    const { clock, net, client } = setup({ reconnect: { minDelay: 5, maxDelay: 5 } });
    const wake = () => {
      globalThis.dispatchEvent(new Event("online"));
      document.visibilityState = "visible";
      document.dispatchEvent(new Event("visibilitychange"));
      client.connect();
    };
    wake(); // connecting
    assert.equal(net.sockets.length, 1);
    net.last.open();
    wake(); // connected
    assert.equal(net.sockets.length, 1);
    net.last.serverClose(1006);
    assert.equal(client.state, "disconnected");
    globalThis.dispatchEvent(new Event("online")); // waiting 5 s: reconnect at once
    assert.equal(net.sockets.length, 2);
    assert.equal(client.state, "connecting");
    await clock.advance(5_000); // the cancelled backoff timer does not fire a second socket
    assert.equal(net.sockets.length, 2);
    net.last.serverClose(1006);
    document.visibilityState = "hidden";
    document.dispatchEvent(new Event("visibilitychange"));
    assert.equal(net.sockets.length, 2, "hidden: keep waiting");
    document.visibilityState = "visible";
    document.dispatchEvent(new Event("visibilitychange"));
    assert.equal(net.sockets.length, 3, "visible again: reconnect at once");
    for (let i = 0; i < 5; i++) wake();
    assert.equal(net.sockets.length, 3);
    assert.equal(net.maxLive, 1);
    client.close();
  } finally {
    delete (globalThis as { document?: unknown }).document;
  }
});

test("client auth: the provider is called after each open for a fresh ticket; auth goes first, then the subscribes", async () => {
  let calls = 0;
  const { clock, net, client, states } = setup({
    auth: () => Promise.resolve({ ticket: `ticket-${++calls}` }),
    reconnect: { minDelay: 1, maxDelay: 1 },
  });
  client.subscribe("books.1", { fields: { book_version: 3 }, onMessage() {} });
  client.subscribe("books.2", { onMessage() {} });
  await tick();
  assert.equal(calls, 0, "not before the socket opened: a failed open wastes no ticket");
  for (let n = 1; n <= 3; n++) {
    const socket = net.last;
    autoAnswer(socket);
    socket.open();
    await tick();
    assert.equal(calls, n);
    assert.deepEqual(socket.frames, [
      { event: "auth", ticket: `ticket-${n}` },
      { event: "subscribe", subscription: "books.1", book_version: 3 },
      { event: "subscribe", subscription: "books.2" },
    ]);
    assert.equal(client.state, "connected");
    socket.serverClose(1000);
    await clock.advance(1000);
  }
  assert.deepEqual(states.filter((s) => typeof s === "string"), ["connected", "connecting", "connected", "connecting", "connected", "connecting"]);
  client.close();
});

test("client auth: connected only once auth is answered; an error reply is reported and the client stays (anonymous)", async () => {
  const { net, client, errors } = setup({ auth: () => ({ token: "jwt-1" }) });
  const socket = net.last;
  socket.open();
  await tick();
  assert.deepEqual(socket.take(), [{ event: "auth", method: "jwt", token: "jwt-1" }]);
  assert.equal(client.state, "connecting");
  socket.receive({ event: "auth", status: "error", error: "Authentication failed." });
  assert.equal(client.state, "connected");
  assert.deepEqual(errors.map((e) => [e.kind, e.error]), [["auth", "Authentication failed."]]);
  client.close();
});

test("client auth: a provider that throws fails the attempt (reported, socket closed, backoff); null connects anonymously", async () => {
  let fail = true;
  const { clock, net, client, errors } = setup({
    auth: () => (fail ? Promise.reject(new Error("ticket endpoint down")) : null),
    reconnect: { minDelay: 1, maxDelay: 1 },
  });
  net.last.open();
  await tick();
  assert.equal(errors[0].kind, "auth");
  assert.equal((errors[0].error as Error).message, "ticket endpoint down");
  assert.ok(net.last.closedByClient, "the client closed the socket");
  assert.deepEqual(net.last.frames, []);
  assert.equal(client.state, "disconnected");
  fail = false;
  await clock.advance(1000);
  net.last.open();
  await tick();
  assert.equal(client.state, "connected");
  assert.deepEqual(net.last.frames, []);
  client.close();
});

test("client states: connecting → connected → disconnected (with code, reason, meaning, retryIn) → … → closed", async () => {
  const { clock, net, client, states } = setup({ reconnect: { minDelay: 2, maxDelay: 2 } });
  assert.equal(client.state, "connecting");
  net.last.open();
  net.last.serverClose(1000, "");
  await clock.advance(2000);
  net.last.open();
  client.close();
  client.close();
  assert.deepEqual(states, [
    "connected",
    ["disconnected", {
      code: 1000,
      reason: "",
      description: "closed by the server: shutdown, keep-alive timeout or internal error",
      retryIn: 2000,
    }],
    "connecting",
    "connected",
    "closed",
  ]);
});

test("client close codes: 1000/1001/1006 back off quietly; 1008/1009 wait maxDelay and report; 1013 spreads up to maxDelay", async () => {
  const { clock, net, client, states, errors } = setup({ reconnect: { minDelay: 1, maxDelay: 30 } });
  clock.randoms = Array(20).fill(ALMOST_ONE);
  const plan: [number, number][] = [[1000, 2000], [1001, 4000], [1006, 8000], [1008, 30_000], [1009, 30_000], [1013, 30_000], [1007, 30_000]];
  for (const [code, wait] of plan) {
    net.last.serverClose(code, "why");
    await clock.advance(wait - 1);
    assert.equal(client.state, "disconnected", `${code}: still waiting`);
    globalThis.dispatchEvent(new Event("online")); // a policy wait is not cut short
    if (code < 1007) assert.equal(client.state, "connecting", `${code}: online cuts an ordinary backoff short`);
    else await clock.advance(1);
    assert.equal(client.state, "connecting");
  }
  assert.deepEqual(retries(states), plan.map(([, wait]) => wait));
  assert.deepEqual(errors.map((e) => [e.kind, e.code]), [["close", 1008], ["close", 1009], ["close", 1013], ["close", 1007]]);
  assert.match(errors[0].message, /policy violation/);
  assert.match(errors[2].message, /slow consumer/);
  client.close();
});

test("client close codes: 4000 (an administrator's disconnect) stays disconnected, reported, until connect()", async () => {
  const { clock, net, client, states, errors } = setup();
  net.last.open();
  net.last.serverClose(4000, "disconnected");
  await clock.advance(600_000);
  globalThis.dispatchEvent(new Event("online"));
  assert.equal(net.sockets.length, 1);
  assert.equal(clock.pending, 0, "no timer waits");
  assert.deepEqual(states.at(-1), ["disconnected", {
    code: 4000,
    reason: "disconnected",
    description: "disconnected by an administrator",
    retryIn: undefined,
  }]);
  assert.deepEqual(errors.map((e) => [e.kind, e.code]), [["close", 4000]]);
  client.connect();
  assert.equal(net.sockets.length, 2);
  assert.equal(client.state, "connecting");
  client.close();
});

test("client: a socket that does not open within connectTimeout is abandoned and retried", async () => {
  const { clock, net, client, states } = setup({ connectTimeout: 5, reconnect: { minDelay: 1, maxDelay: 1 } });
  await clock.advance(4_999);
  assert.equal(net.sockets.length, 1);
  await clock.advance(1);
  assert.ok(net.sockets[0].closedByClient);
  assert.deepEqual(states.at(-1), ["disconnected", {
    code: 1006,
    reason: "connect timeout",
    description: "connection lost without a close frame",
    retryIn: 1000,
  }]);
  await clock.advance(1000);
  assert.equal(net.sockets.length, 2);
  assert.equal(net.maxLive, 1);
  client.close();
});

test("client auth: a server that never answers auth does not keep the client connecting: connectTimeout, then retry", async () => {
  const { clock, net, client, states } = setup({
    auth: () => ({ ticket: "t" }),
    connectTimeout: 5,
    reconnect: { minDelay: 1, maxDelay: 1 },
  });
  net.last.open();
  await tick();
  assert.deepEqual(net.last.take(), [{ event: "auth", ticket: "t" }]);
  await clock.advance(4_999);
  assert.equal(client.state, "connecting");
  await clock.advance(1);
  assert.ok(net.sockets[0].closedByClient);
  assert.deepEqual(states.at(-1), ["disconnected", {
    code: 1006,
    reason: "auth timeout",
    description: "connection lost without a close frame",
    retryIn: 1000,
  }]);
  await clock.advance(1000);
  assert.equal(net.sockets.length, 2);
  net.last.open();
  await tick();
  net.last.take();
  net.last.receive({ event: "auth", status: "ok" });
  assert.equal(client.state, "connected");
  await clock.advance(60_000);
  assert.equal(client.state, "connected", "the answered auth stopped the timer");
  client.close();
});

test("client keep-alive: pings after `interval` of silence, reconnects when nothing comes within `timeout`", async () => {
  const { clock, net, client, states } = setup({ keepAlive: { interval: 20, timeout: 5 }, reconnect: { minDelay: 1, maxDelay: 1 } });
  const socket = net.last;
  socket.open();
  await clock.advance(15_000);
  socket.receive({ event: "message", subscription: "x.y", data: 1 }); // any frame counts
  await clock.advance(19_999);
  assert.deepEqual(socket.take(), [], "not idle for 20 s yet");
  await clock.advance(1);
  assert.deepEqual(socket.take(), [{ event: "ping", data: "keep-alive" }]);
  await clock.advance(3_000);
  socket.receive({ event: "pong", data: "keep-alive" });
  await clock.advance(19_999);
  assert.deepEqual(socket.take(), []);
  assert.equal(client.state, "connected");
  await clock.advance(1);
  assert.deepEqual(socket.take(), [{ event: "ping", data: "keep-alive" }]);
  await clock.advance(4_999);
  assert.equal(client.state, "connected");
  await clock.advance(1);
  assert.equal(client.state, "disconnected");
  assert.ok(socket.closedByClient, "the dead socket is closed");
  assert.deepEqual(states.at(-1), ["disconnected", {
    code: 1006,
    reason: "keep-alive timeout",
    description: "connection lost without a close frame",
    retryIn: 1000,
  }]);
  await clock.advance(1000);
  assert.equal(net.sockets.length, 2);
  client.close();
});

test("client keep-alive: `offline` and `online` while connected probe at once; a busy connection never pings", async () => {
  const { clock, net, client } = setup({ keepAlive: { interval: 20, timeout: 5 } });
  const socket = net.last;
  socket.open();
  for (let i = 0; i < 10; i++) {
    await clock.advance(10_000);
    socket.receive({ event: "message", subscription: "x.y", data: i });
  }
  assert.deepEqual(socket.take(), []);
  globalThis.dispatchEvent(new Event("offline"));
  assert.deepEqual(socket.take(), [{ event: "ping", data: "keep-alive" }]);
  globalThis.dispatchEvent(new Event("online")); // a probe is already out
  assert.deepEqual(socket.take(), []);
  await clock.advance(5_000);
  assert.equal(client.state, "disconnected");
  client.close();
});

test("client close(): stops everything: no timer, no socket, no listener; waiting promises settle", async () => {
  const document = Object.assign(new EventTarget(), { visibilityState: "visible" });
  (globalThis as { document?: unknown }).document = document;
  try {
    const { clock, net, client } = setup({ keepAlive: { interval: 20, timeout: 5 }, auth: () => ({ ticket: "t" }) });
    const socket = net.last;
    autoAnswer(socket);
    socket.open();
    await tick();
    const sub = client.subscribe("books.1", { onMessage() {} });
    const pending = client.subscribe("books.2", { onMessage() {} });
    await tick();
    socket.onSend = undefined; // the server goes quiet
    const sending = client.send("books.1", 1);
    const pinging = client.ping();
    const leaving = sub.unsubscribe();
    assert.ok(clock.pending > 0, "keep-alive and stable timers run");
    client.close();
    assert.equal(clock.pending, 0, "no timer left");
    assert.equal(client.state, "closed");
    assert.deepEqual(socket.closedByClient, { code: 1000, reason: "client closed" });
    await assert.rejects(sending, (e: unknown) => e instanceof ShoalRequestError && e.reason === "closed");
    await assert.rejects(pinging, (e: unknown) => e instanceof ShoalRequestError && e.reason === "closed");
    assert.equal(await leaving, undefined);
    await sub.ready; // answered before the close
    assert.equal(pending.state, "unsubscribed");
    await assert.rejects(client.send("books.1", 2), (e: unknown) => e instanceof ShoalRequestError && e.reason === "closed");
    assert.throws(() => client.subscribe("books.3", { onMessage() {} }), ShoalRequestError);
    assert.throws(() => client.connect(), ShoalRequestError);
    globalThis.dispatchEvent(new Event("online"));
    document.dispatchEvent(new Event("visibilitychange"));
    socket.finishClose();
    await clock.advance(600_000);
    assert.equal(net.sockets.length, 1, "nothing reconnects");
  } finally {
    delete (globalThis as { document?: unknown }).document;
  }
});

test("client close(): a close before the socket opened, and an AbortSignal that closes the client", async () => {
  const { clock, net, client } = setup();
  client.close();
  assert.ok(net.last.closedByClient);
  assert.equal(clock.pending, 0);
  const controller = new AbortController();
  const second = setup({ signal: controller.signal });
  second.net.last.open();
  controller.abort();
  assert.equal(second.client.state, "closed");
  assert.equal(second.clock.pending, 0);
  const third = setup({ signal: AbortSignal.abort() });
  assert.equal(third.client.state, "closed");
  assert.equal(third.net.sockets.length, 0, "an aborted signal never connects");
});

test("client: options are checked; http(s) URLs become ws(s)", () => {
  const net = new FakeNetwork();
  assert.throws(() => new ShoalClient("ftp://x/", { WebSocket: net.WebSocket }), TypeError);
  assert.throws(() => new ShoalClient("ws://x/", { WebSocket: net.WebSocket, reconnect: { minDelay: 5, maxDelay: 1 } }), RangeError);
  assert.throws(() => new ShoalClient("ws://x/", { WebSocket: net.WebSocket, keepAlive: { interval: 0 } }), RangeError);
  const client = new ShoalClient("https://shoal.test/ws", { WebSocket: net.WebSocket });
  assert.equal(net.last.url, "wss://shoal.test/ws");
  assert.equal(client.url, "wss://shoal.test/ws");
  client.close();
});
