/**
 * JWT verification for `{"event":"auth","method":"jwt"}` (extension E2), with `jose`: a static secret, a PEM public
 * key (or certificate), or a JWKS URL whose keys are cached, chosen by `kid` and re-fetched (rate-limited) when
 * an unknown `kid` appears. Every failure is a fixed reason, for the metric and the log; the client only ever
 * hears "Authentication failed." (or "Service unavailable." when the JWKS cannot be fetched).
 */
import {
  createRemoteJWKSet,
  customFetch,
  errors,
  importSPKI,
  importX509,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
  type KeyObject,
} from "jose";
import type { Config, JwtAlgorithm } from "../config.ts";

export type JwtConfig = NonNullable<Config["authentication"]["jwt"]>;

/** Why a token was refused: the `reason` label of `shoal_jwt_failures_total`. */
export const JWT_FAILURE_REASONS = [
  "malformed",
  "algorithm",
  "signature",
  "expired",
  "not_yet_valid",
  "claims",
  "auth_fields",
  "unknown_key",
  "jwks_unavailable",
] as const;
export type JwtFailure = (typeof JWT_FAILURE_REASONS)[number];

export type JwtResult =
  | {
    readonly ok: true;
    /** The configured auth fields, from the claims. */
    readonly fields: Readonly<Record<string, unknown>>;
    /** When the token stops being accepted (its `exp` plus the leeway), epoch ms; undefined without `exp`. */
    readonly expiresAt?: number;
  }
  | { readonly ok: false; readonly reason: JwtFailure };

/** How long fetched JWKS keys are trusted before a re-fetch, and the least time between two fetches. */
const JWKS_CACHE_MS = 10 * 60_000;
const JWKS_COOLDOWN_MS = 30_000;
const JWKS_TIMEOUT_MS = 5_000;

/** Largest JWKS answer read: a key set is a few KiB; a server sending more is misbehaving. */
export const MAX_JWKS_BYTES = 1024 * 1024;

/** A fetch whose answer body is read up to `max` bytes (more is an error), then handed over whole. */
function cappedFetch(inner: typeof fetch, max: number): typeof fetch {
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const response = await inner(input, init);
    if (Number(response.headers.get("content-length")) > max) {
      await response.body?.cancel();
      throw new Error(`JWKS answer larger than ${max} bytes`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = response.body?.getReader();
    for (;;) {
      const chunk = reader ? await reader.read() : { done: true as const, value: undefined };
      if (chunk.done) break;
      size += chunk.value.byteLength;
      if (size > max) {
        await reader!.cancel();
        throw new Error(`JWKS answer larger than ${max} bytes`);
      }
      chunks.push(chunk.value);
    }
    const body = new Uint8Array(size);
    let at = 0;
    for (const chunk of chunks) {
      body.set(chunk, at);
      at += chunk.byteLength;
    }
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  }) as typeof fetch;
}

/** Largest token accepted, in characters: a JWT is a header line, not a document. */
export const MAX_TOKEN_LENGTH = 16 * 1024;

export class JwtVerifier {
  readonly #config: JwtConfig;
  readonly #key: JWTVerifyGetKey | Uint8Array;
  readonly #now: () => number;

  private constructor(config: JwtConfig, key: JWTVerifyGetKey | Uint8Array, now: () => number) {
    this.#config = config;
    this.#key = key;
    this.#now = now;
  }

  /**
   * Build a verifier; rejects (naming the config key) when the public key does not import for a configured
   * algorithm, so a bad key stops start-up rather than every login.
   */
  static async create(
    config: JwtConfig,
    options: {
      fetch?: typeof fetch;
      now?: () => number;
      /** Least time between two JWKS fetches (an unknown `kid` inside it is refused without one): 30 s. */
      jwksCooldownMs?: number;
    } = {},
  ): Promise<JwtVerifier> {
    const now = options.now ?? Date.now;
    if (config.secret !== undefined) return new JwtVerifier(config, new TextEncoder().encode(config.secret), now);
    if (config.publicKey !== undefined) {
      const keys = new Map<string, KeyObject | CryptoKey>();
      for (const alg of config.algorithms) {
        try {
          keys.set(alg, await importPublicKey(config.publicKey, alg));
        } catch (error) {
          throw new Error(`authentication.jwt.publicKey does not import for ${alg}: ${(error as Error).message}`);
        }
      }
      return new JwtVerifier(config, (header) => {
        const key = keys.get(header.alg ?? "");
        if (!key) throw new errors.JOSEAlgNotAllowed("algorithm not allowed");
        return key;
      }, now);
    }
    const jwks = createRemoteJWKSet(new URL(config.jwksUrl!), {
      cacheMaxAge: JWKS_CACHE_MS,
      cooldownDuration: options.jwksCooldownMs ?? JWKS_COOLDOWN_MS,
      timeoutDuration: JWKS_TIMEOUT_MS,
      [customFetch]: cappedFetch(options.fetch ?? fetch, MAX_JWKS_BYTES),
    });
    // A key set that cannot be fetched is an unavailable dependency, not a bad token: tell the two apart.
    const getKey: JWTVerifyGetKey = async (header, token) => {
      try {
        return await jwks(header, token);
      } catch (error) {
        if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) throw error;
        if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) throw error;
        throw new JwksUnavailable(error);
      }
    };
    return new JwtVerifier(config, getKey, now);
  }

  /** Verify a compact JWS and read the auth fields from its claims. Never throws. */
  async verify(token: string): Promise<JwtResult> {
    if (token.length > MAX_TOKEN_LENGTH || token.split(".").length !== 3) return { ok: false, reason: "malformed" };
    const { algorithms, issuer, audience, leeway, authFields } = this.#config;
    let payload: JWTPayload;
    try {
      const options = {
        algorithms: [...algorithms],
        issuer,
        audience,
        clockTolerance: leeway,
        currentDate: new Date(this.#now()),
      };
      payload = this.#key instanceof Uint8Array
        ? (await jwtVerify(token, this.#key, options)).payload
        : (await jwtVerify(token, this.#key, options)).payload;
    } catch (error) {
      return { ok: false, reason: failureOf(error) };
    }
    const fields: Record<string, unknown> = {};
    for (const field of authFields) {
      if (!Object.hasOwn(payload, field)) return { ok: false, reason: "auth_fields" };
      fields[field] = payload[field];
    }
    const expiresAt = typeof payload.exp === "number" ? (payload.exp + leeway) * 1000 : undefined;
    return { ok: true, fields, expiresAt };
  }
}

/** The JWKS URL could not be fetched or did not hold a key set. */
class JwksUnavailable extends Error {
  constructor(cause: unknown) {
    super(`JWKS unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = "JwksUnavailable";
  }
}

function importPublicKey(pem: string, alg: JwtAlgorithm): Promise<KeyObject | CryptoKey> {
  return pem.includes("BEGIN CERTIFICATE") ? importX509(pem, alg) : importSPKI(pem, alg);
}

/** jose's error → a fixed reason. */
function failureOf(error: unknown): JwtFailure {
  if (error instanceof errors.JWTExpired) return "expired";
  if (error instanceof errors.JWTClaimValidationFailed) {
    return error.claim === "nbf" ? "not_yet_valid" : "claims";
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return "algorithm";
  if (error instanceof errors.JWSSignatureVerificationFailed) return "signature";
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) return "unknown_key";
  if (error instanceof JwksUnavailable) return "jwks_unavailable";
  if (error instanceof errors.JOSENotSupported) return "algorithm";
  return "malformed";
}
