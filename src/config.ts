import * as v from "valibot";

/**
 * Every default in one place. Durations are in seconds and sizes in bytes, as in SocketShark's config.
 */
export const DEFAULTS = {
  ws: {
    host: "127.0.0.1",
    port: 9000,
    ping: { interval: 15, timeout: 15 },
    maxMessageBytes: 1024 * 1024,
    maxPendingEvents: 1000,
    maxBufferedBytes: 8 * 1024 * 1024,
    handshakeTimeout: 10,
  },
  limits: {
    maxConnections: 0,
    maxSubscriptionsPerConnection: 1000,
    eventsPerSecond: 0,
    eventsBurst: 0,
    maxSubscriptionLength: 1024,
    maxExtraFieldsBytes: 16 * 1024,
    maxPendingBytes: 4 * 1024 * 1024,
    maxCallbacksPerService: 64,
    maxBufferedBytesTotal: 256 * 1024 * 1024,
  },
  http: {
    timeout: 15,
    tries: 3,
    wait: 3,
    rateLimitResetHeaderNames: ["X-Rate-Limit-Reset"],
    maxResponseBytes: 1024 * 1024,
  },
  service: {
    requireAuthentication: true,
    authorizationRenewalJitter: 0,
    // Extension E3: a node rewrites its sessions' presence entries every refreshInterval; they expire after 3 ×.
    presence: { joinLeave: false, refreshInterval: 10 },
  },
  redis: {
    channelPrefix: "",
    pingInterval: 10,
    pingTimeout: 5,
    connectTimeout: 10,
    maxReconnectDelay: 5,
    onConnectionLoss: "reconnect",
  },
  publish: { maxBodyBytes: 1024 * 1024 },
  log: { level: "info", format: "auto" },
  shutdown: { drainTimeout: 10 },
  console: { enabled: false },
  admin: { reportInterval: 5 },
} as const;

/** Keys of client, published and delivered messages that an extra or filter field must not overwrite (decision 10). */
export const RESERVED_FIELDS: readonly string[] = [
  "event",
  "status",
  "error",
  "data",
  "subscription",
  "options",
  // Keys of a delivered message: an extra field so named would replace Shoal's value in every frame.
  "published_at",
  "received_at",
  "queue_size",
  "sent_at",
  // History and recovery (extension E1): keys of delivered frames, the subscribe OK and the subscribe request.
  "offset",
  "epoch",
  "recover",
  "recovered",
];

const seconds = (what: string) => v.pipe(v.number(`${what} must be a number of seconds`), v.finite(), v.minValue(0));
const positiveSeconds = (what: string) =>
  v.pipe(v.number(`${what} must be a number of seconds`), v.finite(), v.gtValue(0, `${what} must be above 0`));
const bytes = (what: string) => v.pipe(v.number(`${what} must be a number of bytes`), v.integer(), v.minValue(1));
/** A TCP port number, 0 meaning "any free one". */
const portNumber = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535));
/** What a broker does when it loses its connection: reconnect (Shoal) or shut the server down (SocketShark). */
const onConnectionLoss = v.optional(v.picklist(["reconnect", "shutdown"]), DEFAULTS.redis.onConnectionLoss);

/** A port given as text (a flag, an environment variable); throws `ConfigError` naming `what`. */
export function parsePort(what: string, text: string): number {
  const value = Number(text);
  // Decimal digits only: Number() would also take " 80 ", "0x50", "1e3" and "0b101".
  if (!/^[0-9]{1,5}$/.test(text) || value > 65535) {
    throw new ConfigError([`${what}: not a port (an integer from 0 to 65535): ${JSON.stringify(text)}`]);
  }
  return value;
}

