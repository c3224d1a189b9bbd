// A seeded fuzzer for the real server: random and adversarial client frames, service answers and published
// messages, with an oracle that knows which answers the contract allows (the SocketShark spec with Shoal's
// decisions, extensions E5 and the README's "Client protocol"). Used by tests/e2e/fuzz.test.ts (short) and
// bench/fuzz.ts (long). Everything a run sends follows from its seed; only the interleaving of connections, and
// so the order in which they consume the scripted service answers, depends on timing, and the oracle accepts
// every answer the contract allows for either.
import { Buffer } from "node:buffer";
import { connect, type Socket } from "node:net";
import process from "node:process";
import { RawWsClient } from "./raw_ws_client.ts";
import { respCommand } from "./redis_server.ts";
import type { ShoalProcess, ShoalTarget } from "./shoal_process.ts";
import type { ServiceReply, TestService } from "./test_service.ts";

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness

/** sfc32: small, fast, and the same sequence on every runtime for one seed. */
export class Rng {
  readonly seed: number;
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = this.seed;
    for (let i = 0; i < 15; i++) this.next();
  }

  /** A float in [0, 1). */
  next(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** One of the values, chosen with the given weights. */
  weighted<T>(entries: readonly (readonly [number, T])[]): T {
    const total = entries.reduce((sum, [w]) => sum + w, 0);
    let r = this.next() * total;
    for (const [w, value] of entries) {
      if ((r -= w) < 0) return value;
    }
    return entries[entries.length - 1][1];
  }

  /** An independent stream named by `label`: the same for one seed whatever else was drawn before. */
  fork(label: string | number): Rng {
    let h = this.seed ^ 0x811c9dc5;
    for (const ch of String(label)) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
    return new Rng(h ^ (h >>> 15));
  }
}

/** The seed of this run: env SHOAL_FUZZ_SEED (decimal or 0x hex) or a fresh random one. */
export function fuzzSeed(): number {
  const given = process.env.SHOAL_FUZZ_SEED;
  if (given !== undefined && given.trim() !== "") {
    const seed = Number(given.trim());
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new Error(`SHOAL_FUZZ_SEED must be an integer from 0 to 2^32-1, not ${JSON.stringify(given)}`);
    }
    return seed;
  }
  return (Math.random() * 0x100000000) >>> 0;
}

// ---------------------------------------------------------------------------------------------------------------
// JSON text with what JSON.stringify cannot write: raw number literals, own "__proto__" keys, duplicate keys

/** JSON text written as is (number literals like `1e400` or `-0`, deep nesting, deliberately broken text). */
export class RawJson {
  constructor(readonly text: string) {}
}

/** An object as a list of entries, so keys may repeat and `__proto__` is an ordinary key. */
export class JsonObject {
  constructor(readonly entries: readonly (readonly [string, Json])[]) {}
}

export type Json = null | boolean | number | string | readonly Json[] | JsonObject | RawJson;

/** Entries (a record or a list) → `JsonObject`; `undefined` values are left out. */
export function obj(
  entries: Readonly<Record<string, Json | undefined>> | readonly (readonly [string, Json])[],
): JsonObject {
  if (Array.isArray(entries)) return new JsonObject(entries as readonly (readonly [string, Json])[]);
  return new JsonObject(
    Object.entries(entries as Record<string, Json | undefined>).filter((e): e is [string, Json] => e[1] !== undefined),
  );
}

export function writeJson(value: Json): string {
  if (value === null) return "null";
  if (value instanceof RawJson) return value.text;
  if (value instanceof JsonObject) {
    return `{${value.entries.map(([k, v]) => `${JSON.stringify(k)}:${writeJson(v)}`).join(",")}}`;
  }
  if (Array.isArray(value)) return `[${value.map(writeJson).join(",")}]`;
  return JSON.stringify(value);
}

/** `depth` levels of arrays, objects or both around `inner`, as text. */
export function nestedText(depth: number, inner = "1", kind: "array" | "object" | "mixed" = "array"): string {
  if (kind === "array") return "[".repeat(depth) + inner + "]".repeat(depth);
  if (kind === "object") return '{"a":'.repeat(depth) + inner + "}".repeat(depth);
  const half = Math.floor(depth / 2);
  return '{"a":['.repeat(half) + (depth % 2 ? `[${inner}]` : inner) + "]}".repeat(half);
}

// ---------------------------------------------------------------------------------------------------------------
// Garbage values

const RAW_NUMBERS = [
  "-0",
  "-0.0",
  "0e0",
  "1e400",
  "-1e400",
  "1e-400",
  "-1e-400",
  "1E+308",
  "1.7976931348623157e308",
  "1.7976931348623159e308",
  "4.9e-324",
  "2e-324",
  "9007199254740993",
  "-9007199254740993",
  "0.1e1",
  "1.0",
  "1e0",
  "100000000000000000000000000000000000000000000000000",
];

const STRINGS = [
  "",
  " ",
  "ok",
  "error",
  "ticket",
  "null",
  "true",
  "0",
  "-0",
  "1e400",
  "NaN",
  "Infinity",
  "\u0000",
  "\u0001\u001f\u007f\u0080\u009f",
  "\t\r\n\b\f",
  "\ud800",
  "\udfff",
  "a\udc00b",
  "\udc00\ud800",
  "\ud83d\ude00",
  "\ud83d",
  "\ufeff",
  "\ufffd",
  "\uffff",
  "\u2028\u2029",
  "\u202e\u2066",
  "e\u0301",
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "hasOwnProperty",
  "valueOf",
  '"',
  "\\",
  "\\u0000",
  "</script><script>",
  "%s%n%x",
  "${x}",
  "{{x}}",
  "\u00e9",
  "\u{10ffff}",
];

const KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "event",
  "status",
  "error",
  "data",
  "subscription",
  "options",
  "ticket",
  "method",
  "v",
  "x",
  "cap",
  "user_id",
  "",
  " ",
  "\ud800",
  "\u0000",
  "a".repeat(300),
];

/** A number literal: an ordinary one, an edge case, or a long run of digits. */
export function garbageNumber(rng: Rng): Json {
  return rng.weighted<() => Json>([
    [3, () => rng.pick([0, 1, -1, 0.5, -2.5, 42, 2 ** 31, 2 ** 53, 1e21, 1e-7, Number.MAX_SAFE_INTEGER])],
    [4, () => new RawJson(rng.pick(RAW_NUMBERS))],
    [2, () => new RawJson(longDigits(rng))],
  ])();
}

function longDigits(rng: Rng): string {
  const digits = (n: number) => Array.from({ length: n }, () => String(rng.int(10))).join("");
  const n = rng.pick([20, 400, 1000, 5000]);
  return rng.weighted<() => string>([
    [3, () => `${rng.chance(0.3) ? "-" : ""}${rng.range(1, 9)}${digits(n)}`],
    [2, () => `0.${digits(n)}`],
    [2, () => `${rng.range(1, 9)}.${digits(n)}e${rng.pick(["", "-", "+"])}${rng.range(0, 999)}`],
    [1, () => `1e${rng.pick(["", "-"])}${rng.range(1, 9)}${digits(rng.range(3, 30))}`],
  ])();
}

/** A string: an edge case, a long one, or random UTF-16 code units (lone surrogates included). */
export function garbageString(rng: Rng): string {
  return rng.weighted<() => string>([
    [6, () => rng.pick(STRINGS)],
    [2, () => rng.pick(STRINGS).repeat(rng.pick([2, 64, 129, 1000]))],
    [1, () => rng.pick(["x", "\u00e9", "\ud83d\ude00", "\ud800"]).repeat(rng.pick([127, 128, 129, 4000, 60_000]))],
    [3, () => String.fromCharCode(...Array.from({ length: rng.range(1, 12) }, () => rng.int(0x10000)))],
    [2, () => String.fromCodePoint(...Array.from({ length: rng.range(1, 8) }, () => rng.int(0x110000)))],
    // Numbers as strings, as an `order` or `throttle` may be (Python float() syntax); a long one that ends badly
    // once froze the event loop.
    [
      1,
      () =>
        `${rng.pick(["", "-", "+", " "])}${"1".repeat(rng.pick([3, 50, 5000, 60_000]))}${
          rng.pick(["", "x", "e", "_", ".", "e+", "_1", ".5e-3", " "])
        }`,
    ],
    [1, () => rng.pick(["1_000", "1__0", "_1", "1e5_0", "0x10", " 2.5 ", "inf", "-Infinity", "nan", "1e400", "١٢٣"])],
  ])();
}

/** Any JSON value, nested at most `depth` more levels. */
export function garbage(rng: Rng, depth = 3): Json {
  const scalar = (): Json =>
    rng.weighted<() => Json>([
      [2, () => null],
      [2, () => rng.chance(0.5)],
      [4, () => garbageNumber(rng)],
      [6, () => garbageString(rng)],
    ])();
  if (depth <= 0) return scalar();
  return rng.weighted<() => Json>([
    [10, scalar],
    [2, () => Array.from({ length: rng.range(0, 4) }, () => garbage(rng, depth - 1))],
    [3, () => obj(Array.from({ length: rng.range(0, 4) }, () => [rng.pick(KEYS), garbage(rng, depth - 1)] as const))],
    [1, () => new RawJson(nestedText(rng.pick([1, 5, 60, 120]), "0", rng.pick(["array", "object", "mixed"] as const)))],
  ])();
}

// ---------------------------------------------------------------------------------------------------------------
// The world the fuzzer runs in: a config whose services' callbacks answer from seeded queues

/** What the oracle needs to know of a configured service. */
export interface ServiceModel {
  readonly requireAuthentication: boolean;
  readonly extraFields: readonly string[];
  readonly filterFields: readonly string[];
  readonly onMessage: boolean;
  readonly beforeUnsubscribe: boolean;
  /** Periodic re-authorization: the server may revoke a subscription at any time. */
  readonly renewal: boolean;
}

export interface FuzzWorld {
  /** The Shoal config, for `ShoalProcess.start`. */
  readonly config: Record<string, unknown>;
  readonly services: Readonly<Record<string, ServiceModel>>;
  /** Subscription names worth trying, valid and not. */
  readonly names: readonly string[];
  readonly maxSubscriptions: number;
  readonly maxMessageBytes: number;
  readonly maxSubscriptionBytes: number;
  readonly maxExtraFieldsBytes: number;
  readonly publishToken: string;
  readonly publishMaxBytes: number;
  /**
   * How the server ends a text frame that is not UTF-8: 1007 as RFC 6455 says; Deno's WebSocket drops such a
   * connection before Shoal sees anything, so the client sees 1006 there (README, close codes).
   */
  readonly invalidUtf8Codes: readonly number[];
}

export interface WorldOptions {
  readonly service: TestService;
  readonly redisUrl: string;
  /** The runtime under test (see `invalidUtf8Codes`). */
  readonly target?: ShoalTarget;
}

const MAX_SUBSCRIPTIONS = 6;
const PUBLISH_TOKEN = "fuzz-publish-token";

/**
 * The fuzz config: ticket auth, a Redis broker, the publish API, Prometheus metrics, and services covering extra
 * and filter fields, every callback, an authorizer with renewal and heartbeats, and field names that are
 * properties of every JS object. `scriptServices` (re)loads the service's answers.
 */
