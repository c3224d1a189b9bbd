import assert from "node:assert/strict";
import { test } from "node:test";
import { Harness } from "../support/harness.ts";

const TICKET = "http://auth.test/ticket";
const withTicket = { authentication: { ticket: { validationUrl: TICKET, authFields: ["session_id"] } } };

test("auth: unsupported method, including null and when no method is configured", async () => {
  const h = await new Harness(withTicket).start();
  const c = h.connect();
  const unsupported = { event: "auth", status: "error", error: "Authentication method unsupported." };
  assert.deepEqual(await c.call({ event: "auth", method: "x", ticket: "t" }), [unsupported]);
  assert.deepEqual(await c.call({ event: "auth", method: null, ticket: "t" }), [unsupported]);
  assert.deepEqual(await c.call({ event: "auth", method: ["ticket"], ticket: "t" }), [unsupported]);
  const none = await new Harness({}).start();
  assert.deepEqual(await none.connect().call({ event: "auth", method: "ticket", ticket: "t" }), [unsupported]);
  assert.equal(h.services.calls.length, 0);
});

test("auth: a missing or falsy ticket is refused without calling the service", async () => {
  const h = await new Harness(withTicket).start();
  const c = h.connect();
  for (const ticket of [undefined, "", 0, null, false, [], {}]) {
    const frames = await c.call({ event: "auth", ...(ticket === undefined ? {} : { ticket }) });
    assert.deepEqual(frames, [{ event: "auth", status: "error", error: "Must specify ticket." }]);
  }
  assert.equal(h.services.calls.length, 0);
});

test("auth: success keeps only the configured fields; the body is exactly the ticket", async () => {
  const h = await new Harness(withTicket).start();
  h.services.on(TICKET, { status: "ok", session_id: "sess_123", foo: "bar" });
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "auth", ticket: "the-ticket" }), [{ event: "auth", status: "ok" }]);
  assert.deepEqual(c.session.authInfo, { session_id: "sess_123" });
  assert.deepEqual(h.services.bodies(TICKET), [{ ticket: "the-ticket" }]);
});

test("auth: failure uses the service error (null too) or the default, never data, and keeps the old identity", async () => {
  const h = await new Harness(withTicket).start();
  h.services.on(
    TICKET,
    { status: "ok", session_id: "first" },
    { status: "error", data: { why: "expired" } },
    { status: "error", error: "Ticket expired." },
    { status: "error", error: null },
  );
  const c = h.connect();
  await c.call({ event: "auth", ticket: "a" });
  assert.deepEqual(await c.call({ event: "auth", ticket: "b" }), [
    { event: "auth", status: "error", error: "Authentication failed." },
  ]);
  assert.deepEqual(await c.call({ event: "auth", ticket: "c" }), [
    { event: "auth", status: "error", error: "Ticket expired." },
  ]);
  assert.deepEqual(await c.call({ event: "auth", ticket: "d" }), [{ event: "auth", status: "error", error: null }]);
  assert.deepEqual(c.session.authInfo, { session_id: "first" });
});

test("auth: an unreachable service gives Service unavailable after every try", async () => {
  const h = await new Harness(withTicket, { http: { tries: 3 } }).start();
  h.services.on(TICKET, { fail: "network" });
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "auth", ticket: "t" }), [
    { event: "auth", status: "error", error: "Service unavailable." },
  ]);
  assert.equal(h.services.calls.length, 3);
});

test("auth: an answer missing a configured auth field is a broken answer, not a crash (decision 5)", async () => {
  const h = await new Harness(withTicket).start();
  h.services.on(TICKET, { status: "ok", user_id: 1 });
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "auth", ticket: "t" }), [
    { event: "auth", status: "error", error: "Service unavailable." },
  ]);
  assert.equal(c.transport.closed, undefined);
  assert.deepEqual(c.session.authInfo, {});
});

test("auth: empty authFields leaves the session anonymous even after success", async () => {
  const h = await new Harness({
    authentication: { ticket: { validationUrl: TICKET, authFields: [] } },
    services: { s: {} },
  }).start();
  h.services.on(TICKET, { status: "ok", session_id: "x" });
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "auth", ticket: "t" }), [{ event: "auth", status: "ok" }]);
  assert.deepEqual(await c.call({ event: "subscribe", subscription: "s.t" }), [
    { event: "subscribe", status: "error", error: "Authentication required.", subscription: "s.t" },
  ]);
});
