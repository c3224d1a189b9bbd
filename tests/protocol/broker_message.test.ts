import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type MessageOptions,
  type ParseResult,
  parsePublishedMessage,
  parsePublishedPayload,
  type PublishedMessage,
  readOptions,
} from "../../src/protocol/broker_message.ts";
import { hashKey } from "../../src/protocol/pyvalues.ts";

const NULL_KEY = hashKey(null);

/** The four option fields, so absent and undefined compare alike on every runner. */
function plain(o: MessageOptions): { order?: number; orderKey: string; throttle?: number; throttleKey: string } {
  return { order: o.order, orderKey: o.orderKey, throttle: o.throttle, throttleKey: o.throttleKey };
}

const NONE = { order: undefined, orderKey: NULL_KEY, throttle: undefined, throttleKey: NULL_KEY };

function ok(result: ParseResult): { message: PublishedMessage; warnings: readonly string[] } {
  assert.equal(result.ok, true, `expected ok, got ${JSON.stringify(result)}`);
  if (!result.ok) throw new Error("unreachable");
  return { message: result.message, warnings: result.warnings };
}

function notOk(result: ParseResult): void {
  assert.equal(result.ok, false, `expected not ok, got ${JSON.stringify(result)}`);
  if (result.ok) throw new Error("unreachable");
  assert.equal(typeof result.reason, "string");
  assert.notEqual(result.reason, "");
}

/** Options of a message published with these raw options. */
function optionsOf(raw: unknown): { options: ReturnType<typeof plain>; warnings: readonly string[] } {
  const { message, warnings } = ok(parsePublishedMessage({ subscription: "s.t", data: 1, options: raw }));
  return { options: plain(message.options), warnings };
}

// ---------------------------------------------------------------- shape

test("parsePublishedPayload: a complete message is parsed, with every field", () => {
  const input = {
    subscription: "books.book_1",
    data: { title: "Dune", tags: ["a", null] },
    options: { order: 3, order_key: "k", throttle: 0.5, throttle_key: 1 },
    published_at: "2024-01-02T03:04:05.123+00:00",
    user_id: 7,
    ignored: "kept in fields only",
  };
  const { message, warnings } = ok(parsePublishedPayload(JSON.stringify(input)));
  assert.equal(message.subscription, "books.book_1");
  assert.deepEqual(message.data, { title: "Dune", tags: ["a", null] });
  assert.deepEqual(plain(message.options), { order: 3, orderKey: hashKey("k"), throttle: 0.5, throttleKey: hashKey(1) });
  assert.equal(message.publishedAt, "2024-01-02T03:04:05.123+00:00");
  assert.deepEqual(message.fields, input);
  assert.deepEqual(warnings, []);
});

test("parsePublishedPayload: a minimal message has no options, no published_at and no warnings", () => {
  const { message, warnings } = ok(parsePublishedPayload('{"subscription":"a.b","data":"x"}'));
  assert.equal(message.subscription, "a.b");
  assert.equal(message.data, "x");
  assert.deepEqual(plain(message.options), NONE);
  assert.equal(message.publishedAt, undefined);
  assert.deepEqual(message.fields, { subscription: "a.b", data: "x" });
  assert.deepEqual(warnings, []);
});

test("parsePublishedPayload: data null is a valid message with null data", () => {
  const { message, warnings } = ok(parsePublishedPayload('{"subscription":"a.b","data":null}'));
  assert.equal(message.data, null);
  assert.equal(Object.hasOwn(message.fields, "data"), true);
  assert.deepEqual(warnings, []);
});

test("parsePublishedPayload: invalid JSON is not ok", () => {
  for (const payload of ["{", "not json", "", '{"subscription":"a.b","data":1', '{"subscription":"a.b","data":1}x']) {
    notOk(parsePublishedPayload(payload));
  }
});

test("parsePublishedPayload: JSON that is not an object with subscription and data is not ok", () => {
  for (const payload of [
    "[1,2]",
    "null",
    '"a.b"',
    "5",
    "true",
    "{}",
    '{"subscription":"a.b"}',
    '{"data":1}',
    '{"subscription":null,"data":1}',
    '{"subscription":5,"data":1}',
    '{"subscription":["a.b"],"data":1}',
  ]) {
    notOk(parsePublishedPayload(payload));
  }
});

test("parsePublishedMessage: takes an already decoded value with the same rules", () => {
  notOk(parsePublishedMessage(null));
  notOk(parsePublishedMessage(undefined));
  notOk(parsePublishedMessage([{ subscription: "a.b", data: 1 }]));
  notOk(parsePublishedMessage({ subscription: "a.b" }));
  notOk(parsePublishedMessage({ data: 1 }));
  const { message } = ok(parsePublishedMessage({ subscription: "a.b", data: [1], session_id: null }));
  assert.deepEqual(message.data, [1]);
  assert.deepEqual(message.fields, { subscription: "a.b", data: [1], session_id: null });
});