export function fuzzWorld(options: WorldOptions): FuzzWorld {
  const url = (path: string) => options.service.url(path);
  const callbacks = (name: string, keys: readonly string[]) =>
    Object.fromEntries(keys.map((key) => [key, url(`/${name}/${key}`)]));
  const services = {
    // No callbacks, no authentication: the name and field checks alone.
    open: { requireAuthentication: false, extraFields: ["v"], filterFields: ["v", "user_id"] },
    // Authentication required, every callback, an authorizer field used as a filter field.
    cb: {
      extraFields: ["x", "v"],
      filterFields: ["x", "cap", "user_id"],
      authorizerFields: ["cap"],
      ...callbacks("cb", [
        "authorizer",
        "beforeSubscribe",
        "onSubscribe",
        "onMessage",
        "beforeUnsubscribe",
        "onUnsubscribe",
      ]),
    },
    // Periodic re-authorization and heartbeats with hostile answers: revocations arrive at any time.
    renew: {
      requireAuthentication: false,
      extraFields: ["x"],
      authorizerFields: ["cap"],
      authorizationRenewalPeriod: 0.06,
      authorizationRenewalJitter: 0.03,
      heartbeatPeriod: 0.1,
      ...callbacks("renew", [
        "authorizer",
        "onAuthorizationChange",
        "beforeUnsubscribe",
        "onUnsubscribe",
        "onHeartbeat",
      ]),
    },
    // Only on_message.
    msg: { requireAuthentication: false, extraFields: ["x"], ...callbacks("msg", ["onMessage"]) },
    // Authentication required, no callbacks.
    locked: {},
  };
  const config = {
    authentication: { ticket: { validationUrl: url("/ticket"), authFields: ["user_id", "session_id"] } },
    services,
    broker: { kind: "redis", url: options.redisUrl },
    http: { tries: 2, wait: 0, timeout: 0.3, maxResponseBytes: 8192 },
    limits: { maxSubscriptionsPerConnection: MAX_SUBSCRIPTIONS },
    publish: { token: PUBLISH_TOKEN, maxBodyBytes: 65536 },
    metrics: { prometheus: {} },
    // "info" keeps the per-event debug lines (and their 100 kB payloads) out of the test's memory.
    log: { level: "info", format: "json" },
  };
  const models: Record<string, ServiceModel> = {};
  for (const [name, s] of Object.entries(services) as [string, Record<string, unknown>][]) {
    models[name] = {
      requireAuthentication: s.requireAuthentication !== false,
      extraFields: (s.extraFields as string[] | undefined) ?? [],
      filterFields: (s.filterFields as string[] | undefined) ?? [],
      onMessage: "onMessage" in s,
      beforeUnsubscribe: "beforeUnsubscribe" in s,
      renewal: "authorizationRenewalPeriod" in s,
    };
  }
  const topics = ["a", "b", "a.b", "\u00e9", "\ud83d\ude00", "\ufffd"];
  const fuzzed = Object.keys(services);
  const names = [
    ...fuzzed.flatMap((s) => topics.map((t) => `${s}.${t}`)),
    "",
    ".",
    "open",
    "open.",
    ".a",
    "nosvc.a",
    "OPEN.a",
    "__proto__.a",
    "constructor.a",
    "toString.a",
    "hasOwnProperty.x",
    "open.\ud800",
    "open.\udc00",
    "cb.\ud83d",
    "open.a\u0000",
    " open.a",
    `open.${"\u00e9".repeat(509)}`, // 1023 bytes: under the 1024-byte limit
    `open.${"\u00e9".repeat(509)}z`, // 1024 bytes: at it
    `open.${"\u00e9".repeat(510)}`, // 1025 bytes: over it
    `open.${"x".repeat(5000)}`,
  ];
  return {
    config,
    services: models,
    names,
    maxSubscriptions: MAX_SUBSCRIPTIONS,
    maxMessageBytes: 1024 * 1024,
    maxSubscriptionBytes: 1024,
    maxExtraFieldsBytes: 16 * 1024,
    publishToken: PUBLISH_TOKEN,
    publishMaxBytes: 65536,
    invalidUtf8Codes: options.target === "deno" ? [1006] : [1007],
  };
}

/**
 * Load seeded queues of answers, valid and hostile, into the service; the last answer of each path (a plain
 * success) repeats. `slowAnswers` adds answers slower than the HTTP timeout (each costs its connection ~0.6 s).
 */
export function scriptServices(
  service: TestService,
  rng: Rng,
  options: { slowAnswers?: boolean; length?: number } = {},
): void {
  const n = options.length ?? 80;
  const queue = (make: () => ServiceReply, last: ServiceReply) => [...Array.from({ length: n }, make), last];
  const ok = { status: "ok" };
  service.on("/ticket", ...queue(() => ticketAnswer(rng, options), { status: "ok", user_id: "u1", session_id: "s1" }));
  for (const path of ["/cb/authorizer", "/renew/authorizer"]) {
    service.on(path, ...queue(() => answer(rng, options, { ok: 8, fields: ["cap"] }), ok));
  }
  for (
    const path of [
      "/cb/beforeSubscribe",
      "/cb/beforeUnsubscribe",
      "/renew/beforeUnsubscribe",
      "/renew/onAuthorizationChange",
    ]
  ) {
    service.on(path, ...queue(() => answer(rng, options, { ok: 6 }), ok));
  }
  for (const path of ["/cb/onMessage", "/msg/onMessage"]) {
    service.on(path, ...queue(() => answer(rng, options, { ok: 5 }), ok));
  }
  for (const path of ["/cb/onSubscribe", "/cb/onUnsubscribe", "/renew/onUnsubscribe", "/renew/onHeartbeat"]) {
    service.on(path, ...queue(() => answer(rng, options, { ok: 3 }), ok));
  }
}

function ticketAnswer(rng: Rng, options: { slowAnswers?: boolean }): ServiceReply {
  return rng.weighted<() => ServiceReply>([
    [
      6,
      () => raw(obj({ status: "ok", user_id: garbage(rng, 1), session_id: garbage(rng, 1), extra: garbage(rng, 1) })),
    ],
    [1, () => raw(obj({ status: "ok", user_id: garbage(rng, 1) }))], // an auth field missing: a failed call
    [4, () => answer(rng, options, { ok: 0 })],
  ])();
}

/** A service answer; `mix.ok` weighs plain successes against everything else. */
function answer(
  rng: Rng,
  options: { slowAnswers?: boolean },
  mix: { ok: number; fields?: readonly string[] },
): ServiceReply {
  const fields = (): [string, Json][] =>
    (mix.fields ?? []).filter(() => rng.chance(0.7)).map((f) => [f, garbage(rng, 2)]);
  return rng.weighted<() => ServiceReply>([
    [mix.ok, () => raw(obj([["status", "ok"], ...fields()]))],
    [3, () => raw(obj([["status", "ok"], ["data", garbage(rng)], ...fields()]))],
    [1, () => raw(obj({ status: "ok", data: null }))],
    [
      1,
      () =>
        raw(
          obj({
            status: "ok",
            options: obj({ order: garbage(rng, 1), throttle: garbage(rng, 1), order_key: garbage(rng, 1) }),
          }),
        ),
    ],
    [2, () => raw(obj({ status: "error" }))],
    [
      3,
      () => raw(obj({ status: "error", error: garbage(rng, 2), data: rng.chance(0.5) ? garbage(rng, 2) : undefined })),
    ],
    [1, () => raw(obj({ status: "error", error: null }))],
    [1, () => raw(obj({ status: rng.pick<Json>(["OK", "Ok", " ok", true, 1, null, obj({}), ["ok"]]) }))],
    [
      1,
      () =>
        raw(
          obj([["status", "ok"], ["__proto__", obj({ status: "error", error: "polluted" })], [
            "data",
            obj([["__proto__", obj({ x: 1 })]]),
          ]]),
        ),
    ],
    [3, () => ({ http: 200, body: rng.pick(BROKEN_BODIES)(rng) })],
    [
      1,
      () => ({
        http: 200,
        contentType: rng.pick(["text/html", "text/plain", "application/xml"]),
        body: '{"status":"ok"}',
      }),
    ],
    [1, () => ({ http: rng.pick([201, 204, 400, 401, 403, 404, 500, 502, 503]), body: '{"status":"ok"}' })],
    [1, () => ({ http: rng.pick([301, 302, 307, 308]), headers: { location: "/ticket" }, body: "" })],
    [
      1,
      () => ({
        http: 429,
        headers: { "X-Rate-Limit-Reset": rng.pick(["0.01", "0", "-1", "nan", "abc", "", " 0.02 "]) },
        body: "{}",
      }),
    ],
    [1, () => ({ http: 200, body: `{"status":"ok","data":"${"x".repeat(rng.pick([8200, 20_000, 100_000]))}"}` })],
    [options.slowAnswers ? 1 : 0, () => ({ delayMs: 400, reply: { status: "ok" } })],
  ])();
}

const BROKEN_BODIES: readonly ((rng: Rng) => string)[] = [
  () => "",
  () => "{",
  () => '{"status":"ok"',
  () => '{"status":"ok"}garbage',
  () => "null",
  () => "[]",
  () => '["ok"]',
  () => "5",
  () => '"ok"',
  () => '{"status":"ok","data":NaN}',
  () => '\ufeff{"status":"ok"}',
  () => '{"status":"ok","data":1e400,"error":-0}',
  (rng) => `{"status":"ok","data":${nestedText(rng.pick([126, 127, 128, 129, 100_000]))}}`,
  (rng) => `{"status":"error","error":${nestedText(rng.pick([100, 200]), '"deep"', "object")}}`,
  () => '{"status":"ok","status":"error"}',
  () => '{"status":"error","status":"ok","data":"dup"}',
];

function raw(value: Json): ServiceReply {
  return { http: 200, body: writeJson(value) };
}

// ---------------------------------------------------------------------------------------------------------------
// Client frames

const TEXT = 0x1;
const BINARY = 0x2;
const CONTINUATION = 0x0;

/** One WebSocket message to send. */
export interface FrameSpec {
  readonly opcode: typeof TEXT | typeof BINARY;
  readonly bytes: Uint8Array;
  /** Sent as this many frames (1: unfragmented). */
  readonly fragments: number;
  /** Send a ping control frame between the first two fragments. */
  readonly interleavePing: boolean;
  /** Which generator made it, for the counts. */
  readonly kind: string;
}

const utf8Encoder = new TextEncoder();

function textFrame(kind: string, text: string): FrameSpec {
  return { opcode: TEXT, bytes: utf8Encoder.encode(text), fragments: 1, interleavePing: false, kind };
}

const EVENTS = ["auth", "subscribe", "message", "unsubscribe", "ping"] as const;
type EventName = (typeof EVENTS)[number];

// Never "presence" (E3), which a later version may know.
const UNKNOWN_EVENTS = [
  "",
  " ",
  "PING",
  "Ping",
  "pong",
  "Subscribe",
  "subscribe ",
  " auth",
  "auth\u0000",
  "constructor",
  "__proto__",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "__defineGetter__",
  "then",
  "unknown",
  "a".repeat(40),
  "\ud83d\ude00".repeat(40),
  "\ud800".repeat(40),
  "e\u0301",
  "\u202eping",
];

/** Event values that make no usable envelope: too long, or not strings. */
const BAD_EVENTS: readonly (() => Json)[] = [
  () => "a".repeat(41),
  () => "\ud83d\ude00".repeat(41),
  () => "ping".repeat(11),
  () => null,
  () => 5,
  () => true,
  () => ["ping"],
  () => obj({ event: "ping" }),
  () => new RawJson("1e400"),
  () => new RawJson("-0"),
];

/**
 * The frame generator of one connection: every frame follows from its Rng, never from the server's answers, so a
 * seed replays the same frames.
 */
export class FrameGenerator {
  readonly #rng: Rng;
  readonly #world: FuzzWorld;
  readonly #names: readonly string[];

