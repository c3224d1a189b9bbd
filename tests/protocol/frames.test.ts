import assert from "node:assert/strict";
import { test } from "node:test";
import { errorFrame, INVALID_EVENT_FRAME, messageFrame, okFrame, pongFrame, revokedFrame } from "../../src/protocol/frames.ts";

// ---------------------------------------------------------------- invalid event

test("INVALID_EVENT_FRAME: status and error only, no event key", () => {
  assert.deepEqual(INVALID_EVENT_FRAME, { status: "error", error: "Messages must be JSON and contain an event field." });
  assert.equal(Object.hasOwn(INVALID_EVENT_FRAME, "event"), false);
  assert.equal(Object.isFrozen(INVALID_EVENT_FRAME), true);
});

// ---------------------------------------------------------------- okFrame

test("okFrame: just event and status by default", () => {
  assert.deepEqual(okFrame("auth"), { event: "auth", status: "ok" });
});

test("okFrame: data is kept unless null, falsy values included", () => {
  for (const data of [{}, [], 0, "", false, "x", { a: 1 }, [null]]) {
    assert.deepEqual(okFrame("message", { data }), { event: "message", status: "ok", data }, JSON.stringify(data));
  }
  assert.deepEqual(okFrame("message", { data: null }), { event: "message", status: "ok" });
  assert.deepEqual(okFrame("message", { data: undefined }), { event: "message", status: "ok" });
  assert.equal(Object.hasOwn(okFrame("message", { data: null }), "data"), false);
});

test("okFrame: extra fields follow status, then data, then subscription, in SocketShark's key order", () => {
  const frame = okFrame("subscribe", { extra: { extra: "X", other: null }, data: { d: 1 }, subscription: "svc.t" });
  assert.deepEqual(frame, { event: "subscribe", status: "ok", extra: "X", other: null, data: { d: 1 }, subscription: "svc.t" });
  assert.deepEqual(Object.keys(frame), ["event", "status", "extra", "other", "data", "subscription"]);
});

test("okFrame: subscription is added last, so it overrides an extra field of that name", () => {
  const frame = okFrame("subscribe", { extra: { subscription: "spoofed", x: 1 }, subscription: "svc.real" });
  assert.equal(frame.subscription, "svc.real");
  assert.deepEqual(frame, { event: "subscribe", status: "ok", subscription: "svc.real", x: 1 });
});

test("okFrame: the extra object is copied, not kept or changed", () => {
  const extra = { a: 1 };
  const frame = okFrame("subscribe", { extra, subscription: "s.t" });
  frame.a = 2;
  assert.deepEqual(extra, { a: 1 });
});

// ---------------------------------------------------------------- errorFrame

test("errorFrame: event, status and error, the error forwarded as is (null included)", () => {
  assert.deepEqual(errorFrame("auth", "Authentication failed."), { event: "auth", status: "error", error: "Authentication failed." });
  assert.deepEqual(errorFrame("auth", null), { event: "auth", status: "error", error: null });
  assert.equal(Object.hasOwn(errorFrame("auth", null), "error"), true);
  assert.deepEqual(errorFrame("message", { code: 5 }), { event: "message", status: "error", error: { code: 5 } });
});

test("errorFrame: falsy data ({}, [], 0, '', false, null) is dropped", () => {
  for (const data of [{}, [], 0, "", false, null, undefined]) {
    const frame = errorFrame("message", "Unhandled exception.", { data, subscription: "s.t" });
    assert.deepEqual(frame, { event: "message", status: "error", error: "Unhandled exception.", subscription: "s.t" }, JSON.stringify(data));
    assert.equal(Object.hasOwn(frame, "data"), false);
  }
});

test("errorFrame: truthy data is kept", () => {
  for (const data of [{ a: 0 }, [0], 1, -1, "0", " ", true, { "": null }]) {
    assert.deepEqual(
      errorFrame("subscribe", "Unauthorized.", { data }),
      { event: "subscribe", status: "error", error: "Unauthorized.", data },
      JSON.stringify(data),
    );
  }
});

test("errorFrame: extra fields after error, then data, then subscription last", () => {
  const frame = errorFrame("unsubscribe", "nope", { extra: { extra: "e" }, data: { why: 1 }, subscription: "svc.t" });
  assert.deepEqual(frame, { event: "unsubscribe", status: "error", error: "nope", extra: "e", data: { why: 1 }, subscription: "svc.t" });
  assert.deepEqual(Object.keys(frame), ["event", "status", "error", "extra", "data", "subscription"]);
  const spoofed = errorFrame("message", "x", { extra: { subscription: "spoofed" }, subscription: "svc.real" });
  assert.deepEqual(spoofed, { event: "message", status: "error", error: "x", subscription: "svc.real" });
});

test("errorFrame: no subscription key unless one is given", () => {
  const frame = errorFrame("subscribe", "Invalid subscription format.");
  assert.deepEqual(frame, { event: "subscribe", status: "error", error: "Invalid subscription format." });
  assert.equal(Object.hasOwn(frame, "subscription"), false);
});

