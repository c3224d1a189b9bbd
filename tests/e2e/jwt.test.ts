// JWT authentication (extension E2) against the real server: a JWKS served by a real HTTP service with a key
// rotation, the auth replies, and a token that lapses while subscribed (revocation notice, callbacks).
import assert from "node:assert/strict";
import { test } from "node:test";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { metricsText } from "../support/e2e.ts";
import { ShoalProcess } from "../support/shoal_process.ts";
import { TestService } from "../support/test_service.ts";
import { WsClient } from "../support/ws_client.ts";

const sign = (key: CryptoKey, kid: string, claims: Record<string, unknown>, expiresIn: number) =>
  new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid }).setIssuer("https://id.test")
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresIn).sign(key);

async function auth(client: WsClient, token: unknown): Promise<Record<string, unknown>> {
  client.send({ event: "auth", method: "jwt", token });
  return await client.next(5000);
}

// Key rotation (a new kid fetched again, rate-limited) is tested against a real JWKS server in
// tests/services/jwt_verifier.test.ts, where the 30 s cooldown can be shortened.
test("jwt: a JWKS URL; ok, failed and missing tokens; a lapsing token revokes with Token expired. after the callbacks", async () => {
  await using service = await TestService.start();
  const first = await generateKeyPair("ES256", { extractable: true });
  const keys = [{ ...(await exportJWK(first.publicKey)), kid: "k1", alg: "ES256" }];
  service.on("/jwks.json", { keys }).on("/unsub", { status: "ok" });
  await using shoal = await ShoalProcess.start({
    authentication: {
      jwt: { algorithms: ["ES256"], jwksUrl: service.url("/jwks.json"), issuer: "https://id.test", authFields: ["user_id"], leeway: 0 },
    },
    services: { private: { onUnsubscribe: service.url("/unsub") }, public: { requireAuthentication: false } },
    metrics: { prometheus: {} },
  });
  await using client = await WsClient.connect(shoal.url);
  assert.deepEqual(await auth(client, await sign(first.privateKey, "k1", { user_id: 7 }, 600)), { event: "auth", status: "ok" });
  assert.deepEqual(await auth(client, ""), { event: "auth", status: "error", error: "Must specify token." });
  const stranger = await generateKeyPair("ES256", { extractable: true });
  assert.deepEqual(await auth(client, await sign(stranger.privateKey, "k1", { user_id: 8 }, 600)), {
    event: "auth",
    status: "error",
    error: "Authentication failed.",
  });

  // A token that lapses in 2 s, while subscribed.
  assert.deepEqual(await auth(client, await sign(first.privateKey, "k1", { user_id: 7 }, 2)), { event: "auth", status: "ok" });
  client.send({ event: "subscribe", subscription: "private.a" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "private.a" });
  client.send({ event: "subscribe", subscription: "public.a" });
  assert.deepEqual(await client.next(), { event: "subscribe", status: "ok", subscription: "public.a" });
  assert.deepEqual(await client.next(5000), { event: "unsubscribe", subscription: "private.a", error: "Token expired." });
  const [unsub] = await service.waitFor("/unsub");
  assert.deepEqual(unsub.body, { subscription: "private.a", user_id: 7 }, "the callback still names the user");
  client.send({ event: "subscribe", subscription: "private.b" });
  assert.deepEqual(await client.next(), {
    event: "subscribe",
    status: "error",
    error: "Authentication required.",
    subscription: "private.b",
  });
  const metrics = await metricsText(shoal);
  assert.match(metrics, /shoal_jwt_failures_total\{reason="signature"\} 1/);
});

test("jwt: a PEM public key; a key that does not fit the algorithm stops --check and start-up with one line", async () => {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { extractable: true });
  const pem = await exportSPKI(publicKey);
  await using shoal = await ShoalProcess.start({
    authentication: { jwt: { algorithms: ["EdDSA"], publicKey: pem, authFields: ["sub"] } },
  });
  await using client = await WsClient.connect(shoal.url);
  const token = await new SignJWT({ sub: "u1" }).setProtectedHeader({ alg: "EdDSA" }).setExpirationTime("1h").sign(privateKey);
  assert.deepEqual(await auth(client, token), { event: "auth", status: "ok" });
  await assert.rejects(
    ShoalProcess.start({ authentication: { jwt: { algorithms: ["RS256"], publicKey: pem } } }, { startupTimeoutMs: 10_000 }),
    /authentication\.jwt\.publicKey does not import for RS256/,
  );
});