  constructor(rng: Rng, world: FuzzWorld) {
    this.#rng = rng;
    this.#world = world;
    // A few names per connection, so that subscribe, message and unsubscribe meet each other often.
    const plain = world.names.filter((n) =>
      /^[a-z]+\.[a-z]+$/.test(n) && Object.hasOwn(world.services, n.split(".")[0])
    );
    this.#names = [
      ...Array.from({ length: 6 }, () => rng.pick(plain)),
      ...Array.from({ length: 2 }, () => rng.pick(world.names)),
    ];
  }

  /** The next frame, within the size limit (a frame past it closes the connection: see `closingFrames`). */
  next(): FrameSpec {
    for (;;) {
      const frame = this.#any();
      if (frame.bytes.length <= this.#world.maxMessageBytes) return frame;
    }
  }

  #any(): FrameSpec {
    const rng = this.#rng;
    const frame = rng.weighted<() => FrameSpec>([
      [40, () => textFrame("event", writeJson(this.event()))],
      [6, () => textFrame("unknown event", writeJson(this.withEvent(rng.pick(UNKNOWN_EVENTS))))],
      [5, () => textFrame("bad envelope", writeJson(this.badEnvelope()))],
      [4, () => textFrame("not an object", writeJson(garbage(rng, 2)))],
      [5, () => textFrame("broken JSON", this.brokenText())],
      [6, () => textFrame("deep", this.deep())],
      [8, () => this.binary()],
    ])();
    if (rng.chance(0.08) && frame.bytes.length >= 2) {
      return { ...frame, fragments: rng.range(2, Math.min(5, frame.bytes.length)), interleavePing: rng.chance(0.4) };
    }
    return frame;
  }

  /** A known event with each field valid, of a wrong type, or absent; sometimes with hostile extra keys. */
  event(): JsonObject {
    const rng = this.#rng;
    const event = rng.weighted<EventName>([[2, "auth"], [4, "subscribe"], [3, "message"], [3, "unsubscribe"], [
      2,
      "ping",
    ]]);
    const entries: [string, Json][] = [];
    const maybe = (key: string, valid: () => Json, absent = 0.25, good = 0.65) => {
      if (rng.chance(absent)) return;
      entries.push([key, rng.chance(good) ? valid() : garbage(rng)]);
    };
    switch (event) {
      case "auth":
        maybe("method", () => "ticket", 0.7);
        maybe("ticket", () => rng.pick(["t1", "t2", "ticket-\u00e9"]), 0.1);
        break;
      case "ping":
        maybe("data", () => garbageString(rng), 0.2);
        break;
      default: {
        const subscription = rng.chance(0.9) ? rng.pick(this.#names) : garbageString(rng);
        maybe("subscription", () => subscription, 0.03, 0.85);
        const serviceName = subscription.split(".")[0];
        const fields = Object.hasOwn(this.#world.services, serviceName)
          ? this.#world.services[serviceName].extraFields
          : [];
        for (const field of fields) maybe(field, () => rng.pick<Json>(["s1", "s2", 1, null]), 0.5);
        if (event === "message") maybe("data", () => garbage(rng), 0.3);
      }
    }
    if (rng.chance(0.15)) entries.push([rng.pick(KEYS.filter((k) => k !== "event")), garbage(rng, 2)]);
    // The event key anywhere, sometimes twice (the last one wins).
    const at = rng.int(entries.length + 1);
    entries.splice(at, 0, ["event", event]);
    if (rng.chance(0.05)) entries.splice(rng.int(at + 1), 0, ["event", rng.pick<Json>(["ping", "nope", null, 5])]);
    return obj(entries);
  }

  withEvent(event: Json): JsonObject {
    return obj([...this.event().entries.filter(([k]) => k !== "event"), ["event", event]]);
  }

  badEnvelope(): JsonObject {
    const rng = this.#rng;
    if (rng.chance(0.2)) return obj(this.event().entries.filter(([k]) => k !== "event"));
    return this.withEvent(rng.pick(BAD_EVENTS)());
  }

  brokenText(): string {
    const rng = this.#rng;
    const good = writeJson(this.event());
    return rng.weighted<() => string>([
      [3, () => good.slice(0, rng.int(good.length))],
      [2, () => good + rng.pick(["x", "}", ",", " {}", "\u0000", "//"])],
      [
        2,
        () => rng.pick(["", " ", "\n", "{}", "[]", "null", "{'event':'ping'}", '{"event":"ping",}', '{event:"ping"}']),
      ],
      [
        2,
        () =>
          `{"event":"ping","data":${
            rng.pick(["NaN", "Infinity", "-Infinity", "+1", "01", ".5", "1.", "0x10", "1e", "--1", "undefined"])
          }}`,
      ],
      [2, () => `{"event":"ping","data":"${rng.pick(["\u0000", "\u0001", "\n", "\t", "\u001f"])}"}`],
      [1, () => `{"event":"ping","data":"${rng.pick(["\\x41", "\\u12", "\\ud800\\u", "\\", "\\U0041"])}"}`],
      [1, () => `\ufeff${good}`],
      [1, () => `${good}${good}`],
    ])();
  }

  /** Nesting around the limit (128 levels), at the top or in a field; the depth of the whole frame counts. */
  deep(): string {
    const rng = this.#rng;
    const depth = rng.weighted<number>([[3, 126], [4, 127], [4, 128], [3, 129], [2, 130], [1, 1000], [1, 100_000]]);
    const kind = rng.pick(["array", "object", "mixed"] as const);
    return rng.weighted<() => string>([
      [1, () => nestedText(depth, '{"event":"ping"}', kind)],
      [3, () => `{"event":"ping","data":${nestedText(depth - 1, '"deep"', kind)}}`],
      [2, () => `{"event":"subscribe","subscription":"open.a","v":${nestedText(depth - 1, "1", kind)}}`],
      [1, () => `{"event":"auth","ticket":${nestedText(depth - 1, '"t"', kind)}}`],
      [1, () => `{"event":"message","subscription":"msg.a","data":${nestedText(depth - 1, "0", kind)}}`],
      [1, () => `{"event":"ping","data":"${"[".repeat(depth)}"}`], // brackets inside a string do not nest
    ])();
  }

  /** A binary frame: the JSON in UTF-8 (with or without BOM), UTF-16, UTF-32, broken UTF-8, or noise. */
  binary(): FrameSpec {
    const rng = this.#rng;
    const text = writeJson(this.event());
    const utf8 = utf8Encoder.encode(text);
    const bytes = rng.weighted<() => Uint8Array>([
      [4, () => utf8],
      [1, () => concat([0xef, 0xbb, 0xbf], utf8)],
      [2, () => utf16(text, rng.chance(0.5) ? "le" : "be", rng.chance(0.5))],
      [1, () => utf32(text, rng.chance(0.5) ? "le" : "be")],
      [3, () => {
        const at = rng.int(utf8.length + 1);
        const bad = rng.pick([
          [0x80],
          [0xc0, 0xaf],
          [0xed, 0xa0, 0x80],
          [0xf4, 0x90, 0x80, 0x80],
          [0xff],
          [0xe2, 0x82],
          [0xf0, 0x9f, 0x98],
        ]);
        return concat(utf8.subarray(0, at), bad, utf8.subarray(at));
      }],
      [1, () => new Uint8Array(Array.from({ length: rng.range(0, 40) }, () => rng.int(256)))],
    ])();
    return { opcode: BINARY, bytes, fragments: 1, interleavePing: false, kind: "binary" };
  }
}

function concat(...parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function utf16(text: string, endian: "le" | "be", bom: boolean): Uint8Array {
  const units = bom ? `\ufeff${text}` : text;
  const out = new Uint8Array(units.length * 2);
  for (let i = 0; i < units.length; i++) {
    const u = units.charCodeAt(i);
    out[2 * i + (endian === "le" ? 0 : 1)] = u & 0xff;
    out[2 * i + (endian === "le" ? 1 : 0)] = u >> 8;
  }
  return out;
}

function utf32(text: string, endian: "le" | "be"): Uint8Array {
  const points = [0xfeff, ...Array.from(text, (c) => c.codePointAt(0)!)];
  const out = new Uint8Array(points.length * 4);
  const view = new DataView(out.buffer);
  points.forEach((p, i) => view.setUint32(i * 4, p, endian === "le"));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The oracle

/** A parsed server frame. */
export type Frame = Record<string, unknown>;

export const INVALID_EVENT = "Messages must be JSON and contain an event field.";
const MAX_DEPTH = 128;
const MAX_EVENT_LENGTH = 40;
const PROTOCOL_KEYS = new Set(["event", "status", "error", "data", "subscription"]);

/** Error texts Shoal itself writes (the spec's, E5's and the README's limits): the rest come from services. */
const SHOAL_ERRORS = new Set([
  INVALID_EVENT,
  "Unhandled exception.",
  "Event not found.",
  "Service unavailable.",
  "Authentication method unsupported.",
  "Unauthorized.",
  "Must specify ticket.",
  "Authentication failed.",
  "Authentication required.",
  "Invalid subscription format.",
  "Invalid service.",
  "Already subscribed.",
  "Subscription does not exist.",
  "Too many subscriptions.",
  "Rate limit exceeded.",
  "Extra fields too large.",
]);

/** What one connection holds, as far as its answers tell. */
export interface ConnectionModel {
  authed: boolean;
  /** Subscription name → its service and the extra fields it echoes. */
  readonly subs: Map<string, { readonly service: string; readonly extra: Readonly<Record<string, unknown>> }>;
}

export function newModel(): ConnectionModel {
  return { authed: false, subs: new Map() };
}

function cloneModel(model: ConnectionModel): ConnectionModel {
  return { authed: model.authed, subs: new Map(model.subs) };
}

/** Python truthiness of a parsed JSON value. */
export function pyTruthy(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === 0 || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === "object") return Object.keys(value as object).length > 0;
  return true;
}

/** Python `==` between parsed JSON values (`true == 1 == 1.0`, deep for lists and dicts). */
export function pyEq(a: unknown, b: unknown): boolean {
  const num = (v: unknown) => (typeof v === "number" ? v : typeof v === "boolean" ? (v ? 1 : 0) : undefined);
  if (a === null || b === null) return a === b;
  const na = num(a);
  const nb = num(b);
  if (na !== undefined || nb !== undefined) return na !== undefined && nb !== undefined && na === nb;
  if (typeof a === "string" || typeof b === "string") return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => pyEq(x, b[i]));
  }
  const ka = Object.keys(a as object);
  const ob = b as Record<string, unknown>;
  return ka.length === Object.keys(ob).length && ka.every((k) => Object.hasOwn(ob, k) && pyEq((a as Frame)[k], ob[k]));
}

/** The canonical text of a parsed value: both sides agree when the server kept a value as the contract says. */
export function canon(value: unknown): string {
  return JSON.stringify(value) ?? "undefined";
}

/** Whether brackets outside strings nest deeper than `max` (the server's bound, written again independently). */
export function depthExceeds(text: string, max = MAX_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      if (++depth > max) return true;
    } else if (c === "]" || c === "}") depth--;
  }
  return false;
}

// A text frame's text keeps a leading U+FEFF (which JSON does not allow); a binary frame's UTF-8 BOM is skipped.
const textUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });
const fatalUtf16le = new TextDecoder("utf-16le", { fatal: true });
const fatalUtf16be = new TextDecoder("utf-16be", { fatal: true });

/**
 * The text of a frame as the README says Shoal reads it: text frames are UTF-8; binary frames UTF-8 (BOM allowed)
 * or UTF-16 (a BOM, else NUL bytes in the first two bytes, as Python's json.detect_encoding); not UTF-32.
 * Undefined: not decodable.
 */
