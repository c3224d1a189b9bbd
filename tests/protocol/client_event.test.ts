import assert from "node:assert/strict";
import { test } from "node:test";
import { type ClientEvent, parseClientEvent } from "../../src/protocol/client_event.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

function utf16(text: string, endian: "le" | "be", bom: boolean): Uint8Array {
  const units = (bom ? "\uFEFF" : "") + text;
  const bytes = new Uint8Array(units.length * 2);
  for (let i = 0; i < units.length; i++) {
    const unit = units.charCodeAt(i);
    const hi = unit >> 8;
    const lo = unit & 0xff;
    bytes[2 * i] = endian === "le" ? lo : hi;
    bytes[2 * i + 1] = endian === "le" ? hi : lo;
  }
  return bytes;
}

function asArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const buffer = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buffer).set(bytes);
  return buffer;
}

const PING: ClientEvent = { kind: "ping", fields: { event: "ping", data: "héllo \u{1F600}" } };
const PING_JSON = JSON.stringify({ event: "ping", data: "héllo \u{1F600}" });

test("parseClientEvent: text that is not JSON is undecodable", () => {
  for (const text of ["{", "", " ", "not json", '{"event":"ping"} trailing', "{'event':'ping'}", '{"event":"ping",}', "\uFEFF{}"]) {
    assert.deepEqual(parseClientEvent(text), { kind: "undecodable" }, JSON.stringify(text));
  }
});

test("parseClientEvent: JSON that is not an object with a string event is invalid", () => {
  for (const text of ["null", "[]", '["ping"]', '"hello"', "123", "true", "{}", '{"event":null}', '{"event":5}', '{"event":["ping"]}', '{"event":{}}', '{"Event":"ping"}', '{"data":"x"}']) {
    assert.deepEqual(parseClientEvent(text), { kind: "invalid" }, text);
  }
});

test("parseClientEvent: an event name longer than 40 code points is invalid; exactly 40 is an unknown event", () => {
  const forty = "x".repeat(40);
  assert.deepEqual(parseClientEvent(JSON.stringify({ event: forty })), { kind: "unknown", event: forty });
  assert.deepEqual(parseClientEvent(JSON.stringify({ event: "x".repeat(41) })), { kind: "invalid" });
  assert.deepEqual(parseClientEvent(JSON.stringify({ event: "x".repeat(1000) })), { kind: "invalid" });
});

test("parseClientEvent: the 40-character limit counts code points, not UTF-16 units", () => {
  const smile = "\u{1F600}";
  const forty = smile.repeat(40); // 80 UTF-16 units
  assert.deepEqual(parseClientEvent(JSON.stringify({ event: forty })), { kind: "unknown", event: forty });
  assert.deepEqual(parseClientEvent(JSON.stringify({ event: smile.repeat(41) })), { kind: "invalid" });
  const mixed = "a".repeat(39) + smile; // 40 code points, 41 units
  assert.deepEqual(parseClientEvent(JSON.stringify({ event: mixed })), { kind: "unknown", event: mixed });
});

test("parseClientEvent: an empty or unknown event name is unknown and keeps the name as sent", () => {
  assert.deepEqual(parseClientEvent('{"event":""}'), { kind: "unknown", event: "" });
  assert.deepEqual(parseClientEvent('{"event":"hello"}'), { kind: "unknown", event: "hello" });
  assert.deepEqual(parseClientEvent('{"event":"Auth"}'), { kind: "unknown", event: "Auth" });
  assert.deepEqual(parseClientEvent('{"event":"ping "}'), { kind: "unknown", event: "ping " });
  assert.deepEqual(parseClientEvent('{"event":"SUBSCRIBE","subscription":"a.b"}'), { kind: "unknown", event: "SUBSCRIBE" });
});

