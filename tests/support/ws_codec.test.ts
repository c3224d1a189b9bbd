// The RFC 6455 frame codec shared by the raw test client and the benchmark's connection.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { test } from "node:test";
import { decodeClosePayload, encodeClosePayload, encodeFrame, FrameDecoder, Opcode, type WsFrame } from "./ws_codec.ts";

const KEY = new Uint8Array([0x12, 0x34, 0x56, 0x78]);

/** Frames as plain data, payloads copied, so they compare with `deepEqual` whatever happens to the chunks. */
function plain(frames: Iterable<WsFrame>): { fin: boolean; opcode: number; masked: boolean; payload: string }[] {
  return [...frames].map((f) => ({
    fin: f.fin,
    opcode: f.opcode,
    masked: f.masked,
    payload: f.payload.toString("latin1"),
  }));
}

function decodeAll(...chunks: Buffer[]): ReturnType<typeof plain> {
  const decoder = new FrameDecoder();
  return chunks.flatMap((chunk) => plain(decoder.push(chunk)));
}

test("ws codec: the payload length picks the 7-, 16- or 64-bit length field, at each boundary", () => {
  const cases = [
    { length: 0, field: 0, headerBytes: 2 },
    { length: 125, field: 125, headerBytes: 2 },
    { length: 126, field: 126, headerBytes: 4 },
    { length: 65535, field: 126, headerBytes: 4 },
    { length: 65536, field: 127, headerBytes: 10 },
  ];
  for (const { length, field, headerBytes } of cases) {
    const payload = Buffer.alloc(length, "x");
    const unmasked = encodeFrame(Opcode.binary, payload, { mask: false });
    assert.equal(unmasked.length, headerBytes + length, `${length} bytes unmasked`);
    assert.equal(unmasked[0], 0x80 | Opcode.binary);
    assert.equal(unmasked[1], field, `${length} bytes: length field`);
    if (field === 126) assert.equal(unmasked.readUInt16BE(2), length);
    if (field === 127) assert.equal(unmasked.readBigUInt64BE(2), BigInt(length));
    assert.deepEqual(unmasked.subarray(headerBytes), payload);

    const masked = encodeFrame(Opcode.binary, payload, { mask: KEY });
    assert.equal(masked.length, headerBytes + 4 + length, `${length} bytes masked`);
    assert.equal(masked[1], 0x80 | field);

    for (const frame of [unmasked, masked]) {
      const [decoded, ...rest] = new FrameDecoder().push(frame);
      assert.deepEqual(rest, []);
      assert.equal(decoded.payload.length, length);
      assert.ok(decoded.payload.equals(payload), `${length} bytes round trip`);
    }
  }
});

test("ws codec: masking XORs the payload with the key, and decoding undoes it", () => {
  const frame = encodeFrame(Opcode.text, "hello", { mask: KEY });
  assert.deepEqual([...frame.subarray(2, 6)], [...KEY]);
  const expected = [..."hello"].map((c, i) => c.charCodeAt(0) ^ KEY[i & 3]);
  assert.deepEqual([...frame.subarray(6)], expected);
  assert.deepEqual(decodeAll(frame), [{ fin: true, opcode: Opcode.text, masked: true, payload: "hello" }]);

  const random = encodeFrame(Opcode.text, "hello ✓");
  assert.equal(random[1], 0x80 | Buffer.byteLength("hello ✓"), "masked by default, with a random key");
  const [decoded] = new FrameDecoder().push(random);
  assert.equal(decoded.payload.toString("utf8"), "hello ✓");

  assert.throws(() => encodeFrame(Opcode.text, "x", { mask: new Uint8Array(3) }), RangeError);
});

test("ws codec: fin and opcode survive the round trip", () => {
  const chunk = Buffer.concat([
    encodeFrame(Opcode.text, "a", { fin: false, mask: false }),
    encodeFrame(Opcode.continuation, "b", { fin: false, mask: KEY }),
    encodeFrame(Opcode.continuation, "c", { mask: false }),
    encodeFrame(Opcode.ping, undefined, { mask: false }),
  ]);
  assert.deepEqual(decodeAll(chunk), [
    { fin: false, opcode: Opcode.text, masked: false, payload: "a" },
    { fin: false, opcode: Opcode.continuation, masked: true, payload: "b" },
    { fin: true, opcode: Opcode.continuation, masked: false, payload: "c" },
    { fin: true, opcode: Opcode.ping, masked: false, payload: "" },
  ]);
});

test("ws codec: a stream split at every byte position decodes to the same frames", () => {
  const parts = [
    encodeFrame(Opcode.text, "first", { mask: false }),
    encodeFrame(Opcode.binary, Buffer.alloc(300, "m"), { mask: KEY }), // 16-bit length, masked
    encodeFrame(Opcode.ping, "p", { mask: false }),
    encodeFrame(Opcode.close, encodeClosePayload(1000, "done"), { mask: false }),
  ];
  const stream = Buffer.concat(parts);
  const expected = decodeAll(Buffer.from(stream));
  assert.equal(expected.length, 4);
  for (let cut = 0; cut <= stream.length; cut++) {
    const copy = Buffer.from(stream); // decoding unmasks in place
    assert.deepEqual(decodeAll(copy.subarray(0, cut), copy.subarray(cut)), expected, `split at byte ${cut}`);
  }
  const bytes = [...Buffer.from(stream)].map((b) => Buffer.from([b]));
  assert.deepEqual(decodeAll(...bytes), expected, "one byte at a time");
});

test("ws codec: several frames in one chunk come out in order; a partial one waits for its rest", () => {
  const next = encodeFrame(Opcode.text, "third", { mask: false });
  const chunk = Buffer.concat([
    encodeFrame(Opcode.text, "one", { mask: false }),
    encodeFrame(Opcode.text, "two", { mask: false }),
    next.subarray(0, 3),
  ]);
  const decoder = new FrameDecoder();
  assert.deepEqual(plain(decoder.push(chunk)).map((f) => f.payload), ["one", "two"]);
  chunk.fill(0); // a runtime may reuse a chunk's memory once its data event is over
  assert.deepEqual(plain(decoder.push(next.subarray(3))).map((f) => f.payload), ["third"]);
  assert.deepEqual(plain(decoder.push(Buffer.alloc(0))), []);
});

test("ws codec: leaving the loop early keeps the frames not taken", () => {
  const chunk = Buffer.concat(["a", "b", "c"].map((text) => encodeFrame(Opcode.text, text, { mask: false })));
  const decoder = new FrameDecoder();
  for (const frame of decoder.push(chunk)) {
    assert.equal(frame.payload.toString(), "a");
    break;
  }
  assert.deepEqual(plain(decoder.push(Buffer.alloc(0))).map((f) => f.payload), ["b", "c"]);
});

test("ws codec: close payloads carry a code and a UTF-8 reason; none is 1005", () => {
  const payload = encodeClosePayload(4000, "bye ✓");
  assert.deepEqual([...payload.subarray(0, 2)], [0x0f, 0xa0]);
  assert.equal(payload.subarray(2).toString("utf8"), "bye ✓");
  assert.deepEqual(decodeClosePayload(payload), { code: 4000, reason: "bye ✓" });
  assert.deepEqual([...encodeClosePayload(1000)], [0x03, 0xe8]);
  assert.deepEqual(decodeClosePayload(encodeClosePayload(1001)), { code: 1001, reason: "" });
  assert.deepEqual(decodeClosePayload(Buffer.alloc(0)), { code: 1005, reason: "" });
  assert.deepEqual(decodeClosePayload(Buffer.from([0x03])), { code: 1005, reason: "" });
});