export function decodeFrame(frame: FrameSpec): string | undefined {
  const b = frame.bytes;
  try {
    if (frame.opcode === TEXT) return textUtf8.decode(b);
    if (b[0] === 0xff && b[1] === 0xfe) return fatalUtf16le.decode(b);
    if (b[0] === 0xfe && b[1] === 0xff) return fatalUtf16be.decode(b);
    if (b.length >= 2 && b[0] !== 0 && b[1] === 0) return fatalUtf16le.decode(b);
    if (b.length >= 2 && b[0] === 0 && b[1] !== 0) return fatalUtf16be.decode(b);
    return fatalUtf8.decode(b);
  } catch {
    return undefined;
  }
}

/** How a frame reads at the envelope level. */
export type Envelope =
  | { readonly kind: "invalid" }
  | { readonly kind: "unknown"; readonly event: string }
  | { readonly kind: "event"; readonly event: EventName; readonly fields: Frame };

export function envelope(frame: FrameSpec): Envelope {
  const text = decodeFrame(frame);
  if (text === undefined || depthExceeds(text)) return { kind: "invalid" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: "invalid" };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { kind: "invalid" };
  const event = (value as Frame).event;
  if (typeof event !== "string" || [...event].length > MAX_EVENT_LENGTH) return { kind: "invalid" };
  if (!(EVENTS as readonly string[]).includes(event)) return { kind: "unknown", event };
  return { kind: "event", event: event as EventName, fields: value as Frame };
}

/** The pong a ping must get: string data cut to 128 code points, anything else null. */
export function expectedPong(fields: Frame): Frame {
  const data = fields.data;
  return { event: "pong", data: typeof data === "string" ? [...data].slice(0, 128).join("") : null };
}

interface ReplyShape {
  readonly event: string;
  readonly status: "ok" | "error";
  /** The exact error; ignored with `anyError` (a service's error, any JSON value). */
  readonly error?: unknown;
  readonly anyError?: boolean;
  readonly extra: Readonly<Record<string, unknown>>;
  /** Also accept the reply without any extra field. */
  readonly extraOptional?: boolean;
  readonly subscription?: string;
  /** May a `data` key be there. */
  readonly data: boolean;
}

/** Why `reply` does not have `shape`, or undefined when it does. */
function misfit(reply: Frame, shape: ReplyShape): string | undefined {
  if (reply.event !== shape.event) return `event is ${clip(canon(reply.event))}, expected ${clip(canon(shape.event))}`;
  if (reply.status !== shape.status) return `status is ${canon(reply.status)}, expected ${canon(shape.status)}`;
  if (shape.status === "error") {
    if (!Object.hasOwn(reply, "error")) return "an error reply without an error key";
    if (!shape.anyError && canon(reply.error) !== canon(shape.error)) {
      return `error is ${clip(canon(reply.error))}, expected ${canon(shape.error)}`;
    }
  } else if (Object.hasOwn(reply, "error")) return "an ok reply with an error key";
  if (Object.hasOwn(reply, "data")) {
    if (!shape.data) return `unexpected data ${clip(canon(reply.data))}`;
    // An error's data is forwarded only when truthy (a number too large for a double arrives as null).
    if (shape.status === "error" && reply.data !== null && !pyTruthy(reply.data)) {
      return `falsy error data ${canon(reply.data)} forwarded`;
    }
  }
  if (shape.subscription === undefined) {
    if (Object.hasOwn(reply, "subscription")) return `unexpected subscription ${clip(canon(reply.subscription))}`;
  } else if (reply.subscription !== shape.subscription) {
    return `subscription is ${clip(canon(reply.subscription))}, expected ${clip(canon(shape.subscription))}`;
  }
  const extraKeys = Object.keys(reply).filter((k) => !PROTOCOL_KEYS.has(k));
  const expected = Object.keys(shape.extra);
  if (shape.extraOptional && extraKeys.length === 0) return undefined;
  const missing = expected.filter((k) => !Object.hasOwn(reply, k));
  const unexpected = extraKeys.filter((k) => !Object.hasOwn(shape.extra, k));
  if (missing.length > 0 || unexpected.length > 0) {
    return `extra fields ${clip(canon(extraKeys))}, expected ${clip(canon(expected))}`;
  }
  for (const k of expected) {
    if (canon(reply[k]) !== canon(shape.extra[k])) {
      return `extra field ${canon(k)} is ${clip(canon(reply[k]))}, expected ${clip(canon(shape.extra[k]))}`;
    }
  }
  return undefined;
}

/** The answers allowed for one event: reply shapes (each with what it does to the model), and whether none is fine. */
interface Verdict {
  readonly shapes: readonly {
    readonly shape: ReplyShape;
    readonly apply?: (model: ConnectionModel, reply: Frame) => void;
  }[];
  readonly silent: boolean;
}

function utf8Length(text: string): number {
  return utf8Encoder.encode(text).byteLength;
}

/** No lone surrogate (String.prototype.isWellFormed, written out for older type libraries). */
function wellFormed(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

function exact(shape: Omit<ReplyShape, "extra" | "data"> & Partial<ReplyShape>): Verdict {
  return { shapes: [{ shape: { extra: {}, data: false, ...shape } }], silent: false };
}

function either(a: Verdict, b: Verdict): Verdict {
  return { shapes: [...a.shapes, ...b.shapes], silent: a.silent || b.silent };
}

/** Which answers the contract allows for a known event from a connection in state `model`. */
export function verdict(world: FuzzWorld, model: ConnectionModel, event: EventName, f: Frame): Verdict {
  if (event === "ping") return { shapes: [], silent: true }; // the pong is checked apart: it may overtake
  if (event === "auth") {
    const method = Object.hasOwn(f, "method") ? f.method : "ticket";
    if (method !== "ticket") return exact({ event, status: "error", error: "Authentication method unsupported." });
    if (!pyTruthy(f.ticket)) return exact({ event, status: "error", error: "Must specify ticket." });
    return {
      shapes: [
        { shape: { event, status: "ok", extra: {}, data: false }, apply: (m) => void (m.authed = true) },
        { shape: { event, status: "error", anyError: true, extra: {}, data: false } },
      ],
      silent: false,
    };
  }
  const name = f.subscription;
  if (typeof name !== "string" || name === "") {
    return exact({ event, status: "error", error: "Invalid subscription format." });
  }
  const invalidFormat = exact({ event, status: "error", error: "Invalid subscription format.", subscription: name });
  const dot = name.indexOf(".");
  if (dot <= 0 || dot === name.length - 1 || utf8Length(name) > world.maxSubscriptionBytes) return invalidFormat;
  const serviceName = name.slice(0, dot);
  let result: Verdict;
  if (!Object.hasOwn(world.services, serviceName)) {
    result = exact({ event, status: "error", error: "Invalid service.", subscription: name });
  } else {
    result = knownService(world, model, event, f, name, serviceName);
  }
  // A name with a lone surrogate may be refused as a format error: in UTF-8 it would share a channel with another.
  return wellFormed(name) ? result : either(invalidFormat, result);
}

function knownService(
  world: FuzzWorld,
  model: ConnectionModel,
  event: EventName,
  f: Frame,
  name: string,
  serviceName: string,
): Verdict {
  const service = world.services[serviceName];
  const requestExtra: Record<string, unknown> = {};
  for (const field of service.extraFields) if (Object.hasOwn(f, field)) defineField(requestExtra, field, f[field]);
  if (event === "subscribe") {
    // README, limits.maxExtraFieldsBytes: the extra fields as JSON are bounded (counted in characters or in bytes).
    const json = Object.keys(requestExtra).length === 0 ? "" : JSON.stringify(requestExtra);
    const tooLarge = exact({
      event,
      status: "error",
      error: "Extra fields too large.",
      subscription: name,
      extra: requestExtra,
    });
    if (json.length > world.maxExtraFieldsBytes) return tooLarge;
    const normal = subscribeVerdict(world, model, requestExtra, name, serviceName);
    return utf8Length(json) > world.maxExtraFieldsBytes ? either(tooLarge, normal) : normal;
  }
  const held = model.subs.get(name);
  if (!held) {
    return exact({
      event,
      status: "error",
      error: "Subscription does not exist.",
      subscription: name,
      extra: requestExtra,
    });
  }
  if (event === "message") {
    if (!service.onMessage) return { shapes: [], silent: true };
    return {
      shapes: [
        { shape: { event, status: "ok", extra: held.extra, data: true, subscription: name } },
        { shape: { event, status: "error", anyError: true, extra: held.extra, data: true, subscription: name } },
      ],
      silent: true,
    };
  }
  const remove = (m: ConnectionModel) => void m.subs.delete(name);
  const ok = {
    shape: { event, status: "ok" as const, extra: held.extra, data: service.beforeUnsubscribe, subscription: name },
    apply: remove,
  };
  if (!service.beforeUnsubscribe) return { shapes: [ok], silent: false };
  return {
    shapes: [ok, {
      shape: { event, status: "error", anyError: true, extra: held.extra, data: true, subscription: name },
    }],
    silent: false,
  };
}

function subscribeVerdict(
  world: FuzzWorld,
  model: ConnectionModel,
  requestExtra: Readonly<Record<string, unknown>>,
  name: string,
  serviceName: string,
): Verdict {
  const event = "subscribe";
  const held = model.subs.get(name);
  if (world.services[serviceName].requireAuthentication && !model.authed) {
    return exact({
      event,
      status: "error",
      error: "Authentication required.",
      subscription: name,
      extra: requestExtra,
    });
  }
  if (held) {
    return exact({ event, status: "error", error: "Already subscribed.", subscription: name, extra: held.extra });
  }
  if (model.subs.size >= world.maxSubscriptions) {
    return exact({
      event,
      status: "error",
      error: "Too many subscriptions.",
      subscription: name,
      extra: requestExtra,
      extraOptional: true,
    });
  }
  return {
    shapes: [
      {
        shape: { event, status: "ok", extra: requestExtra, data: true, subscription: name },
        // The extra fields the server echoed are those it stored (the same as the request's when it is right).
        apply: (m, reply) => void m.subs.set(name, { service: serviceName, extra: extraOf(reply) }),
      },
      { shape: { event, status: "error", anyError: true, extra: requestExtra, data: true, subscription: name } },
    ],
    silent: false,
  };
}

/** The extra fields of a reply: every key that is not a protocol key. */
function extraOf(reply: Frame): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  for (const k of Object.keys(reply)) if (!PROTOCOL_KEYS.has(k)) defineField(extra, k, reply[k]);
  return extra;
}