test("parseClientEvent: each known event keeps every field of the frame", () => {
  for (const name of ["auth", "subscribe", "message", "unsubscribe", "ping"]) {
    const fields = { event: name, subscription: "svc.topic", data: { nested: [1, null] }, extra: null, other: 5 };
    assert.deepEqual(parseClientEvent(JSON.stringify(fields)), { kind: name, fields }, name);
  }
  assert.deepEqual(parseClientEvent('{"event":"ping"}'), { kind: "ping", fields: { event: "ping" } });
  assert.deepEqual(parseClientEvent(' \n{"method":"ticket","event":"auth","ticket":"t"}\t'), {
    kind: "auth",
    fields: { method: "ticket", event: "auth", ticket: "t" },
  });
});

test("parseClientEvent: binary UTF-8, with and without a BOM, as Uint8Array or ArrayBuffer", () => {
  const bytes = utf8(PING_JSON);
  const withBom = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes]);
  assert.deepEqual(parseClientEvent(bytes), PING);
  assert.deepEqual(parseClientEvent(asArrayBuffer(bytes)), PING);
  assert.deepEqual(parseClientEvent(withBom), PING);
  assert.deepEqual(parseClientEvent(asArrayBuffer(withBom)), PING);
});

test("parseClientEvent: a Uint8Array view into a larger buffer decodes only its own bytes", () => {
  const inner = utf8('{"event":"ping","data":"x"}');
  const buffer = new Uint8Array(inner.length + 8).fill(0x20);
  buffer.set(inner, 4);
  buffer[0] = 0x7b; // garbage outside the view: "{"
  buffer[buffer.length - 1] = 0x7d;
  const view = buffer.subarray(4, 4 + inner.length);
  assert.deepEqual(parseClientEvent(view), { kind: "ping", fields: { event: "ping", data: "x" } });
});

test("parseClientEvent: binary UTF-16LE and UTF-16BE, with and without a BOM", () => {
  for (const endian of ["le", "be"] as const) {
    for (const bom of [true, false]) {
      const bytes = utf16(PING_JSON, endian, bom);
      assert.deepEqual(parseClientEvent(bytes), PING, `utf-16${endian} bom=${bom}`);
      assert.deepEqual(parseClientEvent(asArrayBuffer(bytes)), PING, `utf-16${endian} bom=${bom} (ArrayBuffer)`);
    }
  }
});

test("parseClientEvent: binary frames go through the same envelope checks", () => {
  assert.deepEqual(parseClientEvent(utf8('{"event":"nope"}')), { kind: "unknown", event: "nope" });
  assert.deepEqual(parseClientEvent(utf8("[]")), { kind: "invalid" });
  assert.deepEqual(parseClientEvent(utf16('{"event":5}', "le", false)), { kind: "invalid" });
  assert.deepEqual(parseClientEvent(utf8("{")), { kind: "undecodable" });
  assert.deepEqual(parseClientEvent(new Uint8Array(0)), { kind: "undecodable" });
});

test("parseClientEvent: invalid UTF-8 in a binary frame (80 61 62 63) is undecodable, not a crash (decision 1)", () => {
  const bad = new Uint8Array([0x80, 0x61, 0x62, 0x63]);
  assert.deepEqual(parseClientEvent(bad), { kind: "undecodable" });
  assert.deepEqual(parseClientEvent(asArrayBuffer(bad)), { kind: "undecodable" });
  // Invalid UTF-8 inside an otherwise valid JSON object: no replacement characters sneak through.
  assert.deepEqual(parseClientEvent(new Uint8Array([...utf8('{"event":"ping","data":"'), 0xc3, 0x28, ...utf8('"}')])), {
    kind: "undecodable",
  });
  // A truncated multi-byte sequence at the end.
  assert.deepEqual(parseClientEvent(new Uint8Array([...utf8('{"event":"ping"}'), 0xe2, 0x82])), { kind: "undecodable" });
});

test("parseClientEvent: an unpaired surrogate in UTF-16 is undecodable", () => {
  const bytes = utf16('{"event":"ping","data":"\uD800"}', "le", true);
  assert.deepEqual(parseClientEvent(bytes), { kind: "undecodable" });
});
