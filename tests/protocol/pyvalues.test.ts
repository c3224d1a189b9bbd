import assert from "node:assert/strict";
import { test } from "node:test";
import { finiteFloat, hashKey, isIsoDateTime, pyEquals, sliceCodePoints, truthy } from "../../src/protocol/pyvalues.ts";

// ---------------------------------------------------------------- truthy

test("truthy: Python's falsy JSON values are null, false, 0, 0.0, -0, empty string, list and object", () => {
  for (const value of [null, undefined, false, 0, 0.0, -0, "", [], {}]) {
    assert.equal(truthy(value), false, `${JSON.stringify(value)} should be falsy`);
  }
});

test("truthy: every other JSON value is truthy, including containers of falsy values and whitespace strings", () => {
  for (const value of [true, 1, -1, 0.5, 1e-300, "0", "false", " ", "a", [0], [null], [[]], { a: null }, { "": 0 }]) {
    assert.equal(truthy(value), true, `${JSON.stringify(value)} should be truthy`);
  }
});

// ---------------------------------------------------------------- pyEquals

test("pyEquals: true == 1 == 1.0 and false == 0 == 0.0, as in Python", () => {
  assert.equal(pyEquals(true, 1), true);
  assert.equal(pyEquals(1, true), true);
  assert.equal(pyEquals(1, 1.0), true);
  assert.equal(pyEquals(true, 1.0), true);
  assert.equal(pyEquals(false, 0), true);
  assert.equal(pyEquals(0, false), true);
  assert.equal(pyEquals(-0, 0), true);
  assert.equal(pyEquals(true, 2), false);
  assert.equal(pyEquals(false, 1), false);
  assert.equal(pyEquals(true, false), false);
  assert.equal(pyEquals(1.5, 1), false);
});

test("pyEquals: strings never equal numbers or booleans", () => {
  assert.equal(pyEquals("1", 1), false);
  assert.equal(pyEquals(1, "1"), false);
  assert.equal(pyEquals("true", true), false);
  assert.equal(pyEquals("", 0), false);
  assert.equal(pyEquals("", false), false);
  assert.equal(pyEquals("a", "a"), true);
  assert.equal(pyEquals("a", "A"), false);
});

test("pyEquals: null equals only null, and a missing value (undefined) counts as null", () => {
  assert.equal(pyEquals(null, null), true);
  assert.equal(pyEquals(undefined, null), true);
  assert.equal(pyEquals(null, undefined), true);
  assert.equal(pyEquals(undefined, undefined), true);
  for (const other of [0, false, "", [], {}, "null"]) {
    assert.equal(pyEquals(null, other), false, `null vs ${JSON.stringify(other)}`);
    assert.equal(pyEquals(other, null), false, `${JSON.stringify(other)} vs null`);
    assert.equal(pyEquals(undefined, other), false, `missing vs ${JSON.stringify(other)}`);
  }
});

test("pyEquals: lists compare element-wise and deeply, with Python number equality inside", () => {
  assert.equal(pyEquals([], []), true);
  assert.equal(pyEquals([1, "a", null], [1, "a", null]), true);
  assert.equal(pyEquals([1, [true, { x: 1 }]], [1.0, [1, { x: true }]]), true);
  assert.equal(pyEquals([1, 2], [2, 1]), false);
  assert.equal(pyEquals([1], [1, 1]), false);
  assert.equal(pyEquals([1, [2]], [1, [3]]), false);
  assert.equal(pyEquals(["1"], [1]), false);
});

test("pyEquals: objects compare by key set and values, whatever the key order", () => {
  assert.equal(pyEquals({}, {}), true);
  assert.equal(pyEquals({ a: 1, b: [1, 2] }, { b: [true, 2.0], a: 1.0 }), true);
  assert.equal(pyEquals({ a: { b: { c: null } } }, { a: { b: { c: null } } }), true);
  assert.equal(pyEquals({ a: 1 }, { a: 1, b: 2 }), false);
  assert.equal(pyEquals({ a: 1, b: 2 }, { a: 1 }), false);
  assert.equal(pyEquals({ a: 1 }, { b: 1 }), false);
  // A key present with null is not the same as a missing key inside a dict.
  assert.equal(pyEquals({ a: null }, { b: null }), false);
  assert.equal(pyEquals({ a: { b: 1 } }, { a: { b: "1" } }), false);
});