/** A count where 0 means "no limit". */
const countOrZero = (what: string) => v.pipe(v.number(`${what} must be a number`), v.integer(`${what} must be an integer`), v.minValue(0));
/** RFC 6750 `b64token` (token68): a bearer token made of anything else can never be sent in a header. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;
/** An origin as a browser sends it (`scheme://host[:port]`), where the host may start with `*.`. */
const ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/(?:\*\.)?[^/*?#@\s]+$/i;

const url = (what: string) =>
  v.pipe(v.string(`${what} must be a URL string`), v.url(`${what} must be an absolute URL`));
/**
 * Names that are not plain keys in JavaScript: assigning `__proto__` replaces an object's prototype, and validation
 * drops all three from parsed objects. A field so named could never be echoed or matched, so none may be configured.
 */
export const UNSAFE_FIELDS: readonly string[] = ["__proto__", "constructor", "prototype"];

/** A list of field names: none of `UNSAFE_FIELDS`, and with `reserved`, none of the protocol keys either. */
const fieldList = (what: string, reserved = true) =>
  v.pipe(
    v.array(v.string(), `${what} must be a list of field names`),
    v.check(
      (names) => !names.some((n) => UNSAFE_FIELDS.includes(n)),
      `${what} must not name ${UNSAFE_FIELDS.join(", ")} (not plain keys in JavaScript)`,
    ),
    v.check(
      (names) => !reserved || !names.some((n) => RESERVED_FIELDS.includes(n)),
      `${what} must not name a protocol key (${RESERVED_FIELDS.join(", ")})`,
    ),
  );

/** JWS algorithms a JWT may be signed with (extension E2): HMAC with a secret, the rest with a public key. */
export const JWT_ALGORITHMS = [
  "HS256", "HS384", "HS512",
  "RS256", "RS384", "RS512",
  "PS256", "PS384", "PS512",
  "ES256", "ES384", "ES512",
  "EdDSA",
] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

const stringOrList = (what: string) =>
  v.union([v.pipe(v.string(), v.minLength(1)), v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1))], `${what} must be a string or a non-empty list of strings`);

/** `authentication.jwt` (extension E2): one key source, algorithms that fit it, the claims to check and keep. */
const JwtSchema = v.pipe(
  v.strictObject({
    algorithms: v.pipe(v.array(v.picklist(JWT_ALGORITHMS)), v.minLength(1, "jwt.algorithms must name at least one algorithm")),
    secret: v.optional(v.pipe(v.string(), v.minLength(1, "jwt.secret must not be empty"))),
    publicKey: v.optional(v.pipe(v.string(), v.regex(/-----BEGIN (PUBLIC KEY|CERTIFICATE)-----/, "jwt.publicKey must be a PEM public key (BEGIN PUBLIC KEY) or certificate"))),
    jwksUrl: v.optional(url("jwksUrl")),
    issuer: v.optional(stringOrList("jwt.issuer")),
    audience: v.optional(stringOrList("jwt.audience")),
    authFields: v.optional(fieldList("authFields", false), []),
    leeway: v.optional(seconds("jwt.leeway"), 30),
  }),
  v.check(
    (jwt) => [jwt.secret, jwt.publicKey, jwt.jwksUrl].filter((k) => k !== undefined).length === 1,
    "authentication.jwt needs exactly one of secret, publicKey or jwksUrl",
  ),
  v.check(
    (jwt) => jwt.algorithms.every((a) => a.startsWith("HS") === (jwt.secret !== undefined)),
    "authentication.jwt.algorithms: HS256/384/512 go with secret, the others with publicKey or jwksUrl",
  ),
);

const ServiceSchema = v.pipe(
  v.strictObject({
    requireAuthentication: v.optional(v.boolean(), DEFAULTS.service.requireAuthentication),
    authorizer: v.optional(url("authorizer")),
    authorizerFields: v.optional(fieldList("authorizerFields", false), []),
    authorizationRenewalPeriod: v.optional(positiveSeconds("authorizationRenewalPeriod")),
    authorizationRenewalJitter: v.optional(seconds("authorizationRenewalJitter"), DEFAULTS.service.authorizationRenewalJitter),
    extraFields: v.optional(fieldList("extraFields"), []),
    filterFields: v.optional(fieldList("filterFields"), []),
    beforeSubscribe: v.optional(url("beforeSubscribe")),
    onSubscribe: v.optional(url("onSubscribe")),
    onMessage: v.optional(url("onMessage")),
    beforeUnsubscribe: v.optional(url("beforeUnsubscribe")),
    onUnsubscribe: v.optional(url("onUnsubscribe")),
    onAuthorizationChange: v.optional(url("onAuthorizationChange")),
    heartbeatPeriod: v.optional(positiveSeconds("heartbeatPeriod")),
    // Extension E1: keep the last `size` messages of each subscription for `ttl` seconds after the last one.
    history: v.optional(v.strictObject({
      size: v.pipe(
        v.number("history.size must be a number"),
        v.integer("history.size must be an integer"),
        v.minValue(1),
        v.maxValue(1_000_000, "history.size must be at most 1000000 (a recovery replays up to size messages)"),
      ),
      ttl: v.pipe(positiveSeconds("history.ttl"), v.maxValue(31_536_000, "history.ttl must be at most 31536000 (a year)")),
    })),
    onHeartbeat: v.optional(url("onHeartbeat")),
    // Extension E3: `true` or `{ joinLeave, refreshInterval }`; absent or false, the service has no presence.
    presence: v.optional(v.pipe(
      v.custom<boolean | { joinLeave?: boolean; refreshInterval?: number }>(() => true),
      v.transform((p) => (p === true ? {} : p === false ? undefined : p)),
      v.optional(v.strictObject({
        joinLeave: v.optional(v.boolean("presence.joinLeave must be true or false"), DEFAULTS.service.presence.joinLeave),
        refreshInterval: v.optional(
          v.pipe(
            positiveSeconds("presence.refreshInterval"),
            v.minValue(0.1, "presence.refreshInterval must be at least 0.1"),
            v.maxValue(3600, "presence.refreshInterval must be at most 3600"),
          ),
          DEFAULTS.service.presence.refreshInterval,
        ),
      })),
    )),
  }),
  v.check(
    (s) => s.authorizationRenewalPeriod === undefined || s.authorizer !== undefined,
    "authorizationRenewalPeriod needs an authorizer",
  ),
  v.check(
    (s) => (s.heartbeatPeriod === undefined) === (s.onHeartbeat === undefined),
    "heartbeatPeriod and onHeartbeat go together",
  ),
);

