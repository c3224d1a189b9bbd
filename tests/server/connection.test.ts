import assert from "node:assert/strict";
import { test } from "node:test";
import type { WSContext } from "hono/ws";
import type { SocketSupport } from "../../src/runtime/runtime.ts";
import { BufferSweeper, connectionContext, newConnection } from "../../src/server/connection.ts";
import { Harness } from "../support/harness.ts";

const LIMIT = 64 * 1024;

/** A runtime socket whose buffered amount the test sets; records sends and closes. */
function fakeSocket(options: { reportsBackpressure?: boolean } = {}) {
  const state = { buffered: 0, sent: [] as string[], closes: [] as number[], measured: 0 };
  const support: SocketSupport = {
    upgradeOptions: () => undefined,
    // Like Bun when `reportsBackpressure`: the send itself says the client is past the limit; else like Deno.
    send: (_raw, text) => {
      state.sent.push(text);
      return !(options.reportsBackpressure && state.buffered > LIMIT);
    },
    close: (_raw, code) => void state.closes.push(code),
    bufferedAmount: () => {
      state.measured++;
      return state.buffered;
    },
  };
  return { state, support };
}

async function open(support: SocketSupport) {
  const h = await new Harness({ services: { s: { requireAuthentication: false } }, ws: { maxBufferedBytes: LIMIT } }, {
    fanout: false,
  }).start();
  const connection = newConnection(connectionContext(h.router, support, new BufferSweeper()));
  connection.onOpen(new Event("open"), { raw: {} } as WSContext);
  return connection;
}

test("send buffer: measured once every 16 small frames, so a client past the limit is closed with 1013 by then", async () => {
  const { state, support } = fakeSocket();
  const connection = await open(support);
  state.buffered = LIMIT + 1; // the client stopped reading
  for (let i = 0; i < 15; i++) connection.send("x");
  assert.equal(state.measured, 0, "no measurement before the 16th frame");
  assert.deepEqual(state.closes, []);
  connection.send("x");
  assert.equal(state.measured, 1);
  assert.deepEqual(state.closes, [1013]);
});

test("send buffer: a frame of an eighth of the limit is measured at once", async () => {
  const { state, support } = fakeSocket();
  const connection = await open(support);
  state.buffered = LIMIT + 1;
  connection.send("x".repeat(LIMIT / 8));
  assert.equal(state.measured, 1);
  assert.deepEqual(state.closes, [1013]);
});

test("send buffer: a client under the limit is measured and kept", async () => {
  const { state, support } = fakeSocket();
  const connection = await open(support);
  state.buffered = LIMIT;
  for (let i = 0; i < 32; i++) connection.send("x");
  assert.equal(state.measured, 2);
  assert.deepEqual(state.closes, []);
  assert.equal(state.sent.length, 32);
});

test("send buffer: a runtime that reports backpressure on the send closes the client on that send", async () => {
  const { state, support } = fakeSocket({ reportsBackpressure: true });
  const connection = await open(support);
  connection.send("x");
  state.buffered = LIMIT + 1;
  connection.send("x");
  assert.deepEqual(state.closes, [1013]);
  connection.send("x"); // closing: no second close
  assert.deepEqual(state.closes, [1013]);
});
