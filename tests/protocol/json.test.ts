import assert from "node:assert/strict";
import { test } from "node:test";
import { jsonDepthExceeds, MAX_JSON_DEPTH, parsedWeight, parseJson } from "../../src/protocol/json.ts";

const nested = (depth: number, open = "[", close = "]") => open.repeat(depth) + close.repeat(depth);

test("parseJson: values up to the depth limit parse as JSON.parse would", () => {
  for (const text of ["1", '"x"', "null", "[]", "{}", '{"a":[1,{"b":2}]}', nested(MAX_JSON_DEPTH)]) {
    assert.deepEqual(parseJson(text), { ok: true, value: JSON.parse(text) }, text.slice(0, 40));
  }
});

test("parseJson: one level past the limit is refused as too deep, arrays and objects alike", () => {
  assert.deepEqual(parseJson(nested(MAX_JSON_DEPTH + 1)), { ok: false, reason: "too deep" });
  assert.deepEqual(parseJson('{"a":'.repeat(MAX_JSON_DEPTH + 1) + "1" + "}".repeat(MAX_JSON_DEPTH + 1)), {
    ok: false,
    reason: "too deep",
  });
  assert.deepEqual(parseJson(nested(100_000)), { ok: false, reason: "too deep" });
});

test("parseJson: brackets inside strings, escaped quotes included, do not count", () => {
  const inString = JSON.stringify({ a: "[".repeat(1000), b: '\\"[[[[' + "{".repeat(500) });
  assert.deepEqual(parseJson(inString), { ok: true, value: JSON.parse(inString) });
  assert.equal(jsonDepthExceeds(`["\\\\", ${nested(3)}]`, 3), true, "an escaped backslash ends before the quote");
  assert.equal(jsonDepthExceeds(`["\\"[[[[", ${nested(2)}]`, 3), false);
});

test("parseJson: text that is not JSON is invalid, however it nests", () => {
  assert.deepEqual(parseJson("{"), { ok: false, reason: "invalid" });
  assert.deepEqual(parseJson("]]]]"), { ok: false, reason: "invalid" });
  assert.deepEqual(parseJson(""), { ok: false, reason: "invalid" });
});

test("parsedWeight: length plus 32 bytes per object, array or element, for text and bytes alike", () => {
  assert.equal(parsedWeight('"abc"'), 5);
  assert.equal(parsedWeight("[1,2,3]"), 7 + 3 * 32);
  const dense = `[${Array(1000).fill("{}").join(",")}]`;
  assert.equal(parsedWeight(dense), dense.length + (1 + 1000 + 999) * 32);
  assert.equal(parsedWeight(new TextEncoder().encode(dense)), parsedWeight(dense));
  assert.equal(parsedWeight(new TextEncoder().encode(dense).buffer), parsedWeight(dense));
});