/** Set a field as an own property, `__proto__` included. */
function defineField(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Judge the replies to one frame against the model (updated by the reply). Returns the problems, if any. */
function judgeReplies(world: FuzzWorld, model: ConnectionModel, frame: FrameSpec, replies: readonly Frame[]): string[] {
  const env = envelope(frame);
  if (env.kind === "invalid") {
    const ok = replies.length === 1 && canon(replies[0]) === canon({ status: "error", error: INVALID_EVENT });
    return ok ? [] : [`expected only the invalid-event reply, got ${describeReplies(replies)}`];
  }
  if (env.kind === "unknown") {
    const expected = { event: env.event, status: "error", error: "Event not found." };
    const ok = replies.length === 1 && canon(replies[0]) === canon(expected);
    return ok ? [] : [`expected ${clip(canon(expected))}, got ${describeReplies(replies)}`];
  }
  const v = verdict(world, model, env.event, env.fields);
  if (replies.length === 0) return v.silent ? [] : [`no reply to ${env.event}`];
  if (replies.length > 1) return [`${replies.length} replies to one ${env.event}: ${describeReplies(replies)}`];
  if (v.shapes.length === 0) return [`expected no reply to ${env.event}, got ${describeReplies(replies)}`];
  const reasons: string[] = [];
  for (const { shape, apply } of v.shapes) {
    const why = misfit(replies[0], shape);
    if (why === undefined) {
      apply?.(model, replies[0]);
      return [];
    }
    reasons.push(why);
  }
  // Follow the server anyway, so that one wrong answer is reported once rather than in every later one.
  v.shapes.find(({ shape }) => shape.status === replies[0].status && shape.event === replies[0].event)?.apply?.(
    model,
    replies[0],
  );
  return [
    `${env.event} reply ${clip(canon(replies[0]), 400)} fits no allowed shape: ${[...new Set(reasons)].join("; ")}`,
  ];
}

/** A server-initiated unsubscribe (revocation): allowed for a held subscription of a service with renewal. */
function judgeRevocation(world: FuzzWorld, model: ConnectionModel, frame: Frame): string[] {
  const name = frame.subscription;
  const held = typeof name === "string" ? model.subs.get(name) : undefined;
  if (!held || !world.services[held.service].renewal) {
    return [`revocation of a subscription the connection does not hold: ${clip(canon(frame))}`];
  }
  if (!Object.hasOwn(frame, "error")) return [`revocation without error: ${clip(canon(frame))}`];
  const extra: Record<string, unknown> = {};
  for (const k of Object.keys(frame)) {
    if (!["event", "subscription", "error", "data"].includes(k)) defineField(extra, k, frame[k]);
  }
  if (canon(extra) !== canon(held.extra)) {
    return [`revocation echoes ${clip(canon(extra))}, expected ${clip(canon(held.extra))}`];
  }
  model.subs.delete(name as string);
  return [];
}

// ---------------------------------------------------------------------------------------------------------------
// Running frames against a server

/** A contract breach, with what is needed to reproduce it. */
export interface Violation {
  /** Where: runtime, seed, connection, frame number. */
  readonly where: string;
  /** The frame that provoked it, if one did. */
  readonly frame?: string;
  readonly problem: string;
}

/** Counts for reports. */
export class FuzzStats {
  readonly counts = new Map<string, number>();

  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  merge(other: FuzzStats): void {
    for (const [k, n] of other.counts) this.add(k, n);
  }

  /** The counts whose key starts with `prefix`, sorted, as "key=n". */
  summary(prefix = ""): string {
    return [...this.counts].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k.slice(prefix.length)}=${n}`).join(", ");
  }

  total(prefix: string): number {
    return [...this.counts].filter(([k]) => k.startsWith(prefix)).reduce((sum, [, n]) => sum + n, 0);
  }
}

/** A frame as a reader can retype it: text (as a JSON string literal, clipped) or hex. */
export function describeFrame(frame: FrameSpec): string {
  const parts = frame.fragments > 1
    ? ` in ${frame.fragments} fragments${frame.interleavePing ? " with a ping between" : ""}`
    : "";
  const how = `${frame.opcode === TEXT ? "text" : "binary"} ${frame.bytes.length} B${parts}`;
  const text = frame.opcode === TEXT ? decodeFrame(frame) : undefined;
  if (text !== undefined) return `${how}: ${clip(JSON.stringify(text), 600)}`;
  const hex = Buffer.from(frame.bytes.subarray(0, 96)).toString("hex").replace(/(..)/g, "$1 ").trim();
  return `${how}: ${hex}${frame.bytes.length > 96 ? " …" : ""}`;
}

export function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;
}

function describeReplies(replies: readonly Frame[]): string {
  return replies.length === 0 ? "no reply" : replies.map((r) => clip(canon(r), 300)).join(" | ");
}

/** Send one frame as described: whole or fragmented, maybe with a ping between the first fragments. */
export function sendFrame(client: RawWsClient, frame: FrameSpec): void {
  if (frame.fragments <= 1) return client.sendFrame(frame.opcode, frame.bytes);
  const cuts = [0];
  for (let i = 1; i < frame.fragments; i++) cuts.push(Math.floor((frame.bytes.length * i) / frame.fragments));
  cuts.push(frame.bytes.length);
  for (let i = 0; i < frame.fragments; i++) {
    client.sendFrame(i === 0 ? frame.opcode : CONTINUATION, frame.bytes.subarray(cuts[i], cuts[i + 1]), {
      fin: i === frame.fragments - 1,
    });
    if (i === 0 && frame.interleavePing) client.ping("fuzz");
  }
}

export interface FrameFuzzOptions {
  readonly shoal: ShoalProcess;
  readonly world: FuzzWorld;
  readonly rng: Rng;
  readonly connections: number;
  readonly framesPerConnection: number;
  /** Names the run in violations (e.g. "bun seed 123"). */
  readonly label: string;
  readonly stats?: FuzzStats;
  /** Milliseconds to wait for each answer. */
  readonly answerTimeoutMs?: number;
  /** Run only this connection (to replay one from a report). */
  readonly onlyConnection?: number;
  /** Called with each frame sent and each answer received (to replay one from a report). */
  readonly trace?: (line: string) => void;
}

type Segment = readonly { readonly kind: "reply" | "revocation"; readonly frame: Frame }[];

/**
 * `connections` clients at once; each sends its seeded frames in pipelined batches, each frame followed by a
 * sentinel (an unknown event with a unique name, answered in turn), and judges what came between two sentinels
 * against the model of that connection. Each client ends with a clean close or a dropped socket.
 */
export async function runFrameFuzz(options: FrameFuzzOptions): Promise<{ violations: Violation[]; stats: FuzzStats }> {
  const stats = options.stats ?? new FuzzStats();
  const violations: Violation[] = [];
  const indexes = options.onlyConnection === undefined
    ? Array.from({ length: options.connections }, (_, i) => i)
    : [options.onlyConnection];
  await Promise.all(indexes.map((i) => fuzzConnection(options, i, stats, violations)));
  return { violations, stats };
}

async function fuzzConnection(
  options: FrameFuzzOptions,
  index: number,
  stats: FuzzStats,
  violations: Violation[],
): Promise<void> {
  // Separate streams: the frames do not depend on how they were batched.
  const rng = options.rng.fork(`connection ${index}`);
  const generator = new FrameGenerator(rng.fork("frames"), options.world);
  const where = (n?: number) => `${options.label} connection ${index}${n === undefined ? "" : ` frame ${n}`}`;
  let client: RawWsClient;
  try {
    client = await RawWsClient.connect(options.shoal.url);
  } catch (error) {
    violations.push({ where: where(), problem: `could not connect: ${(error as Error).message}` });
    return;
  }
  const model = newModel();
  let sent = 0;
  let controlPings = 0;
  try {
    while (sent < options.framesPerConnection) {
      // A batch: up to 12 frames or 1 MiB, pipelined.
      const batch: FrameSpec[] = [];
      let bytes = 0;
      const size = rng.range(1, 12);
      while (batch.length < size && sent + batch.length < options.framesPerConnection && bytes < 1024 * 1024) {
        const frame = generator.next();
        batch.push(frame);
        bytes += frame.bytes.length;
      }
      for (const [i, frame] of batch.entries()) {
        options.trace?.(`→ ${sent + i}: ${describeFrame(frame)}`);
        sendFrame(client, frame);
        if (frame.interleavePing) controlPings++;
        client.send(`{"event":"~${sent + i}"}`);
        stats.add(`frames.${frame.kind}`);
      }
      const ok = await readBatch(client, options, model, batch, sent, stats, violations, where);
      sent += batch.length;
      if (!ok) return;
    }
    if (client.pongs.length < controlPings) {
      violations.push({
        where: where(),
        problem: `${controlPings} ping control frame(s) sent, ${client.pongs.length} pong(s) received`,
      });
    }
    if (client.protocolErrors.length > 0) {
      violations.push({
        where: where(),
        problem: `WebSocket protocol errors from the server: ${client.protocolErrors.join("; ")}`,
      });
    }
  } finally {
    // Half the clients leave cleanly, half drop the socket: both must release the session.
    if (rng.chance(0.5)) await client.close(1000, "", 2000);
    else client.destroy();
  }
}

async function readBatch(
  client: RawWsClient,
  options: FrameFuzzOptions,
  model: ConnectionModel,
  batch: readonly FrameSpec[],
  first: number,
  stats: FuzzStats,
  violations: Violation[],
  where: (n?: number) => string,
): Promise<boolean> {
  const pongsExpected: string[] = [];
  const pongsSeen: string[] = [];
  for (const [i, frame] of batch.entries()) {
    const n = first + i;
    const env = envelope(frame);
    stats.add(`envelopes.${env.kind === "event" ? env.event : env.kind}`);
    if (env.kind === "event" && env.event === "ping") pongsExpected.push(canon(expectedPong(env.fields)));
    // Everything up to this frame's sentinel: its reply, pongs (which may overtake), revocations.
    const segment: { kind: "reply" | "revocation"; frame: Frame }[] = [];
    for (;;) {
      let text: string;
      try {
        text = await client.nextText(options.answerTimeoutMs ?? 15_000);
      } catch (error) {
        const info = client.closeInfo;
        violations.push({
          where: where(n),
          frame: describeFrame(frame),
          problem: info
            ? `the connection was closed (${info.code} ${
              JSON.stringify(info.reason)
            }) before this frame and its sentinel were answered`
            : `no answer: ${clip((error as Error).message, 300)}`,
        });
        return false;
      }
      options.trace?.(`← ${clip(text, 300)}`);
      let reply: Frame;
      try {
        const parsed = JSON.parse(text);
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
        reply = parsed as Frame;
      } catch {
        violations.push({
          where: where(n),
          frame: describeFrame(frame),
          problem: `a reply that is not a JSON object: ${clip(JSON.stringify(text))}`,
        });
        continue;
      }
      if (reply.event === `~${n}` && reply.status === "error") {
        if (canon(reply) !== canon({ event: `~${n}`, status: "error", error: "Event not found." })) {
          violations.push({ where: where(n), problem: `the sentinel was answered ${clip(canon(reply))}` });
        }
        break;
      }
      if (reply.event === "pong" && !Object.hasOwn(reply, "status")) {
        pongsSeen.push(canon(reply));
        stats.add("replies.pong");
      } else if (reply.event === "unsubscribe" && !Object.hasOwn(reply, "status")) {
        segment.push({ kind: "revocation", frame: reply });
        stats.add("replies.revocation");
      } else if (reply.event === "message" && !Object.hasOwn(reply, "status")) {
        violations.push({
          where: where(n),
          frame: describeFrame(frame),
          problem: `a delivery nobody published: ${clip(canon(reply))}`,
        });
      } else {
        segment.push({ kind: "reply", frame: reply });
        const error = typeof reply.error === "string" && SHOAL_ERRORS.has(reply.error)
          ? reply.error
          : "(service error)";
        stats.add(`replies.${reply.status === "ok" ? "ok" : error}`);
      }
    }
    for (const problem of judgeSegment(options.world, model, frame, segment)) {
      violations.push({ where: where(n), frame: describeFrame(frame), problem });
    }
  }
  // Pongs may overtake, but all of a batch's are in before its last sentinel's answer.
  const missing = [...pongsExpected];
  for (const pong of pongsSeen) {
    const at = missing.indexOf(pong);
    if (at >= 0) missing.splice(at, 1);
    else violations.push({ where: where(first), problem: `an unexpected pong ${clip(pong)}` });
  }
  for (const pong of missing) {
    violations.push({
      where: where(first),
      problem: `missing pong ${clip(pong)} in frames ${first}…${first + batch.length - 1}`,
    });
  }
  return true;
}

/**
 * Judge one frame's segment. A revocation runs in turn with client events: one seen before the reply happened
 * before the event, one after it after; with no reply it may be either, so both orders are tried.
 */
function judgeSegment(world: FuzzWorld, model: ConnectionModel, frame: FrameSpec, segment: Segment): string[] {
  const replies = segment.filter((s) => s.kind === "reply").map((s) => s.frame);
  const replyAt = segment.findIndex((s) => s.kind === "reply");
  const revocations = segment.filter((s) => s.kind === "revocation").map((s) => s.frame);
  const split = replyAt < 0 ? 0 : replyAt;
  const before = segment.slice(0, split).filter((s) => s.kind === "revocation").map((s) => s.frame);
  const after = segment.slice(split).filter((s) => s.kind === "revocation").map((s) => s.frame);
  const attempt = (first: readonly Frame[], then: readonly Frame[]) => {
    const trial = cloneModel(model);
    const problems = first.flatMap((r) => judgeRevocation(world, trial, r));
    problems.push(...judgeReplies(world, trial, frame, replies));
    problems.push(...then.flatMap((r) => judgeRevocation(world, trial, r)));
    return { trial, problems };
  };
  let result = attempt(before, after);
  if (result.problems.length > 0 && replyAt < 0 && revocations.length > 0) {
    const other = attempt(revocations, []);
    if (other.problems.length === 0) result = other;
  }
  model.authed = result.trial.authed;
  model.subs.clear();
  for (const [k, v] of result.trial.subs) model.subs.set(k, v);
  return result.problems;
}

// ---------------------------------------------------------------------------------------------------------------
// Frames that must close the connection

export interface ClosingFrame {
  readonly what: string;
  /** Sends it (possibly as several frames). */
  send(client: RawWsClient): void;
  /** The close codes the contract allows. */
  readonly codes: readonly number[];
}

/** Messages past the size limit (text, binary, fragmented) and text frames that are not UTF-8. */
export function closingFrames(rng: Rng, world: FuzzWorld): ClosingFrame[] {
  const max = world.maxMessageBytes;
  const big = (n: number) => utf8Encoder.encode(`{"event":"ping","data":"${"x".repeat(n - 26)}"}`);
  const frames: ClosingFrame[] = [
    { what: `a text frame of ${max + 1} bytes`, codes: [1009], send: (c) => c.sendFrame(TEXT, big(max + 1)) },
    { what: `a binary frame of ${max + 1} bytes`, codes: [1009], send: (c) => c.sendFrame(BINARY, big(max + 1)) },
    {
      what: `a text message of ${max + 1} bytes in 3 fragments`,
      codes: [1009],
      send: (c) => {
        const bytes = big(max + 1);
        const third = Math.floor(bytes.length / 3);
        c.sendFrame(TEXT, bytes.subarray(0, third), { fin: false });
        c.sendFrame(CONTINUATION, bytes.subarray(third, 2 * third), { fin: false });
        c.sendFrame(CONTINUATION, bytes.subarray(2 * third));
      },
    },
  ];
  for (const bad of [[0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff, 0xfe], [0xe2, 0x82]]) {
    const at = rng.range(1, 20);
    const good = utf8Encoder.encode(`{"event":"ping","data":"${"y".repeat(30)}"}`);
    const bytes = concat(good.subarray(0, at), bad, good.subarray(at));
    const hex = Buffer.from(bytes).toString("hex").replace(/(..)/g, "$1 ").trim();
    frames.push({
      what: `a text frame that is not UTF-8: ${hex}`,
      codes: world.invalidUtf8Codes,
      send: (c) => c.sendFrame(TEXT, bytes),
    });
  }
  return frames;
}

/**
 * Each closing frame on a connection of its own, after a ping that shows the connection works: the server must
 * close with an allowed code and say nothing to the frame. Returns one violation list per frame.
 */
export async function runClosingFrames(
  options: {
    shoal: ShoalProcess;
    world: FuzzWorld;
    rng: Rng;
    label: string;
    stats?: FuzzStats;
    only?: (frame: ClosingFrame) => boolean;
  },
): Promise<{ violations: Violation[]; stats: FuzzStats }> {
  const stats = options.stats ?? new FuzzStats();
  const violations: Violation[] = [];
  for (const frame of closingFrames(options.rng, options.world).filter(options.only ?? (() => true))) {
    const where = `${options.label}, ${frame.what}`;
    const client = await RawWsClient.connect(options.shoal.url);
    try {
      client.send({ event: "ping", data: "before" });
      const pong = await client.next(5000);
      if (canon(pong) !== canon({ event: "pong", data: "before" })) {
        violations.push({ where, problem: `ping answered ${canon(pong)}` });
      }
      frame.send(client);
      const info = await client.waitClosed(10_000).catch(() => undefined);
      stats.add(`closes.${info?.code ?? "none"}`);
      if (!info) violations.push({ where, problem: "the connection stayed open" });
      else if (!frame.codes.includes(info.code)) {
        violations.push({
          where,
          problem: `closed with ${info.code} ${JSON.stringify(info.reason)}, expected ${frame.codes.join(" or ")}`,
        });
      }
      if (client.seen.length > 1) {
        violations.push({
          where,
          problem: `answered ${client.seen.slice(1).map((t) => clip(t)).join(" | ")}`,
        });
      }
    } finally {
      client.destroy();
    }
  }
  return { violations, stats };
}

// ---------------------------------------------------------------------------------------------------------------
// Published messages

/** A Redis connection whose command arguments may be bytes (a payload that is not UTF-8). */
export class RespConnection {
  readonly #socket: Socket;
  readonly #waiters: { resolve(value: unknown): void; reject(error: Error): void }[] = [];
  #buffer: Buffer = Buffer.alloc(0);

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      for (;;) {
        const parsed = parseResp(this.#buffer, 0);
        if (!parsed) break;
        this.#buffer = this.#buffer.subarray(parsed.end);
        const waiter = this.#waiters.shift();
        if (parsed.value instanceof Error) waiter?.reject(parsed.value);
        else waiter?.resolve(parsed.value);
      }
    });
    socket.on("close", () => {
      for (const waiter of this.#waiters.splice(0)) waiter.reject(new Error("redis connection closed"));
    });
  }

  static open(port: number): Promise<RespConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => resolve(new RespConnection(socket)));
      socket.once("error", reject);
    });
  }

  command(...args: (string | Uint8Array)[]): Promise<unknown> {
    const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
    for (const arg of args) {
      const bytes = typeof arg === "string" ? Buffer.from(arg, "utf8") : Buffer.from(arg);
      parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from("\r\n"));
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#socket.write(Buffer.concat(parts));
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

function parseResp(buffer: Buffer, offset: number): { value: unknown; end: number } | undefined {
  const lineEnd = buffer.indexOf("\r\n", offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[offset]);
  const line = buffer.toString("utf8", offset + 1, lineEnd);
  const next = lineEnd + 2;
  if (type === "+") return { value: line, end: next };
  if (type === "-") return { value: new Error(line), end: next };
  if (type === ":") return { value: Number(line), end: next };
  if (type === "$") {
    const n = Number(line);
    if (n < 0) return { value: null, end: next };
    if (buffer.length < next + n + 2) return undefined;
    return { value: buffer.toString("utf8", next, next + n), end: next + n + 2 };
  }
  if (type === "*") {
    const items: unknown[] = [];
    let at = next;
    for (let i = 0; i < Number(line); i++) {
      const item = parseResp(buffer, at);
      if (!item) return undefined;
      items.push(item.value);
      at = item.end;
    }
    return { value: items, end: at };
  }
  throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
}

/** A message accepted for publishing, with the channel it went to. */
interface Accepted {
  readonly channel: string;
  readonly fields: Frame;
  /** False when order or throttle options may hold it back or change its frame. */
  readonly certain: boolean;
}

/** One client of the publish fuzz, with its subscriptions and the deliveries it is owed or allowed. */
interface Subscriber {
  readonly client: RawWsClient;
  readonly index: number;
  readonly subs: Map<string, Readonly<Record<string, unknown>>>;
  /** Delivery keys (subscription, data) with multiplicity: owed in this batch, or allowed at any time. */
  readonly required: Map<string, number>;
  readonly optional: Map<string, number>;
  /** Delivery keys the oracle decided are not for this client, with why: for the report of an unexpected one. */
  readonly denied: Map<string, string>;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|\+00:00)$/;

const PUBLISH_NAMES = [
  "open.a",
  "open.b",
  "open.a.b",
  "open.\u00e9",
  "open.\ud83d\ude00",
  "open.\ufffd",
  "open.x y",
  `open.${"z".repeat(1000)}`,
];

export interface PublishFuzzOptions {
  readonly shoal: ShoalProcess;
  readonly world: FuzzWorld;
  readonly redisPort: number;
  readonly rng: Rng;
  readonly clients: number;
  readonly batches: number;
  readonly label: string;
  readonly stats?: FuzzStats;
  /** Called with each publication and each frame received (to replay one from a report). */
  readonly trace?: (line: string) => void;
}

/**
 * Clients subscribe to names of `open` and `proto` (with extra fields); batches of hostile publications go through
 * `POST /publish` and raw Redis `PUBLISH`, then a marker message; once every client has the marker, each must
 * have got exactly the messages the contract routes to it (by channel, payload subscription and filter fields),
 * each in a well-formed frame, and nothing else. The answers of `/publish` are checked too.
 */
export async function runPublishFuzz(
  options: PublishFuzzOptions,
): Promise<{ violations: Violation[]; stats: FuzzStats }> {
  const stats = options.stats ?? new FuzzStats();
  const violations: Violation[] = [];
  const rng = options.rng.fork("publish");
  const redis = await RespConnection.open(options.redisPort);
  const subscribers: Subscriber[] = [];
  try {
    for (let i = 0; i < options.clients; i++) subscribers.push(await subscribeClient(options, rng, i, violations));
    for (let b = 0; b < options.batches; b++) {
      const where = `${options.label} publish batch ${b}`;
      const count = rng.range(3, 12);
      for (let i = 0; i < count; i++) {
        const op = publication(rng, options.world);
        options.trace?.(
          op.via === "redis"
            ? `→ PUBLISH ${JSON.stringify(op.channel)} ${
              clip(JSON.stringify(Buffer.from(op.payload).toString("utf8")), 300)
            }`
            : `→ POST /publish (${op.what}) ${clip(JSON.stringify(op.body), 300)}`,
        );
        for (const message of await perform(op, options, redis, stats, violations, `${where} #${i}`)) {
          owe(subscribers, options.world, message);
        }
      }
      await settle(subscribers, options, b, stats, violations, where);
      await churn(options, subscribers, rng, violations);
    }
  } finally {
    redis.close();
    for (const s of subscribers) {
      if (rng.chance(0.5)) await s.client.close(1000, "", 2000);
      else s.client.destroy();
    }
  }
  return { violations, stats };
}