// ---------------------------------------------------------------- pongFrame

test("pongFrame: string data is echoed; a missing data key gives null", () => {
  assert.deepEqual(pongFrame("hello"), { event: "pong", data: "hello" });
  assert.deepEqual(pongFrame(""), { event: "pong", data: "" });
  assert.deepEqual(pongFrame(undefined), { event: "pong", data: null });
  assert.equal(Object.hasOwn(pongFrame(undefined), "data"), true);
});

test("pongFrame: non-string data becomes null", () => {
  for (const data of [123, 0, true, false, null, [], ["a"], {}, { a: "b" }]) {
    assert.deepEqual(pongFrame(data), { event: "pong", data: null }, JSON.stringify(data));
  }
});

test("pongFrame: data is cut to 128 code points, astral characters counted as one", () => {
  assert.deepEqual(pongFrame("a".repeat(128)), { event: "pong", data: "a".repeat(128) });
  assert.deepEqual(pongFrame("a".repeat(129)), { event: "pong", data: "a".repeat(128) });
  assert.deepEqual(pongFrame("b".repeat(1000)), { event: "pong", data: "b".repeat(128) });
  const smile = "\u{1F600}";
  assert.deepEqual(pongFrame(smile.repeat(128)), { event: "pong", data: smile.repeat(128) });
  assert.deepEqual(pongFrame(smile.repeat(130)), { event: "pong", data: smile.repeat(128) });
  assert.deepEqual(pongFrame("x" + smile.repeat(200)), { event: "pong", data: "x" + smile.repeat(127) });
});

// ---------------------------------------------------------------- revokedFrame

test("revokedFrame: event unsubscribe, the subscription and the error, with no status key", () => {
  const frame = revokedFrame("svc.t", "Unauthorized.");
  assert.deepEqual(frame, { event: "unsubscribe", subscription: "svc.t", error: "Unauthorized." });
  assert.equal(Object.hasOwn(frame, "status"), false);
  assert.deepEqual(revokedFrame("svc.t", null), { event: "unsubscribe", subscription: "svc.t", error: null });
});

test("revokedFrame: optional data (unless null) before error, then the extra fields", () => {
  const frame = revokedFrame("svc.t", "no longer authorized", { data: { d: 1 }, extra: { extra: "X" } });
  assert.deepEqual(frame, { event: "unsubscribe", subscription: "svc.t", data: { d: 1 }, error: "no longer authorized", extra: "X" });
  assert.deepEqual(Object.keys(frame), ["event", "subscription", "data", "error", "extra"]);
  assert.equal(Object.hasOwn(frame, "status"), false);
  assert.deepEqual(revokedFrame("svc.t", "e", { data: null }), { event: "unsubscribe", subscription: "svc.t", error: "e" });
  assert.deepEqual(revokedFrame("svc.t", "e", { data: 0 }), { event: "unsubscribe", subscription: "svc.t", data: 0, error: "e" });
});

// ---------------------------------------------------------------- messageFrame

const SENT = "2026-01-01T00:00:01.000000+00:00";

test("messageFrame: only event, subscription, data and sent_at when nothing optional is given", () => {
  const frame = messageFrame("svc.t", null, { sentAt: SENT });
  assert.deepEqual(frame, { event: "message", subscription: "svc.t", data: null, sent_at: SENT });
  assert.deepEqual(Object.keys(frame), ["event", "subscription", "data", "sent_at"]);
});

test("messageFrame: every optional field, in SocketShark's order", () => {
  const frame = messageFrame("svc.t", { n: 1 }, {
    publishedAt: "2024-01-02",
    receivedAt: "2026-01-01T00:00:00.500000+00:00",
    queueSize: 0,
    extra: { extra: "X" },
    sentAt: SENT,
  });
  assert.deepEqual(frame, {
    event: "message",
    subscription: "svc.t",
    data: { n: 1 },
    published_at: "2024-01-02",
    received_at: "2026-01-01T00:00:00.500000+00:00",
    queue_size: 0,
    extra: "X",
    sent_at: SENT,
  });
  assert.deepEqual(Object.keys(frame), ["event", "subscription", "data", "published_at", "received_at", "queue_size", "extra", "sent_at"]);
});

test("messageFrame: each optional field appears alone when only it is given", () => {
  assert.deepEqual(messageFrame("s.t", 1, { publishedAt: "2024-01-02", sentAt: SENT }), {
    event: "message",
    subscription: "s.t",
    data: 1,
    published_at: "2024-01-02",
    sent_at: SENT,
  });
  assert.deepEqual(messageFrame("s.t", 1, { queueSize: 3, sentAt: SENT }), {
    event: "message",
    subscription: "s.t",
    data: 1,
    queue_size: 3,
    sent_at: SENT,
  });
  assert.deepEqual(messageFrame("s.t", 1, { extra: { a: null }, sentAt: SENT }), {
    event: "message",
    subscription: "s.t",
    data: 1,
    a: null,
    sent_at: SENT,
  });
});
