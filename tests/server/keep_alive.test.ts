import assert from "node:assert/strict";
import { test } from "node:test";
import { KeepAlive } from "../../src/server/keep_alive.ts";
import { FakeClock } from "../support/fake_clock.ts";

function keepAlive(clock: FakeClock, interval: number, timeout: number) {
  const pings: number[] = [];
  const timeouts: number[] = [];
  const start = clock.now();
  const k = new KeepAlive(clock, { interval, timeout }, {
    ping: () => pings.push(clock.now() - start),
    pingTimedOut: () => timeouts.push(clock.now() - start),
  });
  return { k, pings, timeouts };
}

test("keep-alive: a ping every interval while pongs come back; the round trip is taken off the next wait", async () => {
  const clock = new FakeClock();
  const { k, pings, timeouts } = keepAlive(clock, 15, 15);
  k.start();
  await clock.advance(14_999);
  assert.deepEqual(pings, []);
  await clock.advance(1);
  assert.deepEqual(pings, [15_000]);
  await clock.advance(200); // the pong takes 200 ms
  k.pong();
  await clock.advance(14_799);
  assert.deepEqual(pings, [15_000], "next ping waits interval minus the 200 ms round trip");
  await clock.advance(1);
  assert.deepEqual(pings, [15_000, 30_000]);
  k.pong();
  await clock.advance(15_000);
  assert.deepEqual(pings, [15_000, 30_000, 45_000]);
  assert.deepEqual(timeouts, []);
  k.stop();
  assert.equal(clock.pending, 0);
});

test("keep-alive: no pong within timeout gives up once, at ping time plus timeout; a late pong changes nothing", async () => {
  const clock = new FakeClock();
  const { k, pings, timeouts } = keepAlive(clock, 1, 1);
  k.start();
  await clock.advance(1999);
  assert.deepEqual(pings, [1000]);
  assert.deepEqual(timeouts, []);
  await clock.advance(1);
  assert.deepEqual(timeouts, [2000], "SocketShark: ping at 1.0 s, close at 2.0 s");
  k.pong();
  await clock.advance(10_000);
  assert.deepEqual(pings, [1000], "no more pings after the timeout");
  assert.deepEqual(timeouts, [2000]);
  assert.equal(clock.pending, 0);
  assert.equal(k.running, false);
});

test("keep-alive: interval 0 disables it; stop() cancels a pending ping and a pending timeout", async () => {
  const clock = new FakeClock();
  const off = keepAlive(clock, 0, 15);
  off.k.start();
  assert.equal(clock.pending, 0);

  const waiting = keepAlive(clock, 5, 5);
  waiting.k.start();
  waiting.k.stop();
  assert.equal(clock.pending, 0);

  const outstanding = keepAlive(clock, 5, 5);
  outstanding.k.start();
  await clock.advance(5000);
  assert.deepEqual(outstanding.pings, [5000]);
  outstanding.k.stop();
  assert.equal(clock.pending, 0);
  await clock.advance(60_000);
  assert.deepEqual(outstanding.timeouts, []);
  assert.deepEqual(off.pings, []);
});

test("keep-alive: a pong with no ping outstanding is ignored", async () => {
  const clock = new FakeClock();
  const { k, pings } = keepAlive(clock, 10, 10);
  k.start();
  await clock.advance(3000);
  k.pong(); // unsolicited: must not reschedule
  await clock.advance(7000);
  assert.deepEqual(pings, [10_000]);
  k.stop();
});
