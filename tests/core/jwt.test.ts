// `auth` with `method: "jwt"` through the core (extension E2): replies, stored fields, re-authentication, and a token
// that lapses while its session is subscribed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SignJWT } from "jose";
import { parseConfig } from "../../src/config.ts";
import { JwtVerifier } from "../../src/services/jwt_verifier.ts";
import { gate } from "../support/fake_clock.ts";
import { Harness } from "../support/harness.ts";

const SECRET = "a-test-secret-of-at-least-thirty-two-bytes!";
const TICKET = "http://auth.test/ticket";
const BEFORE_UNSUB = "http://svc.test/before_unsubscribe";
const AUTHZ = "http://svc.test/authorize";
const ON_UNSUB = "http://svc.test/on_unsubscribe";
const config = {
  authentication: {
    ticket: { validationUrl: TICKET, authFields: ["user_id"] },
    jwt: { algorithms: ["HS256"], secret: SECRET, authFields: ["user_id"], leeway: 5 },
  },
  services: {
    private: { beforeUnsubscribe: BEFORE_UNSUB, onUnsubscribe: ON_UNSUB },
    public: { requireAuthentication: false },
    slow: { authorizer: AUTHZ },
  },
} as const;

async function world() {
  // The verifier tells time by the harness's fake clock (read when it verifies, after the harness exists).
  let h: Harness | undefined;
  const tokens = await JwtVerifier.create(parseConfig(config).authentication.jwt!, { now: () => h!.clock.now() });
  h = await new Harness(config as never, { tokens }).start();
  const harness = h;
  const sign = (claims: Record<string, unknown>, expiresIn: number) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(Math.floor(harness.clock.now() / 1000) + expiresIn)
      .sign(new TextEncoder().encode(SECRET));
  return { h: harness, sign };
}

test("jwt auth: ok stores the claims named in authFields; failures keep the previous identity", async () => {
  const { h, sign } = await world();
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "auth", method: "jwt", token: await sign({ user_id: 1, extra: "x" }, 600) }), [
    { event: "auth", status: "ok" },
  ]);
  assert.deepEqual(c.session.authInfo, { user_id: 1 });
  for (const token of [undefined, "", null, false]) {
    assert.deepEqual(await c.call({ event: "auth", method: "jwt", token }), [
      { event: "auth", status: "error", error: "Must specify token." },
    ]);
  }
  for (const token of ["x.y.z", 42, await sign({ other: 1 }, 600), await sign({ user_id: 2 }, -60)]) {
    assert.deepEqual(await c.call({ event: "auth", method: "jwt", token }), [
      { event: "auth", status: "error", error: "Authentication failed." },
    ]);
  }
  assert.deepEqual(c.session.authInfo, { user_id: 1 }, "a failed re-auth keeps the identity");
  assert.deepEqual(h.jwtFailures, ["malformed", "malformed", "auth_fields", "expired"]);
});

test("jwt auth: without authentication.jwt the method is unsupported, as SocketShark answers any unknown one", async () => {
  const h = await new Harness({ services: {} }).start();
  const c = h.connect();
  assert.deepEqual(await c.call({ event: "auth", method: "jwt", token: "a.b.c" }), [
    { event: "auth", status: "error", error: "Authentication method unsupported." },
  ]);
});

test("jwt auth: when the token lapses, auth-requiring subscriptions are revoked with Token expired. and their callbacks run", async () => {
  const { h, sign } = await world();
  h.services.on(BEFORE_UNSUB, { status: "ok" }).on(ON_UNSUB, { status: "ok" });
  const c = h.connect();
  await c.call({ event: "auth", method: "jwt", token: await sign({ user_id: 1 }, 60) });
  await c.call({ event: "subscribe", subscription: "private.a" });
  await c.call({ event: "subscribe", subscription: "public.a" });
  await h.clock.advance(60_000); // exp passed, but within the 5 s leeway
  assert.deepEqual(c.take(), []);
  await h.clock.advance(5_000);
  assert.deepEqual(c.take(), [{ event: "unsubscribe", subscription: "private.a", error: "Token expired." }]);
  assert.deepEqual(h.services.bodies(ON_UNSUB), [{ subscription: "private.a", user_id: 1 }]);
  assert.deepEqual(c.session.authInfo, {});
  assert.deepEqual([...c.session.subscriptions.keys()], ["public.a"], "a public subscription stays");
  assert.equal(h.clock.pending, 0, "no timer left");
});

test("jwt auth: a newer token (or a ticket) before the expiry moves it; teardown leaves no timer", async () => {
  const { h, sign } = await world();
  h.services.on(TICKET, { status: "ok", user_id: 9 });
  const c = h.connect();
  await c.call({ event: "auth", method: "jwt", token: await sign({ user_id: 1 }, 60) });
  await c.call({ event: "subscribe", subscription: "private.a" });
  await h.clock.advance(50_000);
  await c.call({ event: "auth", method: "jwt", token: await sign({ user_id: 1 }, 600) });
  await h.clock.advance(100_000);
  assert.deepEqual(c.take(), [], "the newer token holds");
  assert.equal(h.clock.pending, 1);
  await c.call({ event: "auth", ticket: "t" });
  assert.equal(h.clock.pending, 0, "a ticket identity does not lapse");
  await c.call({ event: "auth", method: "jwt", token: await sign({ user_id: 1 }, 600) });
  assert.equal(h.clock.pending, 1);
  await c.session.disconnected();
  assert.equal(h.clock.pending, 0);
});

test("jwt auth: a fresh token queued before a due expiry wins: nothing is revoked, the identity stays", async () => {
  const { h, sign } = await world();
  const held = gate();
  h.services.on(AUTHZ, { after: held, reply: { status: "ok" } });
  const c = h.connect();
  await c.call({ event: "auth", method: "jwt", token: await sign({ user_id: 1 }, 60) });
  await c.call({ event: "subscribe", subscription: "private.a" });
  c.session.receive(JSON.stringify({ event: "subscribe", subscription: "slow.b" })); // held at its authorizer
  await h.settled();
  c.session.receive(JSON.stringify({ event: "auth", method: "jwt", token: await sign({ user_id: 1 }, 3600) }));
  await h.clock.advance(70_000); // the first token lapses while the auth and the expiry both wait
  held.open();
  await h.settled();
  const frames = c.take();
  assert.deepEqual(frames.map((f) => f.event), ["subscribe", "auth"]);
  assert.deepEqual(c.session.authInfo, { user_id: 1 });
  assert.deepEqual([...c.session.subscriptions.keys()].sort(), ["private.a", "slow.b"]);
  const [ok] = await c.call({ event: "subscribe", subscription: "private.c" });
  assert.equal(ok.status, "ok");
});