const MemoryBrokerSchema = v.strictObject({ kind: v.literal("memory") });

const redisUrl = (what: string) =>
  v.pipe(
    url(what),
    v.check((u) => /^rediss?:\/\//.test(u), `${what} must be a redis:// or rediss:// URL`),
  );
const channelPrefix = v.optional(v.string("channelPrefix must be a string"), DEFAULTS.redis.channelPrefix);

/** What every node-redis based broker shares: health check, start-up timeout, reconnects (seconds). */
const redisConnection = {
  channelPrefix,
  pingInterval: v.optional(seconds("pingInterval"), DEFAULTS.redis.pingInterval),
  pingTimeout: v.optional(seconds("pingTimeout"), DEFAULTS.redis.pingTimeout),
  connectTimeout: v.optional(positiveSeconds("connectTimeout"), DEFAULTS.redis.connectTimeout),
  maxReconnectDelay: v.optional(positiveSeconds("maxReconnectDelay"), DEFAULTS.redis.maxReconnectDelay),
  onConnectionLoss,
};

const RedisBrokerSchema = v.strictObject({
  kind: v.literal("redis"),
  url: redisUrl("broker.url"),
  ...redisConnection,
  /** A second Redis during migrations (SocketShark's REDIS_ALT): every channel is subscribed on both. */
  alt: v.optional(v.strictObject({ url: redisUrl("broker.alt.url"), channelPrefix })),
});

const RedisClusterBrokerSchema = v.strictObject({
  kind: v.literal("redis-cluster"),
  nodes: v.pipe(
    v.array(redisUrl("broker.nodes[]"), "broker.nodes must be a list of redis:// URLs"),
    v.minLength(1, "broker.nodes needs at least one node"),
  ),
  /** SSUBSCRIBE/SPUBLISH (Redis 7 sharded pub/sub) instead of cluster-wide SUBSCRIBE/PUBLISH. */
  sharded: v.optional(v.boolean(), false),
  ...redisConnection,
});

const UpstashBrokerSchema = v.strictObject({
  kind: v.literal("upstash"),
  url: url("broker.url"),
  token: v.pipe(v.string("broker.token must be a string"), v.minLength(1, "broker.token must not be empty")),
  channelPrefix,
  connectTimeout: v.optional(positiveSeconds("connectTimeout"), DEFAULTS.redis.connectTimeout),
  maxReconnectDelay: v.optional(positiveSeconds("maxReconnectDelay"), DEFAULTS.redis.maxReconnectDelay),
  onConnectionLoss,
});

const ConfigSchema = v.strictObject({
  ws: v.optional(
    v.strictObject({
      host: v.optional(v.pipe(v.string(), v.minLength(1, "ws.host must not be empty (0.0.0.0 for every IPv4 interface)")), DEFAULTS.ws.host),
      port: v.optional(portNumber, DEFAULTS.ws.port),
      ping: v.optional(
        v.strictObject({
          interval: v.optional(seconds("ws.ping.interval"), DEFAULTS.ws.ping.interval),
          timeout: v.optional(positiveSeconds("ws.ping.timeout"), DEFAULTS.ws.ping.timeout),
        }),
        {},
      ),
      maxMessageBytes: v.optional(bytes("ws.maxMessageBytes"), DEFAULTS.ws.maxMessageBytes),
      maxPendingEvents: v.optional(bytes("ws.maxPendingEvents"), DEFAULTS.ws.maxPendingEvents),
      maxBufferedBytes: v.optional(bytes("ws.maxBufferedBytes"), DEFAULTS.ws.maxBufferedBytes),
      tls: v.optional(v.strictObject({ cert: v.string(), key: v.string() })),
      allowedOrigins: v.optional(
        v.array(
          v.pipe(
            v.string("ws.allowedOrigins must be a list of origins"),
            v.regex(ORIGIN, "ws.allowedOrigins entries are origins like https://app.example.com or https://*.example.com"),
          ),
          "ws.allowedOrigins must be a list of origins",
        ),
      ),
      handshakeTimeout: v.optional(positiveSeconds("ws.handshakeTimeout"), DEFAULTS.ws.handshakeTimeout),
    }),
    {},
  ),
  limits: v.optional(
    v.strictObject({
      maxConnections: v.optional(countOrZero("limits.maxConnections"), DEFAULTS.limits.maxConnections),
      maxSubscriptionsPerConnection: v.optional(
        bytes("limits.maxSubscriptionsPerConnection"),
        DEFAULTS.limits.maxSubscriptionsPerConnection,
      ),
      eventsPerSecond: v.optional(
        v.pipe(v.number("limits.eventsPerSecond must be a number"), v.finite(), v.minValue(0)),
        DEFAULTS.limits.eventsPerSecond,
      ),
      eventsBurst: v.optional(countOrZero("limits.eventsBurst"), DEFAULTS.limits.eventsBurst),
      maxSubscriptionLength: v.optional(bytes("limits.maxSubscriptionLength"), DEFAULTS.limits.maxSubscriptionLength),
      maxExtraFieldsBytes: v.optional(bytes("limits.maxExtraFieldsBytes"), DEFAULTS.limits.maxExtraFieldsBytes),
      maxPendingBytes: v.optional(bytes("limits.maxPendingBytes"), DEFAULTS.limits.maxPendingBytes),
      maxCallbacksPerService: v.optional(bytes("limits.maxCallbacksPerService"), DEFAULTS.limits.maxCallbacksPerService),
      maxBufferedBytesTotal: v.optional(bytes("limits.maxBufferedBytesTotal"), DEFAULTS.limits.maxBufferedBytesTotal),
    }),
    {},
  ),
  http: v.optional(
    v.strictObject({
      timeout: v.optional(positiveSeconds("http.timeout"), DEFAULTS.http.timeout),
      tries: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), DEFAULTS.http.tries),
      wait: v.optional(seconds("http.wait"), DEFAULTS.http.wait),
      rateLimitResetHeaderNames: v.optional(v.array(v.string()), [...DEFAULTS.http.rateLimitResetHeaderNames]),
      caFile: v.optional(v.string()),
      maxResponseBytes: v.optional(bytes("http.maxResponseBytes"), DEFAULTS.http.maxResponseBytes),
    }),
    {},
  ),
  authentication: v.optional(
    v.strictObject({
      ticket: v.optional(
        v.strictObject({
          validationUrl: url("validationUrl"),
          authFields: v.optional(fieldList("authFields", false), []),
        }),
      ),
      jwt: v.optional(JwtSchema),
    }),
    {},
  ),
  services: v.optional(
    v.record(
      v.pipe(
        v.string(),
        v.check(
          (name) => name !== "" && !name.includes("."),
          (issue) => `service name ${JSON.stringify(issue.input)} must be non-empty and contain no '.' (a subscription is split at its first '.')`,
        ),
      ),
      ServiceSchema,
    ),
    {},
  ),
  broker: v.optional(v.variant("kind", [MemoryBrokerSchema, RedisBrokerSchema, RedisClusterBrokerSchema, UpstashBrokerSchema]), { kind: "memory" }),
  publish: v.optional(
    v.strictObject({
      token: v.optional(
        v.pipe(
          v.string(),
          v.minLength(1, "publish.token must not be empty"),
          v.regex(TOKEN68, "publish.token may hold only letters, digits and - . _ ~ + / (then = padding), as RFC 6750 bearer tokens"),
        ),
      ),
      maxBodyBytes: v.optional(bytes("publish.maxBodyBytes"), DEFAULTS.publish.maxBodyBytes),
    }),
    {},
  ),
  log: v.optional(
    v.strictObject({
      level: v.optional(v.picklist(["trace", "debug", "info", "warning", "error", "fatal"]), DEFAULTS.log.level),
      format: v.optional(v.picklist(["auto", "json", "pretty"]), DEFAULTS.log.format),
    }),
    {},
  ),
  metrics: v.optional(
    v.strictObject({
      prometheus: v.optional(
        v.strictObject({
          host: v.optional(v.string()),
          port: v.optional(portNumber),
          prefix: v.optional(v.string()),
        }),
      ),
      log: v.optional(v.strictObject({})),
    }),
    {},
  ),
  shutdown: v.optional(
    v.strictObject({ drainTimeout: v.optional(seconds("shutdown.drainTimeout"), DEFAULTS.shutdown.drainTimeout) }),
    {},
  ),
  // The admin API at /admin/* (extension E4): on with a token; the nodes report to each other every reportInterval.
  admin: v.optional(
    v.strictObject({
      token: v.optional(
        v.pipe(
          v.string("admin.token must be a string"),
          v.minLength(1, "admin.token must not be empty"),
          v.regex(TOKEN68, "admin.token may hold only letters, digits and - . _ ~ + / (then = padding), as RFC 6750 bearer tokens"),
        ),
      ),
      reportInterval: v.optional(
        v.pipe(
          v.number("admin.reportInterval must be a number of seconds"),
          v.finite(),
          v.minValue(0.1, "admin.reportInterval must be at least 0.1"),
          v.maxValue(3600, "admin.reportInterval must be at most 3600"),
        ),
        DEFAULTS.admin.reportInterval,
      ),
    }),
    {},
  ),
  // The browser console at GET /console (off by default).
  console: v.optional(
    v.strictObject({ enabled: v.optional(v.boolean("console.enabled must be true or false"), DEFAULTS.console.enabled) }),
    {},
  ),
});

