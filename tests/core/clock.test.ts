import assert from "node:assert/strict";
import { test } from "node:test";
import { isoTimestamp } from "../../src/core/clock.ts";

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
