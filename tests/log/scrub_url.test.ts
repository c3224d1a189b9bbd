import assert from "node:assert/strict";
import { test } from "node:test";
import { scrubUrl } from "../../src/log.ts";

// SocketShark's tests/test_utils.py (socketshark.md section 9, items 41-46).

test("scrubUrl: a URL without credentials is unchanged (item 41)", () => {
  assert.equal(scrubUrl("http://example.com/path?q=1"), "http://example.com/path?q=1");
  assert.equal(scrubUrl("https://example.com"), "https://example.com");
});

test("scrubUrl: a user name alone is unchanged (item 42)", () => {
  assert.equal(scrubUrl("http://user@example.com/path"), "http://user@example.com/path");
});

test("scrubUrl: user and password both become ***** (item 43)", () => {
  assert.equal(scrubUrl("http://user:secret@example.com/path"), "http://*****:*****@example.com/path");
});

test("scrubUrl: a password without a user name is scrubbed too (item 44)", () => {
  assert.equal(scrubUrl("http://:secret@example.com/path"), "http://*****:*****@example.com/path");
});

test("scrubUrl: the port is kept (item 45)", () => {
  assert.equal(scrubUrl("redis://user:secret@localhost:6379/0"), "redis://*****:*****@localhost:6379/0");
});

test("scrubUrl: the query and fragment are kept (item 46)", () => {
  assert.equal(scrubUrl("http://u:p@host/path?q=1#frag"), "http://*****:*****@host/path?q=1#frag");
});

test("scrubUrl: other schemes and hosts without a path", () => {
  assert.equal(scrubUrl("https://user:secret@example.com"), "https://*****:*****@example.com");
  assert.equal(scrubUrl("https://user:secret@example.com:8443?x=1"), "https://*****:*****@example.com:8443?x=1");
  assert.equal(scrubUrl("http://u:p@[::1]:8080/x"), "http://*****:*****@[::1]:8080/x");
});

test("scrubUrl: an @ or a colon after the host (path, query, fragment) is not a credential", () => {
  for (const url of [
    "http://host/path?email=a:b@c",
    "http://host/a:b@c/d",
    "http://host#x:y@z",
    "http://host:8080/mailto:me@example.com",
  ]) {
    assert.equal(scrubUrl(url), url);
  }
});

test("scrubUrl: strings that are not absolute URLs are unchanged", () => {
  for (const text of ["", "not a url", "user:secret@host", "/path/u:p@x", "//u:p@host/x"]) {
    assert.equal(scrubUrl(text), text);
  }
});

test("scrubUrl: a password containing a raw @ is scrubbed whole", () => {
  // Python's urlparse (and the WHATWG URL parser fetch uses) split the credentials at the LAST @ before the path,
  // so SocketShark logs http://*****:*****@host/path: no part of the password may survive.
  assert.equal(scrubUrl("http://user:p@ss@host/path"), "http://*****:*****@host/path");
  assert.equal(scrubUrl("https://svc:s3cr@t@api.example.com:8443/cb?x=1"), "https://*****:*****@api.example.com:8443/cb?x=1");
});

test("errorText: a message for anything thrown, never a throw itself", async () => {
  const { errorText } = await import("../../src/log.ts");
  assert.equal(errorText(new Error("boom")), "boom");
  assert.equal(errorText(new AggregateError([new Error("a"), "b"])), "a; b");
  assert.equal(errorText(Symbol("nope")), "Symbol(nope)");
  assert.equal(errorText(Object.create(null)), "[object Object]");
  assert.equal(errorText(undefined), "undefined");
});
