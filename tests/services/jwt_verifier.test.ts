// JWT verification (extension E2) with real keys of every family, and a real JWKS server with key rotation.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from "jose";
import { type JwtConfig, JwtVerifier } from "../../src/services/jwt_verifier.ts";

const NOW = Date.UTC(2026, 11, 2, 12, 0, 0);
const SECONDS = Math.floor(NOW / 1000);
const SECRET = "a-test-secret-of-at-least-thirty-two-bytes!";

function config(overrides: Partial<JwtConfig>): JwtConfig {
  return { algorithms: ["HS256"], authFields: ["user_id"], leeway: 30, ...overrides } as JwtConfig;
}

async function sign(
  key: CryptoKey | Uint8Array,
  alg: string,
  claims: Record<string, unknown> = { user_id: 7 },
  options: { kid?: string; exp?: number; nbf?: number; iss?: string; aud?: string } = {},
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg, ...(options.kid ? { kid: options.kid } : {}) }).setIssuedAt(SECONDS);
  jwt.setExpirationTime(options.exp ?? SECONDS + 600);
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  if (options.iss) jwt.setIssuer(options.iss);
  if (options.aud) jwt.setAudience(options.aud);
  return await jwt.sign(key);
}

const secretKey = new TextEncoder().encode(SECRET);

test("jwt: HS256 with a secret: valid, expired, not yet valid, wrong signature, wrong algorithm, malformed", async () => {
  const verifier = await JwtVerifier.create(config({ secret: SECRET }), { now: () => NOW });
  const good = await verifier.verify(await sign(secretKey, "HS256"));
  assert.deepEqual(good, { ok: true, fields: { user_id: 7 }, expiresAt: (SECONDS + 600 + 30) * 1000 });
  const cases: [Promise<string>, string][] = [
    [sign(secretKey, "HS256", {}, { exp: SECONDS - 31 }), "expired"],
    [sign(secretKey, "HS256", { user_id: 7 }, { nbf: SECONDS + 31 }), "not_yet_valid"],
    [sign(new TextEncoder().encode("another-secret-of-thirty-two-bytes-or-more"), "HS256"), "signature"],
    [sign(secretKey, "HS512"), "algorithm"],
    [sign(secretKey, "HS256", { other: 1 }), "auth_fields"],
    [Promise.resolve("not.a.jwt"), "malformed"],
    [Promise.resolve("nodots"), "malformed"],
    [Promise.resolve("a".repeat(20_000) + ".b.c"), "malformed"],
  ];
  for (const [token, reason] of cases) assert.deepEqual(await verifier.verify(await token), { ok: false, reason });
  // Within the leeway an expired token is still accepted.
  assert.equal((await verifier.verify(await sign(secretKey, "HS256", { user_id: 7 }, { exp: SECONDS - 20 }))).ok, true);
});

test("jwt: iss and aud are checked when configured", async () => {
  const verifier = await JwtVerifier.create(config({ secret: SECRET, issuer: "https://issuer", audience: ["shoal", "other"] }), {
    now: () => NOW,
  });
  assert.equal((await verifier.verify(await sign(secretKey, "HS256", { user_id: 1 }, { iss: "https://issuer", aud: "shoal" }))).ok, true);
  for (const options of [{ iss: "https://evil", aud: "shoal" }, { iss: "https://issuer", aud: "nope" }, { aud: "shoal" }]) {
    assert.deepEqual(await verifier.verify(await sign(secretKey, "HS256", { user_id: 1 }, options)), { ok: false, reason: "claims" });
  }
});

test("jwt: RS256, PS256, ES256 and EdDSA with a PEM public key; a key of another family is refused", async () => {
  for (const alg of ["RS256", "PS256", "ES256", "EdDSA"] as const) {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const verifier = await JwtVerifier.create(config({ algorithms: [alg], publicKey: await exportSPKI(publicKey) }), { now: () => NOW });
    assert.deepEqual(await verifier.verify(await sign(privateKey, alg)), {
      ok: true,
      fields: { user_id: 7 },
      expiresAt: (SECONDS + 630) * 1000,
    }, alg);
    const other = await generateKeyPair(alg, { extractable: true });
    assert.deepEqual(await verifier.verify(await sign(other.privateKey, alg)), { ok: false, reason: "signature" }, alg);
    // A token signed with the HMAC of the public key text (the classic key-confusion attack) is refused.
    const confused = await sign(new TextEncoder().encode(await exportSPKI(publicKey)), "HS256");
    assert.deepEqual(await verifier.verify(confused), { ok: false, reason: "algorithm" }, alg);
  }
});

