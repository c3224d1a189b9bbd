import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffDelay, isoTimestamp, raceTimeout, withTimeout } from "../../src/core/clock.ts";
import { FakeClock } from "../support/fake_clock.ts";

test("isoTimestamp: Python's isoformat() shape, microseconds and +00:00", () => {
  assert.equal(isoTimestamp(Date.UTC(2026, 10, 22, 2, 52, 18, 131)), "2026-11-22T02:52:18.131000+00:00");
  assert.equal(isoTimestamp(0), "1970-01-01T00:00:00.000000+00:00");
});

test("isoTimestamp: the same millisecond twice gives the same text; the next one its own", () => {
  const ms = Date.UTC(2026, 11, 1, 19, 24, 20, 991);
  assert.equal(isoTimestamp(ms), "2026-12-01T19:24:20.991000+00:00");
  assert.equal(isoTimestamp(ms), "2026-12-01T19:24:20.991000+00:00");
  assert.equal(isoTimestamp(ms + 1), "2026-12-01T19:24:20.992000+00:00");
  assert.equal(isoTimestamp(ms), "2026-12-01T19:24:20.991000+00:00");
});

test("raceTimeout: the promise's value when it settles first, the fallback's when time runs out; no timer left", async () => {
  const clock = new FakeClock();
  assert.equal(await raceTimeout(Promise.resolve("done"), 1000, () => "late", clock), "done");
  const pending = raceTimeout(new Promise<string>(() => {}), 1000, () => "late", clock);
  await clock.advance(999);
  assert.equal(clock.pending, 1, "the timeout has not fired");
  await clock.advance(1);
  assert.equal(await pending, "late");
  await assert.rejects(raceTimeout(Promise.reject(new Error("boom")), 1000, () => "late", clock), /boom/);
  assert.equal(clock.pending, 0, "every timer cleared");
});

test("withTimeout: rejects naming what did not happen and the limit", async () => {
  await assert.rejects(withTimeout(new Promise(() => {}), 0.01, "no answer"), /^Error: no answer within 0.01 s$/);
  await assert.rejects(withTimeout(new Promise(() => {}), 0.01, "no connection", 10), /no connection within 10 s/);
  assert.equal(await withTimeout(Promise.resolve(7), 1, "x"), 7);
});

test("backoffDelay: 100 ms doubling, capped, with at most jitterMs on top", () => {
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, { maxMs: 500, jitterMs: 0 })), [100, 200, 400, 500]);
  for (let i = 0; i < 100; i++) {
    const delay = backoffDelay(10, { maxMs: 5000 });
    assert.ok(delay >= 5000 && delay < 5100, `${delay}`);
  }
});