// ---------------------------------------------------------------- options container

test("options: absent means no options and no warning", () => {
  assert.deepEqual(optionsOf(undefined), { options: NONE, warnings: [] });
  assert.deepEqual(plain(readOptions(undefined)), NONE);
});

test("options: null is ignored with a warning and the message is still delivered (decision 7)", () => {
  const { message, warnings } = ok(parsePublishedPayload('{"subscription":"a.b","data":1,"options":null}'));
  assert.deepEqual(plain(message.options), NONE);
  assert.equal(message.data, 1);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /options/);
});

test("options: a string, number, boolean or list means no options", () => {
  for (const raw of ["order", "", 5, true, [], ["order"], [{ order: 1 }]]) {
    assert.deepEqual(optionsOf(raw).options, NONE, JSON.stringify(raw));
  }
});

test("options: an empty object, or unrelated keys, means no options", () => {
  assert.deepEqual(optionsOf({}), { options: NONE, warnings: [] });
  assert.deepEqual(optionsOf({ foo: 1, order_key: "k", throttle_key: "t" }), { options: NONE, warnings: [] });
});

// ---------------------------------------------------------------- order

test("order: numbers, booleans and numeric strings are read as Python's float()", () => {
  const cases: Array<[unknown, number]> = [
    [3, 3],
    [1.5, 1.5],
    [-2, -2],
    [0, 0],
    [true, 1],
    [false, 0],
    ["3", 3],
    [" 2.5 ", 2.5],
    ["1e3", 1000],
    ["1_000", 1000],
    ["+1.5", 1.5],
    [".5", 0.5],
  ];
  for (const [raw, expected] of cases) {
    const { options, warnings } = optionsOf({ order: raw });
    assert.deepEqual(options, { ...NONE, order: expected }, JSON.stringify(raw));
    assert.deepEqual(warnings, []);
  }
});

test("order: order_key is kept as a Python dict key; 1, 1.0 and true are the same key", () => {
  assert.equal(optionsOf({ order: 1, order_key: "other" }).options.orderKey, hashKey("other"));
  assert.equal(optionsOf({ order: 1, order_key: 1 }).options.orderKey, hashKey(1));
  assert.equal(optionsOf({ order: 1, order_key: true }).options.orderKey, hashKey(1));
  assert.equal(optionsOf({ order: 1, order_key: null }).options.orderKey, NULL_KEY);
  assert.notEqual(optionsOf({ order: 1, order_key: "1" }).options.orderKey, hashKey(1));
});

test("order: an invalid value is ignored together with its key, with a warning", () => {
  for (const raw of ["invalid", "", null, [], [1], {}, { a: 1 }, "1 2", "0x10"]) {
    const { options, warnings } = optionsOf({ order: raw, order_key: "k" });
    assert.deepEqual(options, NONE, JSON.stringify(raw));
    assert.equal(warnings.length, 1, JSON.stringify(raw));
  }
});

test("order: non-finite values are ignored (decision 11)", () => {
  for (const raw of ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"]) {
    assert.deepEqual(optionsOf({ order: raw, order_key: "k" }).options, NONE, raw);
  }
  // JSON numbers too large for a double parse as Infinity.
  const { message, warnings } = ok(
    parsePublishedPayload('{"subscription":"a.b","data":1,"options":{"order":1e400,"order_key":"k"}}'),
  );
  assert.deepEqual(plain(message.options), NONE);
  assert.equal(warnings.length, 1);
});

test("order: an unhashable order_key (list or object) makes the order ignored, and the message is still ok", () => {
  for (const key of [[1], [], { a: 1 }, {}]) {
    const { options, warnings } = optionsOf({ order: 5, order_key: key });
    assert.deepEqual(options, NONE, JSON.stringify(key));
    assert.equal(warnings.length, 1);
  }
});

test("order: order_key without order does nothing", () => {
  assert.deepEqual(optionsOf({ order_key: "k" }), { options: NONE, warnings: [] });
});

// ---------------------------------------------------------------- throttle

test("throttle: positive numbers and numeric strings are read, with their key", () => {
  assert.deepEqual(optionsOf({ throttle: 0.2 }).options, { ...NONE, throttle: 0.2 });
  assert.deepEqual(optionsOf({ throttle: "1.5", throttle_key: "other" }).options, {
    ...NONE,
    throttle: 1.5,
    throttleKey: hashKey("other"),
  });
  assert.deepEqual(optionsOf({ throttle: true }).options, { ...NONE, throttle: 1 });
});

