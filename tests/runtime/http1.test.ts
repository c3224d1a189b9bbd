import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ChunkedBodyError,
  ChunkedDecoder,
  headEnd,
  leadingEmptyLines,
  MAX_HEAD_BYTES,
  parseRequestHead,
  type RequestHead,
  responseHead,
} from "../../src/runtime/http1.ts";

const bytes = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

function head(text: string): RequestHead {
  const result = parseRequestHead(bytes(text));
  assert.ok(result.ok, `refused: ${JSON.stringify(result)}`);
  return result.head;
}

function refused(text: string): { status: number; error: string } {
  const result = parseRequestHead(bytes(text));
  assert.ok(!result.ok, `accepted: ${JSON.stringify(result)}`);
  return { status: result.status, error: result.error };
}

const UPGRADE =
  "GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" +
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

test("http1: a WebSocket upgrade head is parsed: fields in order with lower-case names, no body, kept open", () => {
  const h = head(UPGRADE);
  assert.equal(h.method, "GET");
  assert.equal(h.target, "/chat?x=1");
  assert.equal(h.minor, 1);
  assert.equal(h.host, "example.com:8080");
  assert.deepEqual(h.body, { kind: "none" });
  assert.equal(h.websocket, true);
  assert.equal(h.close, false);
  assert.deepEqual(h.fields[0], ["host", "example.com:8080"]);
  assert.deepEqual(h.fields.map(([name]) => name), [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
  ]);
});

test("http1: body framing from Content-Length or chunked; keep-alive rules of 1.0 and 1.1; Expect: 100-continue", () => {
  const post = head("POST /publish HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nExpect: 100-Continue\r\n\r\n");
  assert.deepEqual(post.body, { kind: "length", length: 12 });
  assert.equal(post.expectContinue, true);
  assert.equal(post.websocket, false);
  assert.deepEqual(head("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").body, { kind: "chunked" });
  assert.deepEqual(head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n").body, { kind: "none" });
  assert.deepEqual(head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").body, {
    kind: "length",
    length: 5,
  });
  assert.equal(head("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n").close, true);
  assert.equal(head("GET / HTTP/1.0\r\n\r\n").close, true, "HTTP/1.0 closes by default (and needs no Host)");
  assert.equal(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").close, false);
  assert.equal(head("GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n").target, "http://h/x");
  assert.equal(head("GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Latin: caf\xe9\r\n\r\n").fields[2][1], "caf\xe9");
  assert.equal(head("POST / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n").websocket, false);
});

test("http1: ambiguous or malformed heads are refused with the status RFC 9112 gives them", () => {
  const cases: [string, number][] = [
    // request smuggling shapes
    ["POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501],
    ["POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501],
    ["POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: h\r\nX-A: a\nb\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400],
    // Host
    ["GET / HTTP/1.1\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    // request line
    ["GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400],
    ["GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400],
    ["G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400],
    ["GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400],
    ["GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505],
    ["GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505],
    ["GET / FTP/1.1\r\nHost: h\r\n\r\n", 400],
  ];
  for (const [text, status] of cases) {
    assert.equal(refused(text).status, status, JSON.stringify(text));
  }
  const many = "GET / HTTP/1.1\r\nHost: h\r\n" + "X-A: 1\r\n".repeat(100) + "\r\n";
  assert.equal(refused(many).status, 431);
  const long = "GET / HTTP/1.1\r\nHost: h\r\nX-A: " + "a".repeat(MAX_HEAD_BYTES) + "\r\n\r\n";
  assert.equal(refused(long).status, 431);
});

test("http1: headEnd finds the blank line from where the last search stopped; empty lines before a request are skipped", () => {
  const text = bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\nNEXT");
  assert.equal(headEnd(text), text.length - 4);
  assert.equal(headEnd(text, 10), text.length - 4);
  assert.equal(headEnd(bytes("GET / HTTP/1.1\r\nHost: h\r\n\r")), -1);
  assert.equal(leadingEmptyLines(bytes("\r\n\r\nGET")), 4);
  assert.equal(leadingEmptyLines(bytes("\r")), 0);
});

function decodeAll(decoder: ChunkedDecoder, pieces: string[]): { body: string; rest: string } {
  let body = "";
  let rest = "";
  for (const piece of pieces) {
    const input = bytes(piece);
    const { data, used } = decoder.decode(input);
    for (const d of data) body += String.fromCharCode(...d);
    rest += String.fromCharCode(...input.subarray(used));
  }
  return { body, rest };
}

test("http1: a chunked body decodes across any split, drops extensions and trailers, and leaves the next request", () => {
  const wire = "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
  for (let split = 0; split <= wire.length; split++) {
    const decoder = new ChunkedDecoder();
    const { body, rest } = decodeAll(decoder, [wire.slice(0, split), wire.slice(split)]);
    assert.equal(body, "hello world", `split at ${split}`);
    assert.equal(rest, "GET /next", `split at ${split}`);
    assert.equal(decoder.done, true);
  }
  const oneByOne = new ChunkedDecoder();
  assert.equal(decodeAll(oneByOne, [..."A\r\n0123456789\r\n0\r\n\r\n"]).body, "0123456789");
  assert.equal(oneByOne.done, true);
});

test("http1: a malformed chunked body throws ChunkedBodyError", () => {
  for (
    const wire of ["x\r\n", "5\nhello\r\n", "5\r\nhelloXX", "5\r\nhello\r\n0\r\nX: 1\n\r\n", "123456789\r\n", "5 5\r\n"]
  ) {
    assert.throws(() => decodeAll(new ChunkedDecoder(), [wire]), ChunkedBodyError, JSON.stringify(wire));
  }
  assert.throws(
    () => decodeAll(new ChunkedDecoder(), ["1" + ";".repeat(2000)]),
    ChunkedBodyError,
    "size line too long",
  );
});

test("http1: a response head frames its body with Content-Length and drops the application's framing fields", () => {
  const text = responseHead(200, [["content-type", "application/json"], ["Connection", "keep-alive"], [
    "content-length",
    "999",
  ]], { length: 2, close: true });
  assert.equal(
    text,
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
  );
  assert.equal(responseHead(204, [], { length: undefined, close: false }), "HTTP/1.1 204 No Content\r\n\r\n");
});