test("pyEquals: lists, objects and scalars are never equal to each other", () => {
  assert.equal(pyEquals([], {}), false);
  assert.equal(pyEquals({}, []), false);
  assert.equal(pyEquals([1], { 0: 1 }), false);
  assert.equal(pyEquals({ 0: 1 }, [1]), false);
  assert.equal(pyEquals([], 0), false);
  assert.equal(pyEquals({}, false), false);
  assert.equal(pyEquals("", []), false);
  assert.equal(pyEquals([1], 1), false);
});

// ---------------------------------------------------------------- finiteFloat

test("finiteFloat: numbers are themselves and booleans are 1 and 0", () => {
  assert.equal(finiteFloat(3), 3);
  assert.equal(finiteFloat(-2.5), -2.5);
  assert.equal(finiteFloat(0), 0);
  assert.equal(finiteFloat(1e308), 1e308);
  assert.equal(finiteFloat(true), 1);
  assert.equal(finiteFloat(false), 0);
});

test("finiteFloat: numeric strings as Python's float() reads them, surrounding whitespace allowed", () => {
  const cases: Array<[string, number]> = [
    ["3", 3],
    ["-3", -3],
    [" 2.5 ", 2.5],
    ["\t\n 7 \r\n", 7],
    ["1e3", 1000],
    ["1E3", 1000],
    ["1e-2", 0.01],
    ["-1.5e+2", -150],
    ["1_000", 1000],
    ["1_000.000_5", 1000.0005],
    ["1e1_0", 1e10],
    ["+1.5", 1.5],
    [".5", 0.5],
    ["-.5", -0.5],
    ["5.", 5],
    ["5.e1", 50],
    ["007", 7],
    ["0", 0],
  ];
  for (const [text, expected] of cases) assert.equal(finiteFloat(text), expected, JSON.stringify(text));
});

test("finiteFloat: strings Python's float() refuses are undefined", () => {
  for (const text of [
    "",
    " ",
    "abc",
    "1.2.3",
    "1 0",
    "1__000",
    "_1",
    "1_",
    "1_.5",
    "1._5",
    "1e",
    "e3",
    ".",
    "+",
    "-",
    "0x10",
    "1,5",
    "++1",
    "1e3.5",
    "invalid",
  ]) {
    assert.equal(finiteFloat(text), undefined, JSON.stringify(text));
  }
});

test("finiteFloat: nan, inf and infinity strings are rejected in any case and with any sign (decision 11)", () => {
  for (const text of ["nan", "NaN", "-nan", "inf", "-inf", "+inf", "INF", "infinity", "-Infinity", " inf ", "Infinity"]) {
    assert.equal(finiteFloat(text), undefined, JSON.stringify(text));
  }
});

test("finiteFloat: NaN, Infinity and strings that overflow to infinity are rejected", () => {
  assert.equal(finiteFloat(NaN), undefined);
  assert.equal(finiteFloat(Infinity), undefined);
  assert.equal(finiteFloat(-Infinity), undefined);
  assert.equal(finiteFloat("1e400"), undefined);
  assert.equal(finiteFloat("-1e400"), undefined);
});

test("finiteFloat: null, undefined, lists and objects are rejected", () => {
  for (const value of [null, undefined, [], [1], ["1"], {}, { a: 1 }]) {
    assert.equal(finiteFloat(value), undefined, JSON.stringify(value));
  }
});

// ---------------------------------------------------------------- hashKey

test("hashKey: 1, 1.0 and true are one dict key; 0, 0.0, -0 and false another", () => {
  assert.equal(hashKey(1), hashKey(1.0));
  assert.equal(hashKey(1), hashKey(true));
  assert.equal(hashKey(0), hashKey(false));
  assert.equal(hashKey(0), hashKey(-0));
  assert.notEqual(hashKey(1), hashKey(0));
  assert.notEqual(hashKey(1), hashKey(1.5));
  assert.equal(typeof hashKey(1), "string");
});