test("throttle: zero or negative windows are ignored", () => {
  for (const raw of [0, -1, -0.5, "0", "-0.5", false, "-1e3"]) {
    const { options } = optionsOf({ throttle: raw, throttle_key: "k" });
    assert.equal(options.throttle, undefined, JSON.stringify(raw));
    assert.equal(options.order, undefined);
  }
});

test("throttle: invalid, non-finite values or an unhashable key are ignored with a warning", () => {
  for (const [raw, key] of [
    ["invalid", "k"],
    [null, "k"],
    ["inf", "k"],
    ["nan", "k"],
    [{}, "k"],
    [1, [1]],
    [1, { a: 1 }],
  ] as Array<[unknown, unknown]>) {
    const { options, warnings } = optionsOf({ throttle: raw, throttle_key: key });
    assert.deepEqual(options, NONE, JSON.stringify([raw, key]));
    assert.equal(warnings.length, 1);
  }
});

test("options: order and throttle are independent, each with its own key namespace", () => {
  assert.deepEqual(optionsOf({ order: 2, order_key: "a", throttle: 0.2, throttle_key: "b" }).options, {
    order: 2,
    orderKey: hashKey("a"),
    throttle: 0.2,
    throttleKey: hashKey("b"),
  });
  // An invalid order leaves a valid throttle alone, and the reverse.
  const badOrder = optionsOf({ order: "x", order_key: "a", throttle: 1, throttle_key: "b" });
  assert.deepEqual(badOrder.options, { ...NONE, throttle: 1, throttleKey: hashKey("b") });
  assert.equal(badOrder.warnings.length, 1);
  const badThrottle = optionsOf({ order: 4, order_key: "a", throttle: "x", throttle_key: "b" });
  assert.deepEqual(badThrottle.options, { ...NONE, order: 4, orderKey: hashKey("a") });
  assert.equal(badThrottle.warnings.length, 1);
});

test("readOptions: reads a before_subscribe answer's options and appends warnings to the given list", () => {
  assert.deepEqual(plain(readOptions({ order: 2 })), { ...NONE, order: 2 });
  const warnings: string[] = ["earlier"];
  assert.deepEqual(plain(readOptions({ order: "bad", throttle: "worse" }, warnings)), NONE);
  assert.equal(warnings.length, 3);
  assert.equal(warnings[0], "earlier");
  const none: string[] = [];
  assert.deepEqual(plain(readOptions(null, none)), NONE);
  assert.equal(none.length, 1);
  assert.deepEqual(plain(readOptions("order")), NONE);
  assert.deepEqual(plain(readOptions([1, 2])), NONE);
});

// ---------------------------------------------------------------- published_at

test("published_at: a valid ISO-8601 string is passed through unchanged", () => {
  for (const at of ["2024-01-02", "2024-01-02T03:04:05.123+00:00", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05+0530"]) {
    const { message, warnings } = ok(parsePublishedMessage({ subscription: "a.b", data: 1, published_at: at }));
    assert.equal(message.publishedAt, at);
    assert.deepEqual(warnings, []);
  }
});

test("published_at: an unparsable string is dropped with a warning, and the message is delivered", () => {
  for (const at of ["yesterday", "", "2024-02-30", "2024-01-02T25:00"]) {
    const { message, warnings } = ok(parsePublishedMessage({ subscription: "a.b", data: "d", published_at: at }));
    assert.equal(message.publishedAt, undefined, at);
    assert.equal(message.data, "d");
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /published_at/);
  }
});

test("published_at: a non-string value is dropped with a warning, and the message is delivered (decision 7)", () => {
  for (const at of [1704164645, 0, true, null, ["2024-01-02"], { at: "2024-01-02" }]) {
    const { message, warnings } = ok(parsePublishedMessage({ subscription: "a.b", data: "d", published_at: at }));
    assert.equal(message.publishedAt, undefined, JSON.stringify(at));
    assert.equal(message.subscription, "a.b");
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /published_at/);
    // The raw value stays visible in fields (filter fields are looked up there).
    assert.deepEqual(message.fields.published_at, at);
  }
});

test("warnings: several bad optional fields give one warning each, and the message is still ok", () => {
  const { message, warnings } = ok(
    parsePublishedPayload('{"subscription":"a.b","data":1,"options":{"order":"x","throttle":"y"},"published_at":5}'),
  );
  assert.deepEqual(plain(message.options), NONE);
  assert.equal(message.publishedAt, undefined);
  assert.equal(warnings.length, 3);
});