async function subscribeClient(
  options: PublishFuzzOptions,
  rng: Rng,
  index: number,
  violations: Violation[],
): Promise<Subscriber> {
  const client = await RawWsClient.connect(options.shoal.url);
  const s: Subscriber = { client, index, subs: new Map(), required: new Map(), optional: new Map(), denied: new Map() };
  const wanted = ["open.marker", ...PUBLISH_NAMES.filter(() => rng.chance(0.5))].slice(
    0,
    options.world.maxSubscriptions,
  );
  for (const name of wanted) await subscribeOne(options, s, name, rng, violations);
  options.trace?.(`client ${index} holds ${JSON.stringify([...s.subs].map(([n, e]) => `${clip(n, 20)} ${canon(e)}`))}`);
  return s;
}

/** Subscribe `s` to `name` with random extra fields; the answer must be the ok with them echoed. */
async function subscribeOne(
  options: PublishFuzzOptions,
  s: Subscriber,
  name: string,
  rng: Rng,
  violations: Violation[],
): Promise<void> {
  // Sent as written (1e400 stays 1e400 on the wire); the model holds what a JSON parser makes of it.
  const entries: [string, Json][] = [["event", "subscribe"], ["subscription", name]];
  if (name !== "open.marker" && rng.chance(0.6)) {
    entries.push([
      "v",
      rng.pick<Json>(["s1", "s2", 1, true, null, new RawJson("1e400"), new RawJson("-0"), obj({ k: [1] })]),
    ]);
  }
  const text = writeJson(obj(entries));
  const request = JSON.parse(text) as Frame;
  const extra: Record<string, unknown> = {};
  for (const [k] of entries.slice(2)) defineField(extra, k, request[k]);
  const expected: Frame = { event: "subscribe", status: "ok" };
  for (const [k, v] of Object.entries(extra)) defineField(expected, k, v);
  expected.subscription = name;
  options.trace?.(`→ client ${s.index}: ${clip(text, 300)}`);
  s.client.send(text);
  const reply = await s.client.next(5000).catch((error: Error) => error);
  if (reply instanceof Error || canon(reply) !== canon(expected)) {
    violations.push({
      where: `${options.label} publish client ${s.index}`,
      frame: clip(JSON.stringify(text)),
      problem: `subscribe answered ${reply instanceof Error ? reply.message : clip(canon(reply))}, expected ${
        clip(canon(expected))
      }`,
    });
    // The model holds what the server said: the subscription exists if the answer was ok.
    if (reply instanceof Error || reply.status !== "ok") return;
  }
  s.subs.set(name, extra);
}