test("hashKey: strings are keys distinct from numbers, booleans and null", () => {
  assert.notEqual(hashKey("1"), hashKey(1));
  assert.notEqual(hashKey("true"), hashKey(true));
  assert.notEqual(hashKey("null"), hashKey(null));
  assert.notEqual(hashKey(""), hashKey(null));
  assert.notEqual(hashKey(""), hashKey(0));
  assert.equal(hashKey("a"), hashKey("a"));
  assert.notEqual(hashKey("a"), hashKey("b"));
  // No string can collide with a number's or null's key.
  for (const s of ["n1", "null", "s", "sa", "n0"]) {
    assert.notEqual(hashKey(s), hashKey(1));
    assert.notEqual(hashKey(s), hashKey(0));
    assert.notEqual(hashKey(s), hashKey(null));
  }
});

test("hashKey: null and a missing key are the same key", () => {
  assert.equal(typeof hashKey(null), "string");
  assert.equal(hashKey(null), hashKey(undefined));
});

test("hashKey: lists and objects are unhashable (undefined)", () => {
  for (const value of [[], [1], {}, { a: 1 }]) assert.equal(hashKey(value), undefined, JSON.stringify(value));
});

// ---------------------------------------------------------------- isIsoDateTime

test("isIsoDateTime: plain dates", () => {
  assert.equal(isIsoDateTime("2024-01-02"), true);
  assert.equal(isIsoDateTime("0001-01-01"), true);
  assert.equal(isIsoDateTime("9999-12-31"), true);
  assert.equal(isIsoDateTime("2024-1-02"), false);
  assert.equal(isIsoDateTime("24-01-02"), false);
  assert.equal(isIsoDateTime("0000-01-01"), false);
});

test("isIsoDateTime: date-times with minutes, seconds and fractions, with T or a space", () => {
  for (const text of [
    "2024-01-02T03:04",
    "2024-01-02T03:04:05",
    "2024-01-02 03:04:05",
    "2024-01-02T03:04:05.1",
    "2024-01-02T03:04:05.123",
    "2024-01-02T03:04:05.123456",
    "2024-01-02T03",
    "2024-01-02T00:00:00",
    "2024-01-02T23:59:59.999999",
  ]) {
    assert.equal(isIsoDateTime(text), true, text);
  }
});

test("isIsoDateTime: Z and numeric offsets, with and without a colon", () => {
  for (const text of [
    "2024-01-02T03:04:05Z",
    "2024-01-02T03:04:05.123Z",
    "2024-01-02T03:04:05+00:00",
    "2024-01-02T03:04:05.123+00:00",
    "2024-01-02T03:04:05+05:30",
    "2024-01-02T03:04:05+0530",
    "2024-01-02T03:04:05-08:00",
    "2024-01-02T03:04:05-0800",
    "2024-01-02T03:04:05+23:59",
  ]) {
    assert.equal(isIsoDateTime(text), true, text);
  }
});

test("isIsoDateTime: out-of-range month, day, hour, minute, second and offset hour are invalid", () => {
  for (const text of [
    "2024-13-01",
    "2024-00-01",
    "2024-01-00",
    "2024-01-32",
    "2024-04-31",
    "2024-06-31",
    "2024-09-31",
    "2024-11-31",
    "2024-01-02T24:00:00",
    "2024-01-02T25:00",
    "2024-01-02T03:60",
    "2024-01-02T03:04:60",
    "2024-01-02T03:04:05+24:00",
  ]) {
    assert.equal(isIsoDateTime(text), false, text);
  }
  assert.equal(isIsoDateTime("2024-12-31"), true);
  assert.equal(isIsoDateTime("2024-04-30"), true);
  assert.equal(isIsoDateTime("2024-01-31"), true);
});