test("jwt: a public key that does not fit a configured algorithm stops start-up, naming the key", async () => {
  const { publicKey } = await generateKeyPair("ES256", { extractable: true });
  await assert.rejects(
    JwtVerifier.create(config({ algorithms: ["RS256"], publicKey: await exportSPKI(publicKey) })),
    /authentication\.jwt\.publicKey does not import for RS256/,
  );
});

/** A JWKS endpoint whose key set the test changes; counts its requests. */
async function jwksServer(): Promise<{ url: string; keys: JWK[]; requests: number; down: boolean; server: Server }> {
  const state = { url: "", keys: [] as JWK[], requests: 0, down: false, server: undefined as unknown as Server };
  state.server = createServer((_req, res) => {
    state.requests++;
    if (state.down) {
      res.writeHead(503).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => state.server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}/jwks.json`;
  return state;
}

test("jwt: a JWKS URL: keys by kid, cached; an unknown kid fetches the set again (rate-limited); a JWKS that is down", async () => {
  const jwks = await jwksServer();
  try {
    const first = await generateKeyPair("RS256", { extractable: true });
    jwks.keys = [{ ...(await exportJWK(first.publicKey)), kid: "k1", alg: "RS256", use: "sig" }];
    const cooldown = 300;
    const verifier = await JwtVerifier.create(config({ algorithms: ["RS256"], jwksUrl: jwks.url }), { jwksCooldownMs: cooldown });
    const now = Math.floor(Date.now() / 1000);
    const token = (key: CryptoKey, kid: string) =>
      new SignJWT({ user_id: 1 }).setProtectedHeader({ alg: "RS256", kid }).setExpirationTime(now + 600).sign(key);
    assert.equal((await verifier.verify(await token(first.privateKey, "k1"))).ok, true);
    assert.equal((await verifier.verify(await token(first.privateKey, "k1"))).ok, true);
    assert.equal(jwks.requests, 1, "cached");

    // Rotation: a new key appears under a new kid; the first token naming it (past the cooldown since the last
    // fetch) makes the set be fetched again.
    await new Promise((resolve) => setTimeout(resolve, cooldown + 50));
    const second = await generateKeyPair("RS256", { extractable: true });
    jwks.keys = [...jwks.keys, { ...(await exportJWK(second.publicKey)), kid: "k2", alg: "RS256", use: "sig" }];
    assert.equal((await verifier.verify(await token(second.privateKey, "k2"))).ok, true);
    assert.equal(jwks.requests, 2);
    // A kid nobody has: refused; within the cooldown the set is not fetched again for every such token.
    const stranger = await generateKeyPair("RS256", { extractable: true });
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(await verifier.verify(await token(stranger.privateKey, "k9")), { ok: false, reason: "unknown_key" });
    }
    assert.ok(jwks.requests <= 3, `at most one more fetch for unknown kids, got ${jwks.requests - 2}`);

    // A key set larger than 1 MiB is not read to the end: the JWKS counts as unavailable.
    const huge = await JwtVerifier.create(config({ algorithms: ["RS256"], jwksUrl: jwks.url }), { jwksCooldownMs: cooldown });
    const saved = jwks.keys;
    jwks.keys = [...saved, ...Array.from({ length: 4000 }, (_, i) => ({ kty: "oct", kid: `filler-${i}`, k: "x".repeat(300) }))];
    assert.deepEqual(await huge.verify(await token(first.privateKey, "k1")), { ok: false, reason: "jwks_unavailable" });
    jwks.keys = saved;

    const fresh = await JwtVerifier.create(config({ algorithms: ["RS256"], jwksUrl: jwks.url }), { jwksCooldownMs: cooldown });
    jwks.down = true;
    assert.deepEqual(await fresh.verify(await token(first.privateKey, "k1")), { ok: false, reason: "jwks_unavailable" });
  } finally {
    jwks.server.close();
  }
});