/** Between batches: some clients leave a subscription, some take a new one (with other extra fields). */
async function churn(
  options: PublishFuzzOptions,
  subscribers: readonly Subscriber[],
  rng: Rng,
  violations: Violation[],
): Promise<void> {
  for (const s of subscribers) {
    const held = [...s.subs.keys()].filter((n) => n !== "open.marker");
    if (held.length > 0 && rng.chance(0.4)) {
      const name = rng.pick(held);
      const expected: Frame = { event: "unsubscribe", status: "ok" };
      for (const [k, v] of Object.entries(s.subs.get(name)!)) defineField(expected, k, v);
      expected.subscription = name;
      options.trace?.(`→ client ${s.index}: unsubscribe ${clip(name, 40)}`);
      s.client.send(JSON.stringify({ event: "unsubscribe", subscription: name }));
      const reply = await s.client.next(5000).catch((error: Error) => error);
      if (reply instanceof Error || canon(reply) !== canon(expected)) {
        violations.push({
          where: `${options.label} publish client ${s.index}`,
          problem: `unsubscribe from ${clip(JSON.stringify(name))} answered ${
            reply instanceof Error ? reply.message : clip(canon(reply))
          }, expected ${clip(canon(expected))}`,
        });
      }
      if (reply instanceof Error || reply.status === "ok") s.subs.delete(name);
    }
    const free = PUBLISH_NAMES.filter((n) => !s.subs.has(n));
    if (free.length > 0 && s.subs.size < options.world.maxSubscriptions && rng.chance(0.4)) {
      await subscribeOne(options, s, rng.pick(free), rng, violations);
    }
  }
}

type Publication =
  | {
    readonly via: "http";
    readonly what: string;
    readonly body: string;
    readonly authorization: string | null;
    /** Allowed HTTP statuses; 200 publishes `messages`. */
    readonly statuses: readonly number[];
    readonly messages: readonly Frame[];
  }
  | {
    readonly via: "redis";
    readonly what: string;
    readonly channel: string;
    readonly payload: Uint8Array;
    readonly message?: Frame;
  };

/** One hostile or ordinary publication, with what the contract makes of it. */
function publication(rng: Rng, world: FuzzWorld): Publication {
  const names = PUBLISH_NAMES;
  const name = () =>
    rng.chance(0.85)
      ? rng.pick(names)
      : rng.pick(["open.\ud800", "open.\udc00", "nosvc.a", "open.marker2", "open", ""]);
  const message = (): JsonObject => {
    const entries: [string, Json][] = [["subscription", name()], ["data", garbage(rng)]];
    if (rng.chance(0.3)) {
      entries.push([
        "v",
        rng.pick<Json>([
          "s1",
          "s2",
          1,
          true,
          null,
          new RawJson("1.0"),
          new RawJson("1e400"),
          obj({ k: [1] }),
          garbage(rng, 1),
        ]),
      ]);
    }
    if (rng.chance(0.1)) entries.push(["user_id", rng.pick<Json>([null, "u1", 0])]);
    if (rng.chance(0.15)) {
      entries.push(["__proto__", rng.pick<Json>(["p", 1, obj({ p: 1 }), null, obj({ polluted: true })])]);
    }
    if (rng.chance(0.2)) {
      const when = rng.pick<Json>([
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.123+00:00",
        "2024-01-02",
        "not-a-date",
        "",
        5,
        null,
        "2024-13-45T99:99:99Z",
        garbageString(rng),
      ]);
      entries.push(["published_at", when]);
    }
    if (rng.chance(0.15)) {
      const options = rng.pick<Json>([
        null,
        "x",
        [],
        obj({ order: garbage(rng, 1) }),
        obj({ throttle: garbage(rng, 1), throttle_key: garbage(rng, 1) }),
        obj({ order: new RawJson("1e400"), order_key: ["k"] }),
      ]);
      entries.push(["options", options]);
    }
    if (rng.chance(0.1)) {
      entries.push([rng.pick(["event", "status", "sent_at", "received_at", "queue_size", "extra"]), garbage(rng, 1)]);
    }
    if (rng.chance(0.3)) entries.reverse();
    return obj(entries);
  };
  const token = world.publishToken;
  const http = (what: string, body: string, authorization: string | null = `Bearer ${token}`): Publication => {
    const base = { via: "http" as const, what, body, authorization, messages: [] as Frame[] };
    if (authorization !== `Bearer ${token}`) return { ...base, statuses: [400, 401] };
    if (utf8Encoder.encode(body).byteLength > world.publishMaxBytes) return { ...base, statuses: [413] };
    const parsed = parseMessageText(body);
    if (parsed === undefined) return { ...base, statuses: [400] };
    const list = Array.isArray(parsed) ? parsed : [parsed];
    // POST /publish also refuses a subscription name no client could subscribe to (a lone surrogate).
    const publishable = (m: unknown) => validMessage(m) && ((m as Frame).subscription as string).isWellFormed();
    if (!list.every(publishable)) return { ...base, statuses: [400] };
    return { ...base, statuses: [200], messages: list as Frame[] };
  };
  const redisPublish = (what: string, channel: string | undefined, text: string): Publication => {
    const parsed = parseMessageText(text);
    const valid = validMessage(parsed) ? parsed as Frame : undefined;
    return {
      via: "redis",
      what,
      channel: channel ?? (valid ? valid.subscription as string : "open.a"),
      payload: utf8Encoder.encode(text),
      message: valid,
    };
  };
  return rng.weighted<() => Publication>([
    [5, () => http("one message", writeJson(message()))],
    [2, () => http("a batch", writeJson(Array.from({ length: rng.range(0, 4) }, message)))],
    [2, () =>
      http(
        "an invalid message",
        writeJson(
          rng.pick<() => Json>([
            () => obj({ subscription: name() }),
            () => obj({ subscription: garbage(rng, 1), data: 1 }),
            () => obj({ data: 1 }),
            () => [message(), obj({ subscription: 5, data: 1 })],
            () => garbage(rng, 1),
          ])(),
        ),
      )],
    [
      2,
      () =>
        http(
          "broken JSON",
          rng.pick([
            "",
            "{",
            '{"subscription":"open.a","data":NaN}',
            "[1,",
            `{"subscription":"open.a","data":${nestedText(rng.pick([127, 128, 100_000]))}}`,
            '{"subscription":"open.a","data":1}x',
          ]),
        ),
    ],
    [1, () => http("a body over the limit", `{"subscription":"open.a","data":"${"x".repeat(world.publishMaxBytes)}"}`)],
    [
      1,
      () =>
        http(
          "a bad token",
          writeJson(message()),
          rng.pick([null, `Bearer ${token}x`, "Bearer", `Basic ${token}`, `Bearer ${token} extra`, "bearer"]),
        ),
    ],
    [6, () => redisPublish("a message", rng.chance(0.8) ? undefined : name(), writeJson(message()))],
    [2, () =>
      redisPublish(
        "garbage",
        "open.a",
        rng.pick([
          "",
          "{",
          "null",
          "[1,2]",
          '{"subscription":"open.a"}',
          '{"data":1}',
          '{"subscription":5,"data":1}',
          `{"subscription":"open.a","data":${nestedText(rng.pick([127, 128, 100_000]))}}`,
          '{"subscription":"open.a","data":NaN}',
        ]),
      )],
    [1, () => {
      // Not UTF-8: delivered with replacement characters, or dropped; either way in a well-formed frame.
      const payload = concat(
        utf8Encoder.encode('{"subscription":"open.a","data":"'),
        [0xff, 0xc0, 0xed, 0xa0, 0x80],
        utf8Encoder.encode('"}'),
      );
      return { via: "redis", what: "a payload that is not UTF-8", channel: "open.a", payload };
    }],
  ])();
}