test("isIsoDateTime: February 29 exists only in leap years (every 4th, not every 100th, every 400th)", () => {
  assert.equal(isIsoDateTime("2024-02-29"), true);
  assert.equal(isIsoDateTime("2000-02-29"), true);
  assert.equal(isIsoDateTime("2400-02-29T12:00:00Z"), true);
  assert.equal(isIsoDateTime("2023-02-29"), false);
  assert.equal(isIsoDateTime("1900-02-29"), false);
  assert.equal(isIsoDateTime("2100-02-29T00:00:00"), false);
  assert.equal(isIsoDateTime("2023-02-28"), true);
  assert.equal(isIsoDateTime("2024-02-30"), false);
});

test("isIsoDateTime: garbage, partial and padded strings are invalid", () => {
  for (const text of [
    "",
    "not a date",
    "2024",
    "2024-01",
    "2024-01-02T",
    "2024-01-02T03:04:05+",
    "2024-01-02T03:04:05.",
    " 2024-01-02",
    "2024-01-02 ",
    "2024-01-02T3:04",
    "2024/01/02",
    "1704164645",
    "2024-01-02T03:04:05ZZ",
  ]) {
    assert.equal(isIsoDateTime(text), false, JSON.stringify(text));
  }
});

test("isIsoDateTime: the ISO-8601 basic and week-date forms Python 3.11's fromisoformat accepts", () => {
  // datetime.fromisoformat (3.11+) reads all of these; SocketShark would deliver them (re-formatted), so a
  // published_at in one of these forms must not be dropped (docs/protocol.md §10.8).
  const rejected = ["20240102", "20240102T030405", "20240102T030405Z", "2024-W01-1", "2024W011", "2024-W01", "2020-W53-7"].filter(
    (text) => !isIsoDateTime(text),
  );
  assert.deepEqual(rejected, []);
});

// ---------------------------------------------------------------- sliceCodePoints

test("sliceCodePoints: counts code points, so astral characters are never split", () => {
  const smile = "\u{1F600}"; // two UTF-16 units
  assert.equal(sliceCodePoints("hello", 3), "hel");
  assert.equal(sliceCodePoints("hello", 5), "hello");
  assert.equal(sliceCodePoints("hello", 10), "hello");
  assert.equal(sliceCodePoints("hello", 0), "");
  assert.equal(sliceCodePoints("", 3), "");
  assert.equal(sliceCodePoints(smile.repeat(3), 2), smile.repeat(2));
  assert.equal(sliceCodePoints(`a${smile}b${smile}c`, 3), `a${smile}b`);
  assert.equal(sliceCodePoints(`a${smile}`, 1), "a");
  assert.equal(sliceCodePoints(smile.repeat(200), 128), smile.repeat(128));
  assert.equal([...sliceCodePoints(smile.repeat(200), 128)].length, 128);
  // 128 astral characters are 256 UTF-16 units but within a 128-code-point limit.
  assert.equal(sliceCodePoints(smile.repeat(128), 128), smile.repeat(128));
  assert.equal(sliceCodePoints("é".repeat(130), 128), "é".repeat(128));
});

test("finiteFloat: a megabyte of digits is read in one pass, whatever ends it", () => {
  // A backtracking regex took quadratic time here (100k digits froze the event loop for seconds): with 1 MB
  // this test would not finish.
  const digits = "1".repeat(1024 * 1024);
  assert.equal(finiteFloat(`${digits}x`), undefined);
  assert.equal(finiteFloat(`${digits}_`), undefined);
  assert.equal(finiteFloat(`${digits}.${digits}e`), undefined);
  assert.equal(finiteFloat(`1_${"2_".repeat(500_000)}`), undefined);
  assert.equal(finiteFloat(`0.${digits}`), 0.1111111111111111);
  assert.equal(finiteFloat(digits), undefined, "too large for a double: infinite, so invalid");
});

test("finiteFloat: underscores only between digits, a point needs a digit beside it, an exponent needs digits", () => {
  for (const text of ["1_000.5", "1.", ".5", "1e5", "1E+5", "-1_0e-1_0", "+.5e1"]) {
    assert.notEqual(finiteFloat(text), undefined, text);
  }
  for (const text of ["_1", "1_", "1__0", "1._5", "1_.5", ".", "e5", "1e", "1e+", "1e_5", "--1", "1.2.3", "0x10", "1 2"]) {
    assert.equal(finiteFloat(text), undefined, text);
  }
});