/** What a config module exports: every key optional, durations in seconds. */
export type ConfigInput = v.InferInput<typeof ConfigSchema>;
/** The parsed config, defaults filled in. */
export type Config = v.InferOutput<typeof ConfigSchema>;
export type ServiceConfig = v.InferOutput<typeof ServiceSchema>;
export type BrokerConfig = Config["broker"];
export type RedisBrokerConfig = Extract<BrokerConfig, { kind: "redis" }>;
export type RedisClusterBrokerConfig = Extract<BrokerConfig, { kind: "redis-cluster" }>;
export type UpstashBrokerConfig = Extract<BrokerConfig, { kind: "upstash" }>;

/** Types a config module's default export; it returns its argument unchanged. */
export function defineConfig(config: ConfigInput): ConfigInput {
  return config;
}

/** Thrown by `parseConfig` with one line per problem, each naming its key. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[], heading = "invalid config") {
    super(`${heading}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/**
 * Validate a config at start-up, filling in defaults. Throws `ConfigError` naming each bad key, and the variable
 * that set it when `origins` (key → `NAME=value`, from `applyEnv`) says it came from the environment.
 */
export function parseConfig(input: unknown, origins?: ReadonlyMap<string, string>): Config {
  const result = v.safeParse(ConfigSchema, input ?? {});
  if (result.success) return result.output;
  const problems = result.issues.map((issue) => describeIssue(issue, origins));
  throw new ConfigError([...new Set(problems)]);
}

function describeIssue(issue: v.BaseIssue<unknown>, origins: ReadonlyMap<string, string> | undefined): string {
  const path = issue.path?.map((item) => String(item.key)).join(".") ?? "";
  const message = issue.message.replace(/^Invalid key: Expected never but received /, "unknown key, got ");
  const origin = origins && originOf(path, origins);
  if (origin) return `${origin} (sets ${path}): ${message}`;
  return path ? `${path}: ${message}` : message;
}

/** The variable that set `path` or the key holding it (`broker.nodes.0` was set by the one that set `broker.nodes`). */
function originOf(path: string, origins: ReadonlyMap<string, string>): string | undefined {
  for (let key = path; key !== ""; key = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "") {
    const origin = origins.get(key);
    if (origin) return origin;
  }
  return undefined;
}