function parseMessageText(text: string): unknown {
  if (depthExceeds(text)) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function validMessage(value: unknown): boolean {
  return value !== null && typeof value === "object" && !Array.isArray(value) &&
    typeof (value as Frame).subscription === "string" && Object.hasOwn(value as object, "data");
}

/** Publish; returns the messages the contract says were accepted. */
async function perform(
  op: Publication,
  options: PublishFuzzOptions,
  redis: RespConnection,
  stats: FuzzStats,
  violations: Violation[],
  where: string,
): Promise<Accepted[]> {
  stats.add(`publish.${op.via} ${op.what}`);
  if (op.via === "redis") {
    await redis.command("PUBLISH", op.channel, op.payload);
    if (!op.message) {
      // Not UTF-8: whatever arrives must be well formed; it is allowed, not owed.
      if (op.what.includes("UTF-8")) {
        return [{ channel: op.channel, fields: { subscription: op.channel, data: undefined }, certain: false }];
      }
      return [];
    }
    // A channel is bytes: a lone surrogate in the name went out as U+FFFD, and so names another channel.
    const channel = Buffer.from(op.channel, "utf8").toString("utf8");
    return [{ channel, fields: op.message, certain: certain(op.message) }];
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (op.authorization !== null) headers.authorization = op.authorization;
  let status: number;
  let body: unknown;
  try {
    const response = await fetch(`${options.shoal.httpUrl}/publish`, {
      method: "POST",
      headers,
      body: op.body,
      signal: AbortSignal.timeout(10_000),
    });
    status = response.status;
    const text = await response.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } catch (error) {
    violations.push({
      where,
      frame: `POST /publish ${op.what}: ${clip(JSON.stringify(op.body))}`,
      problem: `request failed: ${(error as Error).message}`,
    });
    return [];
  }
  stats.add(`publish.answered ${status}`);
  let problem: string | undefined;
  if (!op.statuses.includes(status)) {
    problem = `answered ${status} ${clip(canon(body))}, expected ${op.statuses.join(" or ")}`;
  } else if (status === 200) {
    if (canon(body) !== canon({ status: "ok", published: op.messages.length })) {
      problem = `answered ${clip(canon(body))}, expected {"status":"ok","published":${op.messages.length}}`;
    }
  } else if (
    body === null || typeof body !== "object" || (body as Frame).status !== "error" ||
    typeof (body as Frame).error !== "string"
  ) {
    problem = `error answer ${
      clip(typeof body === "string" ? JSON.stringify(body) : canon(body))
    } is not {"status":"error","error":…}`;
  }
  if (problem) {
    violations.push({
      where,
      frame: `POST /publish (${op.what}, Authorization ${JSON.stringify(op.authorization)}): ${
        clip(JSON.stringify(op.body), 400)
      }`,
      problem,
    });
  }
  if (status !== 200) return [];
  // `/publish` publishes each message re-serialized: a number past a double's range (1e400) is null from here on.
  return op.messages.map((m) => ({
    channel: m.subscription as string,
    fields: JSON.parse(JSON.stringify(m)) as Frame,
    certain: certain(m),
  }));
}

/** Whether a message's delivery is determined: no order or throttle option that may hold it back. */
function certain(message: Frame): boolean {
  const o = message.options;
  if (o === null || typeof o !== "object" || Array.isArray(o)) return true;
  return !Object.hasOwn(o, "order") && !Object.hasOwn(o, "throttle");
}

/** A parsed message as JSON text, own `__proto__` keys included. */
function writeJsonOf(fields: Frame): string {
  return `{${Object.keys(fields).map((k) => `${JSON.stringify(k)}:${canon(fields[k])}`).join(",")}}`;
}

function deliveryKey(subscription: string, data: unknown): string {
  return `${subscription}\u0000${canon(data)}`;
}

/** Note, for every subscriber, whether the contract delivers `message` to it. */
function owe(subscribers: readonly Subscriber[], world: FuzzWorld, message: Accepted): void {
  const { channel, fields } = message;
  const subscription = fields.subscription as string;
  const serviceName = subscription.split(".")[0];
  const service = Object.hasOwn(world.services, serviceName) ? world.services[serviceName] : undefined;
  for (const s of subscribers) {
    // The channel picks the candidates; the payload's subscription must be one the client holds (docs/protocol.md §10.4).
    if (!service || !s.subs.has(channel) || !s.subs.has(subscription)) continue;
    const extra = s.subs.get(subscription)!;
    let match = true;
    const why: string[] = [];
    for (const f of service.filterFields) {
      if (!Object.hasOwn(fields, f)) continue;
      // Extra fields, then authorizer fields, then auth fields (decision 4): these clients have only extra fields.
      const mine = Object.hasOwn(extra, f) ? extra[f] : null;
      if (!pyEq(mine, fields[f])) {
        match = false;
        why.push(
          `filter field ${JSON.stringify(f)}: the message has ${clip(canon(fields[f]), 60)}, the subscription ${
            clip(canon(mine), 60)
          }`,
        );
      }
    }
    if (fields.data === undefined) {
      s.optional.set(`${subscription}\u0000*`, Infinity);
      continue;
    }
    const key = deliveryKey(subscription, fields.data);
    if (match && message.certain) s.required.set(key, (s.required.get(key) ?? 0) + 1);
    else if (match || !message.certain) s.optional.set(key, (s.optional.get(key) ?? 0) + 1);
    else s.denied.set(key, `${why.join("; ")}; the message: ${clip(writeJsonOf(fields), 300)}`);
  }
}

/** Publish the marker, wait until every client has it, and judge what each received before it. */
async function settle(
  subscribers: readonly Subscriber[],
  options: PublishFuzzOptions,
  batch: number,
  stats: FuzzStats,
  violations: Violation[],
  where: string,
): Promise<void> {
  const marker = { subscription: "open.marker", data: { marker: batch } };
  const response = await fetch(`${options.shoal.httpUrl}/publish`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${options.world.publishToken}` },
    body: JSON.stringify(marker),
    signal: AbortSignal.timeout(10_000),
  });
  await response.text();
  await Promise.all(subscribers.map(async (s) => {
    for (;;) {
      let text: string;
      try {
        text = await s.client.nextText(10_000);
      } catch (error) {
        violations.push({
          where: `${where} client ${s.index}`,
          problem: `no marker: ${clip((error as Error).message, 400)}`,
        });
        return;
      }
      let frame: Frame;
      try {
        frame = JSON.parse(text) as Frame;
      } catch {
        violations.push({
          where: `${where} client ${s.index}`,
          problem: `a frame that is not JSON: ${clip(JSON.stringify(text))}`,
        });
        continue;
      }
      options.trace?.(`← client ${s.index}: ${clip(text, 300)}`);
      if (frame.subscription === "open.marker" && canon(frame.data) === canon(marker.data)) break;
      stats.add("deliveries");
      const problem = judgeDelivery(s, frame);
      if (problem) violations.push({ where: `${where} client ${s.index}`, problem });
    }
    for (const [key, n] of s.required) {
      const [subscription, data] = key.split("\u0000");
      violations.push({
        where: `${where} client ${s.index}`,
        problem: `${n} message(s) for ${clip(JSON.stringify(subscription))} with data ${clip(data)} not delivered`,
      });
    }
    s.required.clear();
  }));
}

/** Why a delivery is not one the client was owed or allowed, or undefined. */
function judgeDelivery(s: Subscriber, frame: Frame): string | undefined {
  const subscription = frame.subscription;
  if (frame.event !== "message" || Object.hasOwn(frame, "status") || typeof subscription !== "string") {
    return `not a delivery: ${clip(canon(frame))}`;
  }
  const extra = s.subs.get(subscription);
  if (!extra) {
    return `a delivery for ${clip(JSON.stringify(subscription))}, which the client does not hold: ${
      clip(canon(frame))
    }`;
  }
  const key = deliveryKey(subscription, frame.data);
  const owed = (s.required.get(key) ?? 0) > 0;
  const pool = owed ? s.required : s.optional;
  const left = pool.get(key) ?? 0;
  if (left > 0) {
    if (left === 1) pool.delete(key);
    else pool.set(key, left - 1);
  } else if (!s.optional.has(`${subscription}\u0000*`)) {
    const denied = s.denied.get(key);
    return `unexpected delivery ${clip(canon({ ...frame, data: undefined }), 300)} with data ${
      clip(canon(frame.data), 200)
    }` +
      (denied ? `; not for this client: ${denied}` : "; no such message was accepted for it");
  }
  const allowed = new Set([
    "event",
    "subscription",
    "data",
    "published_at",
    "received_at",
    "queue_size",
    "sent_at",
    ...Object.keys(extra),
  ]);
  const unexpected = Object.keys(frame).filter((k) => !allowed.has(k));
  if (unexpected.length > 0) {
    return `a delivery with keys ${canon(unexpected)} it should not have: ${clip(canon(frame))}`;
  }
  for (const k of Object.keys(extra)) {
    if (!Object.hasOwn(frame, k) || canon(frame[k]) !== canon(extra[k])) {
      return `a delivery that echoes ${JSON.stringify(k)} as ${clip(canon(frame[k]))}, expected ${
        clip(canon(extra[k]))
      }: ${clip(canon(frame))}`;
    }
  }
  if (typeof frame.sent_at !== "string" || !ISO_UTC.test(frame.sent_at)) {
    return `sent_at ${canon(frame.sent_at)} is not ISO-8601 UTC`;
  }
  if (owed) {
    if (typeof frame.received_at !== "string" || !ISO_UTC.test(frame.received_at)) {
      return `received_at ${canon(frame.received_at)} is not ISO-8601 UTC`;
    }
    if (!Number.isInteger(frame.queue_size) || (frame.queue_size as number) < 0) {
      return `queue_size ${canon(frame.queue_size)} is not a non-negative integer`;
    }
  }
  if (Object.hasOwn(frame, "published_at") && typeof frame.published_at !== "string") {
    return `published_at ${canon(frame.published_at)} is not a string`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Leaks and liveness

/** Prometheus text → sample (name with labels) → value. */
export async function scrapeMetrics(httpUrl: string): Promise<Map<string, number>> {
  const response = await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** The gauges that must come back to zero once every client is gone (those of them the server exposes). */
export function leakGauges(samples: Map<string, number>): Map<string, number> {
  const gauges = new Map<string, number>();
  for (const [name, value] of samples) {
    if (
      /^shoal_(connection_count|sessions|subscriptions|channels|subscription_count|session_count|channel_count)(\{.*\})?$/
        .test(name)
    ) {
      gauges.set(name, value);
    }
  }
  return gauges;
}

/**
 * Wait (up to `timeoutMs`) until the connection, session and subscription gauges are 0 and Redis has no channel
 * or pattern subscribed; returns what was still there, or nothing.
 */
export async function leakCheck(shoal: ShoalProcess, redisPort: number, timeoutMs = 10_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left: string[] = [];
    try {
      const gauges = leakGauges(await scrapeMetrics(shoal.httpUrl));
      if (!gauges.has("shoal_connection_count")) left.push("/metrics has no shoal_connection_count");
      for (const [name, value] of gauges) if (value !== 0) left.push(`${name} = ${value}`);
    } catch (error) {
      left.push(`/metrics failed: ${(error as Error).message}`);
    }
    const channels = await respCommand(redisPort, ["PUBSUB", "CHANNELS"]).catch((e: Error) => e);
    if (channels instanceof Error) left.push(`PUBSUB CHANNELS failed: ${channels.message}`);
    else if (Array.isArray(channels) && channels.length > 0) {
      left.push(`redis channels still subscribed: ${clip(JSON.stringify(channels), 500)}`);
    }
    const patterns = await respCommand(redisPort, ["PUBSUB", "NUMPAT"]).catch(() => 0);
    if (patterns !== 0) left.push(`redis patterns still subscribed: ${patterns}`);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Whether the process is up and a new connection gets its pong: the problem, or undefined. */
export async function livenessProblem(shoal: ShoalProcess): Promise<string | undefined> {
  if (!shoal.running) return `the server exited:\n${clip(shoal.describe(), 4000)}`;
  try {
    const client = await RawWsClient.connect(shoal.url);
    try {
      client.send({ event: "ping", data: "alive" });
      const pong = await client.next(5000);
      return canon(pong) === canon({ event: "pong", data: "alive" }) ? undefined : `ping answered ${canon(pong)}`;
    } finally {
      await client.close(1000, "", 2000);
    }
  } catch (error) {
    return `a new connection failed: ${(error as Error).message}`;
  }
}

/** Log lines at error level or above since line `since`: bugs the server caught (and survived). */
export function serverErrors(shoal: ShoalProcess, since = 0): string[] {
  return shoal.logs.slice(since).filter((l) => /^(error|fatal)$/i.test(String(l.level))).map((l) =>
    clip(JSON.stringify(l), 600)
  );
}

/** A failure message: how to replay, then each violation. */
export function report(
  seed: number,
  target: string,
  violations: readonly Violation[],
  other: readonly string[] = [],
): string {
  const lines = violations.slice(0, 30).map((v) =>
    `- ${v.where}: ${v.problem}${v.frame ? `\n    frame: ${v.frame}` : ""}`
  );
  if (violations.length > 30) lines.push(`… and ${violations.length - 30} more`);
  return [
    `fuzz: ${violations.length} contract violation(s), ${other.length} other problem(s); replay with SHOAL_FUZZ_SEED=${seed} SHOAL_TARGET=${target}`,
    ...lines,
    ...other.map((e) => `- ${e}`),
  ].join("\n");
}
